package cli

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
)

// TestVerifyAfterProcess: process reads back what it wrote, by default,
// and says so in its summary line; --verify-full reads every layer too;
// --no-verify skips it.
func TestVerifyAfterProcess(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	n := len(res.DiffIDs)
	dst := "registry://" + r.Host + "/verify/app:v1"
	tests := []struct {
		name  string
		args  []string
		wants []string
		not   string
	}{
		{"tarball", []string{"process", "tar://" + in, "tar://" + filepath.Join(t.TempDir(), "o.tar")},
			[]string{fmt.Sprintf("All %d layers verified in tarball", n), fmt.Sprintf("Summary: %d layers, ", n), "verified OK"}, ""},
		{"tarball full", []string{"--verify-full", "process", "tar://" + in, "tar://" + filepath.Join(t.TempDir(), "o.tar")},
			[]string{fmt.Sprintf("All %d layers verified in tarball", n), "full=true"}, ""},
		{"directory", []string{"process", "tar://" + in, "dir://" + filepath.Join(t.TempDir(), "d")},
			[]string{"verified in directory", "verified OK"}, ""},
		{"registry", []string{"process", "tar://" + in, dst},
			[]string{fmt.Sprintf("verified in registry (%d layers)", n), "verified OK"}, ""},
		{"registry full", []string{"--verify-full", "process", "tar://" + in, dst},
			[]string{fmt.Sprintf("verified in registry (%d layers)", n), "full=true"}, ""},
		{"no verify", []string{"--no-verify", "process", "tar://" + in, "tar://" + filepath.Join(t.TempDir(), "o.tar")},
			[]string{fmt.Sprintf("Summary: %d layers, ", n)}, "verified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			for _, w := range tt.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tt.not != "" && strings.Contains(stderr, tt.not) {
				t.Errorf("stderr has %q:\n%s", tt.not, stderr)
			}
		})
	}
}

// TestVerifyFailures: a registry that loses the image after the push, or
// serves a layer whose bytes changed, fails the verification with a
// message that says what is wrong, and exit 1.
func TestVerifyFailures(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	proxy := peers.NewFaultProxy(r.Host)
	defer proxy.Close()
	tests := []struct {
		name  string
		args  []string
		fault peers.Fault
		want  string
	}{
		{"manifest gone", nil,
			peers.Fault{Method: http.MethodGet, PathContains: "/manifests/", Times: peers.Forever, Action: peers.RespondStatus(404)},
			"fetch manifest v1"},
		{"layer corrupted", []string{"--verify-full"},
			peers.Fault{Method: http.MethodGet, PathContains: "/blobs/sha256:", Match: func(req *http.Request) bool {
				return req.Header.Get("Range") == ""
			}, Times: peers.Forever, Action: peers.CorruptByte(-1)},
			"digest"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy.ClearFaults()
			proxy.Inject(tt.fault)
			dst := fmt.Sprintf("registry://%s/verify/bad%d:v1", proxy.Host(), i)
			code, _, stderr := run(t, append(append([]string{"--retries", "0"}, tt.args...), "process", "tar://"+in, dst)...)
			if code != 1 || !strings.Contains(stderr, "verification failed") || !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "--no-verify") {
				t.Errorf("exit %d, want 1 and an error with %q:\n%s", code, tt.want, stderr)
			}
		})
	}
}

// TestRateLimitFlag: --rate-limit takes requests per second; a bad value
// is a usage error.
func TestRateLimitFlag(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	mustRun(t, "--rate-limit", "50", "process", "tar://"+in, "registry://"+r.Host+"/paced/app:v1")
	t.Setenv("OCCYSTRAP_RATE_LIMIT", "-1")
	if code, _, stderr := run(t, "process", "tar://"+in, "tar://"+filepath.Join(t.TempDir(), "o.tar")); code != 2 || !strings.Contains(stderr, "--rate-limit") {
		t.Errorf("OCCYSTRAP_RATE_LIMIT=-1: exit %d:\n%s", code, stderr)
	}
}
