package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// mkdir applies a directory entry. An existing directory is kept (with its
// contents); anything else in the way is removed. The directory is made
// writable by its owner for now: its real mode and times are recorded for
// Finish.
func (u *Unpacker) mkdir(hdr *tar.Header, name, dir, base string) error {
	meta := dirMeta{mode: entryMode(hdr), uid: hdr.Uid, gid: hdr.Gid, times: entryTimes(hdr)}
	if name == "." {
		u.dirs["."] = meta
		u.setXattrs(u.rootfd, hdr, name)
		return nil
	}
	pfd, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	perm := meta.mode&0o777 | 0o700
	err = unix.Mkdirat(pfd, base, perm)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil &&
			st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err = u.removeMode(pfd, base, name, st.Mode); err != nil {
				return err
			}
			err = unix.Mkdirat(pfd, base, perm)
		}
	}
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: err}
	}
	u.dirs[name] = meta
	u.mark(name)
	if u.whited[name] {
		// Replaces this layer's own overlayfs whiteout: hide lower content.
		if err := u.setOpaqueAt(pfd, base, name); err != nil {
			return err
		}
	}
	if hasXattrs(hdr) {
		fd, err := unix.Openat(pfd, base, dirFlags|unix.O_NOFOLLOW, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: name, Err: err}
		}
		u.setXattrs(fd, hdr, name)
		unix.Close(fd)
	}
	return nil
}

// writeFile applies a regular file entry: whatever is in the way is removed
// (an existing file is replaced, not rewritten, so that other hard links to
// it keep their data), then the data is streamed into a new file.
func (u *Unpacker) writeFile(ctx context.Context, tr *tar.Reader, hdr *tar.Header, pfd int, base, name string) error {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0o600)
	if err == unix.EEXIST {
		if err := u.removeExisting(pfd, base, name); err != nil {
			return err
		}
		fd, err = unix.Openat(pfd, base, flags, 0o600)
	}
	if err != nil {
		return &fs.PathError{Op: "create", Path: name, Err: err}
	}
	sparse := isSparse(hdr)
	copied := false
	if src := u.copySrc; src != nil && !u.noKernelCopy && !sparse &&
		hdr.Typeflag == tar.TypeReg && hdr.Size >= kernelCopyMin {
		// Straight from the layer's file; the tar reader skips the data.
		switch err = src.copyTo(ctx, fd, hdr.Size); err {
		case nil:
			copied = true
		case errNoKernelCopy:
			u.noKernelCopy = true
			err = nil
		}
	}
	if err == nil && !copied {
		err = u.copyData(ctx, fd, tr, sparse)
	}
	if err == nil {
		err = u.fileMeta(fd, hdr, name)
	}
	if e := unix.Close(fd); err == nil && e != nil {
		err = &fs.PathError{Op: "close", Path: name, Err: e}
	}
	if err != nil {
		return err
	}
	u.mark(name)
	u.setTimes(hdr)
	if err := unix.UtimesNanoAt(pfd, base, u.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimensat", Path: name, Err: err}
	}
	return nil
}

// fileMeta sets the owner, mode and xattrs of the open regular file fd, in
// that order: chown clears setuid/setgid bits and file capabilities.
func (u *Unpacker) fileMeta(fd int, hdr *tar.Header, name string) error {
	if u.opts.Owner {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return &fs.PathError{Op: "chown", Path: name, Err: err}
		}
	}
	if err := unix.Fchmod(fd, entryMode(hdr)); err != nil {
		return &fs.PathError{Op: "chmod", Path: name, Err: err}
	}
	if hasXattrs(hdr) {
		u.setXattrs(fd, hdr, name)
	}
	return nil
}

// copyData streams the current entry's data into fd through the reusable
// buffer. For sparse entries, runs of zero blocks are skipped so that holes
// stay holes.
func (u *Unpacker) copyData(ctx context.Context, fd int, r io.Reader, sparse bool) error {
	var off int64
	for {
		n, eof, err := fill(r, u.buf)
		if n > 0 {
			var werr error
			if sparse {
				werr = writeSparse(fd, u.buf[:n], off)
			} else {
				werr = writeAll(fd, u.buf[:n])
			}
			if werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err != nil {
			return err
		}
		if eof {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if sparse {
		// Trailing holes: give the file its full size.
		if err := unix.Ftruncate(fd, off); err != nil {
			return fmt.Errorf("ftruncate: %w", err)
		}
	}
	return nil
}

// fill reads from r until buf is full or r is at its end (eof true).
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// writeAll writes b to fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// writeSparse writes the non-zero 4 KiB blocks of b at offset off of fd.
func writeSparse(fd int, b []byte, off int64) error {
	const blk = 4096
	start := -1 // start of the current run of data blocks
	for i := 0; i < len(b); i += blk {
		end := min(i+blk, len(b))
		if isZero(b[i:end]) {
			if start >= 0 {
				if err := pwriteAll(fd, b[start:i], off+int64(start)); err != nil {
					return err
				}
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		return pwriteAll(fd, b[start:], off+int64(start))
	}
	return nil
}

// pwriteAll writes b to fd at offset off.
func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("pwrite: %w", err)
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// symlink applies a symlink entry. The target is stored as is: symlinks may
// point anywhere, since they are never followed when writing.
func (u *Unpacker) symlink(hdr *tar.Header, pfd int, base, name string) error {
	err := unix.Symlinkat(hdr.Linkname, pfd, base)
	if err == unix.EEXIST {
		if err := u.removeExisting(pfd, base, name); err != nil {
			return err
		}
		err = unix.Symlinkat(hdr.Linkname, pfd, base)
	}
	if err != nil {
		return &fs.PathError{Op: "symlink", Path: name, Err: err}
	}
	u.mark(name)
	return u.nodeMeta(hdr, pfd, base, name, false)
}

// nodeMeta sets the owner, mode (unless symlink) and times of a node that
// cannot be opened safely (symlink, device, fifo), without following it.
func (u *Unpacker) nodeMeta(hdr *tar.Header, pfd int, base, name string, chmod bool) error {
	if u.opts.Owner {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "lchown", Path: name, Err: err}
		}
	}
	if chmod {
		mode := entryMode(hdr)
		err := unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
			// No fchmodat2: the node was just made by us and is not a
			// symlink, so plain fchmodat is equivalent.
			err = unix.Fchmodat(pfd, base, mode, 0)
		}
		if err != nil {
			return &fs.PathError{Op: "chmod", Path: name, Err: err}
		}
	}
	u.setTimes(hdr)
	if err := unix.UtimesNanoAt(pfd, base, u.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimensat", Path: name, Err: err}
	}
	return nil
}

// hardlink applies a hard link entry. The target is cleaned like entry
// names, must be inside the root and must exist (written by this or a lower
// layer).
func (u *Unpacker) hardlink(hdr *tar.Header, name, dir, base string) error {
	if hdr.Linkname == "" {
		return errors.New("hardlink with an empty target")
	}
	target, ok := cleanName(hdr.Linkname)
	if !ok {
		return u.unsafe(reasonLinkEscapes)
	}
	if target == "." {
		return fmt.Errorf("hardlink target %q is the root directory", hdr.Linkname)
	}
	if target == name {
		u.log.Debug().Int("layer", u.layer).Str("entry", hdr.Name).Msg("skipping hardlink to itself")
		return nil
	}
	tdir, tbase := split(target)
	if hasWhiteoutDir(tdir) || strings.HasPrefix(tbase, whiteoutPrefix) {
		return fmt.Errorf("hardlink target %q is a whiteout", hdr.Linkname)
	}
	pfd, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	tfd := pfd
	if tdir != dir {
		tfd, err = u.openDirViaRoot(tdir, false)
		if err != nil {
			if errors.Is(err, errLeaves) {
				return u.unsafe(reasonLinkSymlink)
			}
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
				return fmt.Errorf("hardlink target %q does not exist", hdr.Linkname)
			}
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(tfd)
	}
	// Flags 0: a symlink target is linked itself, not followed.
	err = unix.Linkat(tfd, tbase, pfd, base, 0)
	if err == unix.EEXIST {
		if err := u.removeExisting(pfd, base, name); err != nil {
			return err
		}
		err = unix.Linkat(tfd, tbase, pfd, base, 0)
	}
	switch err {
	case nil:
	case unix.ENOENT:
		return fmt.Errorf("hardlink target %q does not exist", hdr.Linkname)
	default:
		return &fs.PathError{Op: "link", Path: name, Err: fmt.Errorf("to %q: %w", hdr.Linkname, err)}
	}
	u.mark(name)
	return nil
}

// mknod applies a character device, block device or fifo entry. When the
// kernel refuses (EPERM, as for devices when not root), it warns once and
// skips the entry.
func (u *Unpacker) mknod(hdr *tar.Header, pfd int, base, name string) error {
	var typ uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		typ = unix.S_IFCHR
	case tar.TypeBlock:
		typ = unix.S_IFBLK
	default:
		typ = unix.S_IFIFO
	}
	mode := typ | entryMode(hdr)&0o777
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	err := unix.Mknodat(pfd, base, mode, dev)
	if err == unix.EEXIST {
		if err := u.removeExisting(pfd, base, name); err != nil {
			return err
		}
		err = unix.Mknodat(pfd, base, mode, dev)
	}
	if err == unix.EPERM {
		if !u.warnedMknod {
			u.warnedMknod = true
			u.log.Warn().Int("layer", u.layer).Str("entry", hdr.Name).
				Msg("not permitted to create device nodes or fifos; skipping them")
		} else {
			u.log.Debug().Int("layer", u.layer).Str("entry", hdr.Name).Msg("skipping device node")
		}
		return nil
	}
	if err != nil {
		return &fs.PathError{Op: "mknod", Path: name, Err: err}
	}
	u.mark(name)
	return u.nodeMeta(hdr, pfd, base, name, true)
}

// whiteout applies a whiteout entry `.wh.<x>` or `.wh..wh..opq` in dir.
// Only content from lower layers is removed: paths written by the current
// layer are kept, whether they come before or after the whiteout.
func (u *Unpacker) whiteout(dir, base string) error {
	if u.opts.Whiteouts == WhiteoutsOverlay {
		return u.overlayWhiteout(dir, base)
	}
	if base == opaqueMarker {
		dfd, err := u.openDir(dir, false)
		if err != nil {
			return ignoreMissing(err)
		}
		return u.pruneChildren(dfd, dir)
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
	pfd, err := u.openDir(dir, false)
	if err != nil {
		return ignoreMissing(err)
	}
	full := join(dir, target)
	if u.seen[full] != 0 {
		// Written by this layer: keep it, but drop lower content below it.
		return u.pruneIfDir(pfd, target, full)
	}
	return u.removeExisting(pfd, target, full)
}

// ignoreMissing returns nil for errors saying that a path does not exist or
// goes through a non-directory: a whiteout of such a path has nothing to do.
func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	return err
}

// hasXattrs reports whether the entry carries extended attributes.
func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, xattrPrefix) {
			return true
		}
	}
	return false
}

// setXattrs sets the entry's extended attributes on fd. Failures are
// logged at debug level and otherwise ignored.
func (u *Unpacker) setXattrs(fd int, hdr *tar.Header, name string) {
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok || attr == "" {
			continue
		}
		if u.opts.Whiteouts == WhiteoutsOverlay && isOverlayXattr(attr) {
			u.log.Debug().Int("layer", u.layer).Str("entry", name).Str("xattr", attr).
				Msg("ignoring overlayfs xattr carried by the layer")
			continue
		}
		if err := unix.Fsetxattr(fd, attr, []byte(v), 0); err != nil {
			u.log.Debug().Int("layer", u.layer).Str("entry", name).Str("xattr", attr).
				Err(err).Msg("cannot set xattr")
		}
	}
}
