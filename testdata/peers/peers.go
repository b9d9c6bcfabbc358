// Package peers starts and drives the real programs that occystrap's output
// must satisfy (a Docker Engine, skopeo, umoci), for tests. Peers listen
// only on private Unix sockets or loopback, and are stopped by the tests
// that start them.
//
// A test whose peer is missing is skipped, unless OCCYSTRAP_REQUIRE_PEERS
// is set (as `go tool task test` and CI set it), in which case it fails:
// a green run must not hide a missing peer.
package peers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Required reports whether missing peers fail tests instead of skipping
// them.
func Required() bool { return os.Getenv("OCCYSTRAP_REQUIRE_PEERS") != "" }

// Need skips (or, when Required, fails) the test unless every named
// program is on PATH.
func Need(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			if Required() {
				t.Fatalf("%s is not installed: run `go tool task deps`", p)
			}
			t.Skipf("%s is not installed (run `go tool task deps`)", p)
		}
	}
}

// Run runs a program and returns its standard output, failing with its
// standard error in the error.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Docker is a private Docker Engine with vfs storage, no networking of its
// own, and its API on a Unix socket in a temporary directory.
type Docker struct {
	Dir    string // everything the daemon writes
	Socket string // path of the API socket
	cmd    *exec.Cmd
	log    *os.File
}

// StartDocker starts a Docker Engine whose state lives under dir (which
// should be short: Unix socket paths are limited to 108 bytes). It waits
// until the API answers.
func StartDocker(dir string) (*Docker, error) {
	if _, err := exec.LookPath("dockerd"); err != nil {
		return nil, fmt.Errorf("dockerd is not installed: run `go tool task deps`")
	}
	d := &Docker{Dir: dir, Socket: filepath.Join(dir, "docker.sock")}
	log, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		return nil, err
	}
	d.log = log
	d.cmd = exec.Command("dockerd",
		"--storage-driver=vfs", "--iptables=false", "--ip-masq=false", "--bridge=none",
		"-H", "unix://"+d.Socket,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
	)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := d.Docker(ctx, "version")
		cancel()
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			d.Stop()
			logText, _ := os.ReadFile(log.Name())
			return nil, fmt.Errorf("dockerd did not answer within 60s: %v\n%s", err, tail(string(logText), 2000))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Docker runs the docker client against this engine.
func (d *Docker) Docker(ctx context.Context, args ...string) (string, error) {
	return Run(ctx, "docker", append([]string{"-H", "unix://" + d.Socket}, args...)...)
}

// Stop stops the engine (and the containerd it started) and waits for it.
func (d *Docker) Stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if d.log != nil {
		d.log.Close()
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
