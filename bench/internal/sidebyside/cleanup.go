package sidebyside

import (
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
)

var (
	cleanupMu sync.Mutex
	cleanups  []func()
	// exiting is set once an interrupt's cleanup has begun: from then on
	// the main goroutine must neither start a peer nor exit by itself.
	exiting atomic.Bool
)

// AtExit registers f to run (last registered first) on exit, on failure
// and on Ctrl-C: peers (a registry, an engine) run in their own process
// group, so they would not see the terminal's signal.
func AtExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

// RunCleanups runs (once) what AtExit registered, last registered first.
func RunCleanups() {
	cleanupMu.Lock()
	cs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// Fatalf logs, runs the cleanups and exits with status 1; once an
// interrupt's cleanup has begun, it leaves the exit to that.
func Fatalf(format string, args ...any) {
	log.Printf(format, args...)
	if exiting.Load() {
		select {} // the interrupt's cleanup exits
	}
	RunCleanups()
	os.Exit(1)
}

// Exiting reports whether an interrupt's cleanup has begun.
func Exiting() bool { return exiting.Load() }

// CleanUpOnInterrupt runs the cleanups and exits with status 130 on
// Ctrl-C or SIGTERM.
func CleanUpOnInterrupt() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		log.Printf("interrupted; cleaning up")
		exiting.Store(true)
		RunCleanups()
		os.Exit(130)
	}()
}

// WorkDir returns the absolute scratch directory: dir, created if need be
// and left in place, or else a new one under /tmp whose name starts with
// prefix, removed at exit unless keep (see AtExit).
func WorkDir(dir string, keep bool, prefix string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("/tmp", prefix)
		if err != nil {
			return "", err
		}
		dir = d
		if !keep {
			AtExit(func() { os.RemoveAll(d) })
		} else {
			AtExit(func() { log.Printf("kept %s", d) })
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}
