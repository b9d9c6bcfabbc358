package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
)

// TestBundleMatchesUmoci: the rootfs of oci://PATH equals umoci unpack's
// for the same multi-layer image with whiteouts, and config.json carries
// the image's process settings.
func TestBundleMatchesUmoci(t *testing.T) {
	peers.Need(t, "skopeo", "umoci")
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(format.String(), func(t *testing.T) {
			img := imagegen.Sample()
			img.Entrypoint = []string{"/bin/tool"}
			img.Cmd = []string{"arg"}
			img.Env = []string{"A=1"}
			img.WorkingDir = "/app"
			in, _ := writeImage(t, img, format)
			work := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			layout := filepath.Join(work, "layout")
			if _, err := peers.Run(ctx, "skopeo", "copy", "--quiet", "docker-archive:"+in, "oci:"+layout+":ref"); err != nil {
				t.Fatal(err)
			}
			ref := filepath.Join(work, "ref")
			if _, err := peers.Run(ctx, "umoci", "unpack", "--image", layout+":ref", ref); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(work, "bundle")
			mustRun(t, "process", "tar://"+in, "oci://"+out)
			compareTrees(t, filepath.Join(ref, "rootfs"), filepath.Join(out, "rootfs"))
			if got := listTree(t, out); !slices.Contains(got, "config.json") || !slices.Contains(got, "container-config.json") {
				t.Errorf("bundle lacks config.json or container-config.json")
			}
			var spec struct {
				Process struct {
					Args []string
					Env  []string
					Cwd  string
				}
				Root struct{ Path string }
			}
			data, _ := os.ReadFile(filepath.Join(out, "config.json"))
			if err := json.Unmarshal(data, &spec); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(spec.Process.Args, []string{"/bin/tool", "arg"}) || spec.Process.Cwd != "/app" ||
				!slices.Contains(spec.Process.Env, "A=1") || spec.Root.Path != "rootfs" {
				t.Errorf("config.json process %+v root %+v", spec.Process, spec.Root)
			}
		})
	}
}

// TestBundleRunsUnderRunc: a bundle made from an image holding a static
// binary runs under runc and prints what the binary prints.
func TestBundleRunsUnderRunc(t *testing.T) {
	peers.Need(t, "runc", "go")
	if os.Geteuid() != 0 {
		t.Skip("runc run needs root")
	}
	work := t.TempDir()
	data := staticProgram(t, `package main

import (
	"fmt"
	"os"
)

func main() {
	wd, _ := os.Getwd()
	fmt.Printf("hello from %s uid=%d args=%v greeting=%s\n", wd, os.Getuid(), os.Args[1:], os.Getenv("GREETING"))
}
`)
	img := imagegen.Image{
		RepoTag: "example.com/test/hello:v1",
		Layers: []imagegen.Layer{
			{Entries: []imagegen.Entry{
				{Path: "bin", Type: imagegen.Dir},
				{Path: "bin/hello", Data: data, Mode: 0o755},
				{Path: "work", Type: imagegen.Dir},
			}, Compression: "gzip"},
		},
		Entrypoint: []string{"/bin/hello"},
		Cmd:        []string{"one", "two"},
		Env:        []string{"GREETING=hi"},
		WorkingDir: "/work",
	}
	in, _ := writeImage(t, img, imagegen.OCI)
	bundle := filepath.Join(work, "bundle")
	mustRun(t, "process", "tar://"+in, "oci://"+bundle)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := "occy-test-" + strings.ReplaceAll(filepath.Base(work), "_", "-")
	state := filepath.Join(work, "runc-state")
	cmd := exec.CommandContext(ctx, "runc", "--root", state, "run", "--bundle", bundle, id)
	out, err := cmd.CombinedOutput()
	exec.Command("runc", "--root", state, "delete", "--force", id).Run()
	if err != nil {
		msg := string(out)
		for _, refusal := range []string{"operation not permitted", "permission denied", "cgroup", "no such file or directory: unknown", "namespace"} {
			if strings.Contains(strings.ToLower(msg), refusal) && !strings.Contains(msg, "hello") {
				t.Skipf("the kernel refuses to start containers here (runc: %v: %s)", err, strings.TrimSpace(msg))
			}
		}
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	if want := "hello from /work uid=0 args=[one two] greeting=hi"; !strings.Contains(string(out), want) {
		t.Errorf("runc printed %q, want %q", out, want)
	}
}

// TestHostileInputsNewOutputs: hostile layers written to an OCI bundle, an
// OCI layout or an OCI archive never write outside the destination, and
// failures leave nothing behind.
func TestHostileInputsNewOutputs(t *testing.T) {
	for _, hc := range imagegen.Hostile() {
		t.Run(hc.Name, func(t *testing.T) {
			work, err := os.MkdirTemp("", "occy-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(work)
			in := filepath.Join(work, "in.tar")
			f, err := os.Create(in)
			if err != nil {
				t.Fatal(err)
			}
			if err := hc.Write(f); err != nil {
				t.Fatal(err)
			}
			f.Close()
			os.Mkdir(filepath.Join(work, "a"), 0o755)
			type dest struct {
				uri, path string
				extracts  bool
			}
			dests := []dest{
				{"oci://" + filepath.Join(work, "a", "bundle"), filepath.Join(work, "a", "bundle"), true},
				{"oci-layout://" + filepath.Join(work, "a", "layout"), filepath.Join(work, "a", "layout"), false},
				{"oci-archive://" + filepath.Join(work, "a", "image.tar"), filepath.Join(work, "a", "image.tar"), false},
			}
			for _, d := range dests {
				code, _, stderr := run(t, "process", "tar://"+in, d.uri)
				msg := errorLine(stderr, work)
				switch {
				case code == 0 && (hc.MayConfine || !d.extracts && hc.Stage != imagegen.StageInput):
					// Confined, or stored as it is without extraction.
					os.RemoveAll(d.path)
				case code == 0:
					t.Errorf("%s: exit 0, want failure (%s)", d.uri, hc.Description)
				case !strings.Contains(strings.ToLower(msg), hc.Want):
					t.Errorf("%s: exit %d, but the message lacks %q:\n%s", d.uri, code, hc.Want, msg)
				}
				if _, err := os.Lstat(d.path); err == nil {
					t.Errorf("%s: a partial destination was left behind", d.uri)
				}
			}
			if got, want := listTree(t, work), []string{"a", "in.tar"}; !slices.Equal(got, want) {
				t.Errorf("files outside the destination changed: %q, want %q", got, want)
			}
			for _, absolute := range hc.Escapes {
				if filepath.IsAbs(absolute) {
					if _, err := os.Lstat(absolute); err == nil {
						os.RemoveAll(absolute)
						t.Errorf("%s was created outside the destination", absolute)
					}
				}
			}
		})
	}
}

// staticProgram builds a static Linux binary from one main.go and returns
// its bytes, for images that runc runs.
func staticProgram(t *testing.T, mainGo string) []byte {
	t.Helper()
	work := t.TempDir()
	src := filepath.Join(work, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(mainGo), 0o644)
	bin := filepath.Join(work, "hello")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
