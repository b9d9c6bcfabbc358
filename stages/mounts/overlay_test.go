package mounts

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMountOverlayManyLayers: an overlay whose options exceed a page (many
// layers with long paths) is mounted through fsconfig's lowerdir+, and the
// newest layer wins.
func TestMountOverlayManyLayers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting overlays needs root")
	}
	d := t.TempDir()
	if err := probeOverlay(d); err != nil {
		t.Skipf("the kernel refuses overlay mounts here: %v", err)
	}
	const n = 60
	var lowers []string // newest first
	for i := n - 1; i >= 0; i-- {
		l := filepath.Join(d, fmt.Sprintf("layer-%03d-%s", i, strings.Repeat("x", 60)))
		if err := os.Mkdir(l, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(l, "f"), []byte(fmt.Sprint(i)), 0o644)
		os.WriteFile(filepath.Join(l, fmt.Sprintf("only-%d", i)), nil, 0o644)
		lowers = append(lowers, l)
	}
	for _, s := range []string{"u", "w", "m"} {
		os.Mkdir(filepath.Join(d, s), 0o755)
	}
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if len(opts) < os.Getpagesize() {
		t.Fatalf("options are only %d bytes: the test does not exercise lowerdir+", len(opts))
	}
	m := filepath.Join(d, "m")
	err := mountOverlay(lowers, filepath.Join(d, "u"), filepath.Join(d, "w"), m, false)
	if err != nil && strings.Contains(err.Error(), "lacks fsconfig's lowerdir+") {
		t.Skipf("kernel without lowerdir+: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(m, 0)
	if b, _ := os.ReadFile(filepath.Join(m, "f")); string(b) != fmt.Sprint(n-1) {
		t.Errorf("f = %q, want the newest layer's %d", b, n-1)
	}
	ents, _ := os.ReadDir(m)
	if len(ents) != n+1 {
		t.Errorf("%d entries in the overlay, want %d", len(ents), n+1)
	}
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "rootfs", "delta", "working", "config.json", ".hidden", "a/b", "a:b", "a,b"} {
		if checkName(bad) == nil {
			t.Errorf("checkName(%q) accepted", bad)
		}
	}
	if err := checkName("0123abcd"); err != nil {
		t.Error(err)
	}
}
