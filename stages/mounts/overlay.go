package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/occystrap/occystrap/stages/unpack"
	"golang.org/x/sys/unix"
)

// mountOverlay mounts an overlay of lowers (newest first) with upper and
// work at target. The options go in one mount(2) string when it fits in a
// page, as the original's `mount -o lowerdir=a:b:...`; longer ones (images
// with many layers, or long paths) are passed one layer at a time with
// fsconfig's `lowerdir+` (Linux 6.8 and later). Without that, the error
// says so. forceNew uses the fsconfig path whatever the length (tests).
func mountOverlay(lowers []string, upper, work, target string, forceNew bool) error {
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if !forceNew && len(opts) < os.Getpagesize() {
		if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mount -t overlay (%d lower layers): %w", len(lowers), err)
		}
		return nil
	}
	err := mountOverlayFsconfig(lowers, upper, work, target)
	if errors.Is(err, errNoLowerdirPlus) {
		return fmt.Errorf("the image has %d layers and their overlayfs options (%d bytes) exceed the %d bytes mount(2) takes; this kernel lacks fsconfig's lowerdir+ (Linux 6.8+), which would lift that limit: use a shorter destination path or a newer kernel",
			len(lowers), len(opts), os.Getpagesize())
	}
	return err
}

var errNoLowerdirPlus = errors.New("kernel lacks overlayfs lowerdir+")

// mountOverlayFsconfig mounts the overlay through the new mount API,
// adding lower layers one by one.
func mountOverlayFsconfig(lowers []string, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if err == unix.ENOSYS {
			return errNoLowerdirPlus
		}
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetString(fd, "source", "overlay"); err != nil {
		return fmt.Errorf("fsconfig source: %w", err)
	}
	for i, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			if i == 0 && err == unix.EINVAL {
				return errNoLowerdirPlus
			}
			return fmt.Errorf("fsconfig lowerdir+ %s: %w", l, err)
		}
	}
	if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
		return fmt.Errorf("fsconfig upperdir: %w", err)
	}
	if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
		return fmt.Errorf("fsconfig workdir: %w", err)
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create the overlay (%d lower layers): %w", len(lowers), err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// probeOverlay checks, before anything is written, that an overlay can be
// mounted with its upper directory where PATH/delta will be (beside abs
// when abs does not exist yet), with an opaque directory (trusted xattr)
// and a whiteout (character device 0:0) in its lower layers.
func probeOverlay(abs string) error {
	dir := abs
	if _, err := os.Stat(abs); err != nil {
		dir = filepath.Dir(abs)
	}
	p, err := os.MkdirTemp(dir, ".occystrap-overlay-probe-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(p)
	sub := func(n string) string { return filepath.Join(p, n) }
	for _, d := range []string{"l1", "l1/d", "l2", "l2/d", "u", "w", "m"} {
		if err := os.Mkdir(sub(d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Setxattr(sub("l2/d"), unpack.OverlayOpaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("set %s on %s: %w", unpack.OverlayOpaqueXattr, dir, err)
	}
	if err := unix.Mknod(sub("l2/x"), unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create a whiteout device in %s: %w", dir, err)
	}
	if err := mountOverlay([]string{sub("l2"), sub("l1")}, sub("u"), sub("w"), sub("m"), false); err != nil {
		return err
	}
	if err := unix.Unmount(sub("m"), 0); err != nil {
		return fmt.Errorf("unmount the probe overlay %s: %w", sub("m"), err)
	}
	return nil
}
