package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"golang.org/x/sys/unix"
)

// needOverlay skips the test unless running as root on a kernel that
// mounts overlays here (some containers refuse them).
func needOverlay(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts:// needs root")
	}
	d := t.TempDir()
	for _, s := range []string{"l", "u", "w", "m"} {
		os.Mkdir(filepath.Join(d, s), 0o755)
	}
	opts := "lowerdir=" + filepath.Join(d, "l") + ",upperdir=" + filepath.Join(d, "u") + ",workdir=" + filepath.Join(d, "w")
	if err := syscall.Mount("overlay", filepath.Join(d, "m"), "overlay", 0, opts); err != nil {
		t.Skipf("the kernel refuses overlay mounts here (%v): mounts:// cannot be tested", err)
	}
	syscall.Unmount(filepath.Join(d, "m"), 0)
}

// unmountAtCleanup unmounts PATH/rootfs when the test ends.
func unmountAtCleanup(t *testing.T, out string) {
	t.Cleanup(func() {
		rootfs := filepath.Join(out, "rootfs")
		if err := syscall.Unmount(rootfs, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("unmount %s: %v", rootfs, err)
		}
	})
}

// TestMountsMatchesBundle: the overlay mounts:// mounts at PATH/rootfs
// shows the same tree as the oci:// bundle's rootfs for a multi-layer
// image with whiteouts and opaque directories; the layer directories hold
// overlayfs whiteouts, config.json is the bundle's, and a second run skips
// the layers already present.
func TestMountsMatchesBundle(t *testing.T) {
	needOverlay(t)
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(format.String(), func(t *testing.T) {
			img := imagegen.Sample()
			img.Entrypoint = []string{"/bin/tool"}
			img.Cmd = []string{"arg"}
			in, _ := writeImage(t, img, format)
			work := t.TempDir()
			ref := filepath.Join(work, "bundle")
			mustRun(t, "process", "tar://"+in, "oci://"+ref)
			out := filepath.Join(work, "mounts")
			unmountAtCleanup(t, out)
			mustRun(t, "process", "tar://"+in, "mounts://"+out)
			compareTrees(t, filepath.Join(ref, "rootfs"), filepath.Join(out, "rootfs"))

			want, _ := os.ReadFile(filepath.Join(ref, "config.json"))
			got, err := os.ReadFile(filepath.Join(out, "config.json"))
			if err != nil || string(got) != string(want) {
				t.Errorf("config.json differs from the oci:// bundle's (%v):\n%s\nwant:\n%s", err, got, want)
			}
			if _, err := os.Stat(filepath.Join(out, "container-config.json")); err != nil {
				t.Error(err)
			}

			// Layer directories: whiteouts as 0:0 character devices,
			// opaque directories marked, no .wh. names left.
			var whiteouts, opaques int
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				layer := filepath.Join(out, e.Name(), "layer")
				if _, err := os.Stat(layer); err != nil {
					continue
				}
				filepath.WalkDir(layer, func(p string, d os.DirEntry, err error) error {
					if err != nil {
						return err
					}
					if strings.HasPrefix(d.Name(), ".wh.") {
						t.Errorf("%s: whiteout name left in a layer directory", p)
					}
					var st unix.Stat_t
					unix.Lstat(p, &st)
					if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
						whiteouts++
					}
					if d.IsDir() {
						buf := make([]byte, 8)
						if n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", buf); err == nil && string(buf[:n]) == "y" {
							opaques++
						}
					}
					return nil
				})
			}
			if whiteouts == 0 || opaques == 0 {
				t.Errorf("layer directories hold %d whiteout devices and %d opaque directories; the sample has both", whiteouts, opaques)
			}

			// A second run refuses while the overlay is mounted, then, once
			// unmounted, reuses the layers.
			if code, _, stderr := run(t, "process", "tar://"+in, "mounts://"+out); code == 0 || !strings.Contains(stderr, "unmount it first") {
				t.Errorf("second run over a mounted rootfs: exit %d, want a refusal:\n%s", code, stderr)
			}
			if err := syscall.Unmount(filepath.Join(out, "rootfs"), 0); err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(filepath.Join(out, "delta"))
			before := layerInodes(t, out)
			mustRun(t, "process", "tar://"+in, "mounts://"+out)
			if after := layerInodes(t, out); !slices.Equal(before, after) {
				t.Errorf("layer directories were rewritten on the second run: %v, then %v", before, after)
			}
			compareTrees(t, filepath.Join(ref, "rootfs"), filepath.Join(out, "rootfs"))

			var spec struct{ Process struct{ Args []string } }
			json.Unmarshal(got, &spec)
			if !slices.Equal(spec.Process.Args, []string{"/bin/tool", "arg"}) {
				t.Errorf("config.json args %q", spec.Process.Args)
			}
		})
	}
}

// layerInodes returns the inode numbers of PATH/*/layer.
func layerInodes(t *testing.T, out string) []uint64 {
	t.Helper()
	var inos []uint64
	ms, _ := filepath.Glob(filepath.Join(out, "*", "layer"))
	for _, m := range ms {
		var st unix.Stat_t
		if err := unix.Lstat(m, &st); err != nil {
			t.Fatal(err)
		}
		inos = append(inos, st.Ino)
	}
	return inos
}

// TestMountsHostile: hostile layers written to mounts:// never write
// outside PATH, and a failure leaves nothing mounted.
func TestMountsHostile(t *testing.T) {
	needOverlay(t)
	for _, hc := range imagegen.Hostile() {
		t.Run(hc.Name, func(t *testing.T) {
			work := t.TempDir()
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
			out := filepath.Join(work, "a", "mounts")
			unmountAtCleanup(t, out)
			code, _, stderr := run(t, "process", "tar://"+in, "mounts://"+out)
			msg := errorLine(stderr, work)
			switch {
			case code == 0 && hc.MayConfine:
			case code == 0:
				t.Errorf("exit 0, want failure (%s)", hc.Description)
			case !strings.Contains(strings.ToLower(msg), hc.Want):
				t.Errorf("exit %d, but the message lacks %q:\n%s", code, hc.Want, msg)
			}
			if code != 0 {
				if mounted, _ := filepath.Glob(filepath.Join(out, "rootfs", "*")); len(mounted) > 0 {
					t.Errorf("a failed run left something at rootfs: %q", mounted)
				}
				if tmp, _ := filepath.Glob(filepath.Join(out, "*", ".layer.tmp-*")); len(tmp) > 0 {
					t.Errorf("a failed run left partial layers: %q", tmp)
				}
			}
			for _, p := range listTree(t, work) {
				if p != "a" && p != "in.tar" && p != filepath.Join("a", "mounts") && !strings.HasPrefix(p, filepath.Join("a", "mounts")+"/") {
					t.Errorf("%s was written outside the destination", p)
				}
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

// TestMountsRunsUnderRunc: runc starts the bundle mounts:// lays out on its
// overlay, and a whiteout of a lower layer's file is honoured inside the
// container.
func TestMountsRunsUnderRunc(t *testing.T) {
	peers.Need(t, "runc", "go")
	needOverlay(t)
	work := t.TempDir()
	data := staticProgram(t, `package main

import (
	"fmt"
	"os"
)

func main() {
	_, err := os.Stat("/etc/gone")
	kept, _ := os.ReadFile("/etc/kept")
	fmt.Printf("hello gone=%v kept=%s\n", os.IsNotExist(err), kept)
}
`)
	img := imagegen.Image{
		RepoTag: "example.com/test/hello:v1",
		Layers: []imagegen.Layer{
			{Entries: []imagegen.Entry{
				{Path: "bin", Type: imagegen.Dir},
				{Path: "bin/hello", Data: data, Mode: 0o755},
				{Path: "etc", Type: imagegen.Dir},
				{Path: "etc/gone", Data: []byte("x")},
				{Path: "etc/kept", Data: []byte("yes")},
			}},
			{Entries: []imagegen.Entry{
				{Path: "etc", Type: imagegen.Dir},
				{Path: "etc/gone", Type: imagegen.Whiteout},
			}},
		},
		Entrypoint: []string{"/bin/hello"},
	}
	in, _ := writeImage(t, img, imagegen.OCI)
	out := filepath.Join(work, "mounts")
	unmountAtCleanup(t, out)
	mustRun(t, "process", "tar://"+in, "mounts://"+out)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := "occy-mounts-" + strings.ReplaceAll(filepath.Base(work), "_", "-")
	state := filepath.Join(work, "runc-state")
	got, err := exec.CommandContext(ctx, "runc", "--root", state, "run", "--bundle", out, id).CombinedOutput()
	exec.Command("runc", "--root", state, "delete", "--force", id).Run()
	if err != nil {
		msg := string(got)
		for _, refusal := range []string{"operation not permitted", "permission denied", "cgroup", "no such file or directory: unknown", "namespace"} {
			if strings.Contains(strings.ToLower(msg), refusal) && !strings.Contains(msg, "hello") {
				t.Skipf("the kernel refuses to start containers here (runc: %v: %s)", err, strings.TrimSpace(msg))
			}
		}
		t.Fatalf("runc run: %v\n%s", err, got)
	}
	if want := "hello gone=true kept=yes"; !strings.Contains(string(got), want) {
		t.Errorf("runc printed %q, want %q", got, want)
	}
}
