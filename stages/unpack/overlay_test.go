package unpack

import (
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOverlayWhiteouts: with WhiteoutsOverlay, whiteouts at any depth
// become 0:0 character devices, opaque markers set trusted.overlay.opaque,
// paths the same layer writes are kept (directories made opaque), and
// overlayfs xattrs carried by entries are ignored.
func TestOverlayWhiteouts(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("overlayfs whiteouts need root (device nodes, trusted xattrs)")
	}
	forged := dir("forged/")
	forged.pax = map[string]string{"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.overlay.opaque": "y"}
	layer := mkLayer(t,
		dir("a/"), dir("a/b/"), wh("a/b/.wh.gone"), wh(".wh.top"),
		dir("opq/"), file("opq/keep", "k"), wh("opq/.wh..wh..opq"),
		wh("./c/d/.wh..wh..opq"),
		file("mine", "m"), wh(".wh.mine"),
		dir("samedir/"), wh(".wh.samedir"),
		wh(".wh.later"), dir("later/"),
		wh(".wh..wh.plnk"),
		forged,
	)
	_, root := testRoot(t)
	opts := testOpts()
	opts.Whiteouts = WhiteoutsOverlay
	if err := applyLayers(t, root, opts, layer); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/b/gone", "top"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Errorf("%s: %v", p, err)
		} else if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want a 0:0 character device", p, st.Mode, st.Rdev)
		}
	}
	opaque := func(p string) bool {
		buf := make([]byte, 4)
		n, err := unix.Lgetxattr(filepath.Join(root, p), OverlayOpaqueXattr, buf)
		return err == nil && string(buf[:n]) == "y"
	}
	for _, p := range []string{"opq", "c/d", "samedir", "later"} {
		if !opaque(p) {
			t.Errorf("%s is not marked opaque", p)
		}
	}
	for _, p := range []string{"a", "a/b", "forged"} {
		if opaque(p) {
			t.Errorf("%s is marked opaque", p)
		}
	}
	wantFile(t, root, "opq/keep", "k")
	wantFile(t, root, "mine", "m")
	wantGone(t, root, "opq/.wh..wh..opq", "a/b/.wh.gone", ".wh.top", ".wh..wh.plnk")
	buf := make([]byte, 16)
	for _, x := range []string{"trusted.overlay.redirect", "user.overlay.opaque"} {
		if _, err := unix.Lgetxattr(filepath.Join(root, "forged"), x, buf); !errors.Is(err, unix.ENODATA) {
			t.Errorf("forged: %s was set from the layer (%v)", x, err)
		}
	}
}

// TestOverlayWhiteoutConfined: overlay whiteouts are confined like
// everything else.
func TestOverlayWhiteoutConfined(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("overlayfs whiteouts need root")
	}
	opts := testOpts()
	opts.Whiteouts = WhiteoutsOverlay
	for _, l := range [][]byte{
		mkLayer(t, wh("../../../outside/.wh.victim")),
		mkLayer(t, symlink("s", "../../../outside"), wh("s/.wh.victim")),
		mkLayer(t, symlink("s", "/tmp"), wh("s/.wh..wh..opq")),
		mkLayer(t, wh("x/.wh..")),
	} {
		base, root := testRoot(t)
		err := applyLayers(t, root, opts, l)
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("err = %v, want ErrUnsafe", err)
		}
		wantFile(t, base, "outside/victim", "victim")
	}
}
