package sidebyside

import (
	"log"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SystemCPU returns the CPU time the whole machine has spent busy (user,
// nice, system, interrupts, steal; not idle or I/O wait), from /proc/stat.
func SystemCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// SelfCPU returns this process's own user+system time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// WaitIdle waits, at most limit, until the rest of the machine (other
// sessions' tests, builds; whatever this process is not) has used under
// 10% of a CPU for half a second, and says so in the log when it gives up.
func WaitIdle(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		before, self := SystemCPU(), SelfCPU()
		time.Sleep(500 * time.Millisecond)
		busy := SystemCPU() - before - (SelfCPU() - self)
		if busy < 50*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			log.Printf("the machine is still busy (%.0f%% of a CPU besides this harness); running anyway", 100*busy.Seconds()/0.5)
			return
		}
	}
}
