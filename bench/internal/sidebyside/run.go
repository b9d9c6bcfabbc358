package sidebyside

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Usage is what one timed run cost. Commands' own measures embed it, which
// makes them Measures.
type Usage struct {
	Wall   time.Duration
	CPU    time.Duration // user + system, of the command and its children
	MaxRSS int64         // peak resident set size, bytes
	Other  time.Duration // CPU time the rest of the machine used during the run (RunBeside)
}

func (u Usage) usage() Usage { return u }

// Measure is any type that embeds Usage.
type Measure interface{ usage() Usage }

// Rusage returns the CPU time and peak RSS of an exited process, as the
// kernel reports them; zero where it reports nothing.
func Rusage(ps *os.ProcessState) (cpu time.Duration, maxRSS int64) {
	if ps == nil {
		return 0, 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss * 1024 // Linux reports KiB
	}
	return 0, 0
}

// Run runs argv with its output in logPath, and returns its wall time,
// CPU time and peak RSS. The peak RSS is the child's ru_maxrss, which
// Linux computes as the largest of the high-water marks of every memory
// map the process had: that includes this process's, which the child
// shares until it calls exec (Go starts children with vfork semantics), so
// no child reads below this process's own peak. Keep this process small.
//
// When the command fails, the error holds the end of its output.
func Run(argv []string, logPath string) (Usage, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return Usage{}, err
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	start := time.Now()
	err = cmd.Run()
	u := Usage{Wall: time.Since(start)}
	u.CPU, u.MaxRSS = Rusage(cmd.ProcessState)
	if err != nil {
		b, _ := os.ReadFile(logPath)
		return u, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, tail(string(b), 3000))
	}
	return u, nil
}

// RunBeside is Run, measuring as well the CPU time a peer process (a
// registry, an engine) used during the run, as peerCPU reads it, and the
// CPU time the rest of the machine used (Other): all the machine's, less
// the command's, the peer's and this process's own.
func RunBeside(argv []string, logPath string, peerCPU func() time.Duration) (u Usage, peer time.Duration, err error) {
	peerBefore, sysBefore, selfBefore := peerCPU(), SystemCPU(), SelfCPU()
	u, err = Run(argv, logPath)
	peer = peerCPU() - peerBefore
	u.Other = max(0, SystemCPU()-sysBefore-u.CPU-peer-(SelfCPU()-selfBefore))
	return u, peer, err
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Sorted returns a copy of ms, fastest (by wall time) first.
func Sorted[M Measure](ms []M) []M {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b M) int { return int(a.usage().Wall - b.usage().Wall) })
	return ms
}

// Quiet reports whether the rest of the machine used under a tenth of a
// CPU, on average, during a run.
func Quiet(u Usage) bool { return u.Other*10 < u.Wall }

// QuietMedian returns the median of the quiet runs, and how many there
// were.
func QuietMedian[M Measure](ms []M) (M, int) {
	var q []M
	for _, m := range ms {
		if Quiet(m.usage()) {
			q = append(q, m)
		}
	}
	if len(q) == 0 {
		var zero M
		return zero, 0
	}
	q = Sorted(q)
	return q[len(q)/2], len(q)
}

// Met is "met" when a goal is met, else "NOT met".
func Met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Slug turns a row's name into a file name part: lower-case letters and
// digits, other runs of characters as one "-".
func Slug(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}
