package unpack

import (
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// WhiteoutMode says what an Unpacker does with whiteout entries.
type WhiteoutMode int

const (
	// WhiteoutsApply applies whiteouts and opaque markers to the content
	// lower layers wrote in the same directory: the merged filesystem.
	WhiteoutsApply WhiteoutMode = iota
	// WhiteoutsOverlay unpacks one layer on its own, as an overlayfs lower
	// directory: a whiteout `.wh.<x>` becomes a character device 0:0 named
	// <x>, and an opaque marker `.wh..wh..opq` sets the xattr
	// trusted.overlay.opaque=y on its directory (which needs
	// CAP_SYS_ADMIN). A path the same layer also writes is kept (a
	// directory is then made opaque), as WhiteoutsApply keeps it.
	// Overlayfs xattrs carried by the layer's entries (trusted.overlay.*,
	// user.overlay.*) are ignored, so that a layer cannot forge redirects
	// or metacopy references.
	WhiteoutsOverlay
)

const (
	// OverlayOpaqueXattr marks an overlayfs directory opaque.
	OverlayOpaqueXattr = "trusted.overlay.opaque"
)

// isOverlayXattr reports whether attr is one overlayfs interprets.
func isOverlayXattr(attr string) bool {
	return strings.HasPrefix(attr, "trusted.overlay.") || strings.HasPrefix(attr, "user.overlay.")
}

// overlayWhiteout converts a whiteout entry `.wh.<x>` or `.wh..wh..opq` in
// dir into its overlayfs form.
func (u *Unpacker) overlayWhiteout(dir, base string) error {
	if base == opaqueMarker {
		dfd, err := u.openDir(dir, true)
		if err != nil {
			return err
		}
		if err := unix.Fsetxattr(dfd, OverlayOpaqueXattr, []byte("y"), 0); err != nil {
			return &fs.PathError{Op: "setxattr " + OverlayOpaqueXattr, Path: dir, Err: err}
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		u.log.Debug().Int("layer", u.layer).Str("entry", u.entry).Msg("skipping AUFS metadata entry")
		return nil
	}
	target := base[len(whiteoutPrefix):]
	if target == "" {
		u.log.Warn().Int("layer", u.layer).Str("entry", u.entry).Msg("skipping whiteout with an empty name")
		return nil
	}
	if target == "." || target == ".." {
		return u.unsafe(reasonWhiteout)
	}
	pfd, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	full := join(dir, target)
	if u.seen[full] != 0 {
		// Written by this layer too: it stays, and a directory hides the
		// lower layers' content below it.
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, target, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "lstat", Path: full, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return u.setOpaqueAt(pfd, target, full)
		}
		return nil
	}
	const mode = unix.S_IFCHR | 0o000
	err = unix.Mknodat(pfd, target, mode, 0)
	if err == unix.EEXIST {
		if err := u.removeExisting(pfd, target, full); err != nil {
			return err
		}
		err = unix.Mknodat(pfd, target, mode, 0)
	}
	if err != nil {
		return &fs.PathError{Op: "mknod (overlayfs whiteout)", Path: full, Err: err}
	}
	if u.whited == nil {
		u.whited = make(map[string]bool)
	}
	u.whited[full] = true
	return nil
}

// setOpaqueAt marks the directory base in pfd opaque for overlayfs.
func (u *Unpacker) setOpaqueAt(pfd int, base, name string) error {
	fd, err := unix.Openat(pfd, base, dirFlags|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, OverlayOpaqueXattr, []byte("y"), 0); err != nil {
		return &fs.PathError{Op: "setxattr " + OverlayOpaqueXattr, Path: name, Err: fmt.Errorf("%w", err)}
	}
	return nil
}
