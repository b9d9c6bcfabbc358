package sidebyside

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// MemAvailable returns MemAvailable from /proc/meminfo in bytes, or 0.
func MemAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kib << 10
			}
		}
	}
	return 0
}

// ReadThrough reads a file to its end, so that it is in the page cache.
func ReadThrough(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return err
}

// TouchMemory faults in n bytes of anonymous memory and frees them, so that
// the next allocations are served from memory this machine holds rather
// than memory its hypervisor has reclaimed.
func TouchMemory(n int64) error {
	if n <= 0 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_POPULATE)
	if err != nil {
		return err
	}
	return syscall.Munmap(b)
}

// WarmBytes returns how much memory to warm before each run: warm (a size,
// see ParseSize) when given, else 3 times size plus 256 MiB, at most half
// the available memory.
func WarmBytes(size int64, warm string) (int64, error) {
	if warm != "" {
		return ParseSize(warm)
	}
	n := 3*size + 256<<20
	if avail := MemAvailable(); avail > 0 {
		n = min(n, avail/2)
	}
	return n, nil
}
