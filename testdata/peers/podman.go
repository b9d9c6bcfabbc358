package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Podman is a private Podman API service (`podman system service`): its
// Docker-compatible API on a Unix socket, its storage (vfs) under one
// directory, so that it touches nothing of the machine's own.
type Podman struct {
	Dir    string // everything it writes
	Socket string // path of the API socket
	env    []string
	cmd    *exec.Cmd
	log    *os.File
}

// StartPodman starts a Podman service whose state lives under dir (short:
// Unix socket paths are limited to 108 bytes) and waits until it answers.
func StartPodman(dir string) (*Podman, error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, fmt.Errorf("podman is not installed: run `go tool task deps`")
	}
	p := &Podman{Dir: dir, Socket: filepath.Join(dir, "podman.sock")}
	conf := filepath.Join(dir, "storage.conf")
	text := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", filepath.Join(dir, "run"), filepath.Join(dir, "root"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	p.env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+conf, "XDG_RUNTIME_DIR="+filepath.Join(dir, "xdg"))
	log, err := os.Create(filepath.Join(dir, "podman.log"))
	if err != nil {
		return nil, err
	}
	p.log = log
	p.cmd = exec.Command("podman", "--log-level=error", "system", "service", "--time=0", "unix://"+p.Socket)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start podman system service: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(p.Socket); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = p.Podman(ctx, "--url", "unix://"+p.Socket, "version")
			cancel()
			if err == nil {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			logText, _ := os.ReadFile(log.Name())
			return nil, fmt.Errorf("podman system service did not answer within 30s\n%s", tail(string(logText), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Podman runs the podman client on this service's storage.
func (p *Podman) Podman(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.env
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return string(out), fmt.Errorf("podman %v: %w: %s", args, err, msg)
	}
	return string(out), nil
}

// Stop stops the service and waits for it.
func (p *Podman) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if p.log != nil {
		p.log.Close()
	}
}
