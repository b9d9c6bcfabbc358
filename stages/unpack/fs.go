package unpack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC

// openDir returns a descriptor for the directory p (a clean path relative to
// the root), owned by the Unpacker's cache: callers must not close it, and
// it stays valid until the next openDir, removal or Close.
//
// Components are opened one at a time with O_NOFOLLOW from the nearest
// cached ancestor. When a component is a symlink, the rest of the path is
// resolved by os.Root, which follows symlinks only while they stay inside
// the root; a symlink that leaves it yields errLeaves. With create, missing
// directories are made (mode 0755); without it, a missing directory yields
// an error matching fs.ErrNotExist.
func (u *Unpacker) openDir(p string, create bool) (int, error) {
	if p == "." {
		return u.rootfd, nil
	}
	cur, curPath := u.rootfd, "."
	i := 0
	for ; i < len(u.chain); i++ {
		if !within(p, u.chain[i].path) {
			break
		}
		cur, curPath = u.chain[i].fd, u.chain[i].path
	}
	if curPath == p {
		// Deeper entries are kept: the next entry often returns to them.
		return cur, nil
	}
	u.truncateChain(i)

	rest := p
	if curPath != "." {
		rest = p[len(curPath)+1:]
	}
	curTemp := false // cur is not in the chain and must be closed by us
	for rest != "" {
		var c string
		if j := indexSlash(rest); j >= 0 {
			c, rest = rest[:j], rest[j+1:]
		} else {
			c, rest = rest, ""
		}
		next := c
		if curPath != "." {
			next = curPath + "/" + c
		}
		fd, err := unix.Openat(cur, c, dirFlags|unix.O_NOFOLLOW, 0)
		switch err {
		case nil:
		case unix.ENOENT:
			if !create {
				u.closeTemp(cur, curTemp)
				return -1, &fs.PathError{Op: "open", Path: next, Err: fs.ErrNotExist}
			}
			if err := unix.Mkdirat(cur, c, 0o755); err != nil && err != unix.EEXIST {
				u.closeTemp(cur, curTemp)
				return -1, &fs.PathError{Op: "mkdir", Path: next, Err: err}
			}
			fd, err = unix.Openat(cur, c, dirFlags|unix.O_NOFOLLOW, 0)
			if err != nil {
				u.closeTemp(cur, curTemp)
				return -1, &fs.PathError{Op: "open", Path: next, Err: err}
			}
			// Implicit directories are 0755 whatever the umask.
			if err := unix.Fchmod(fd, 0o755); err != nil {
				unix.Close(fd)
				u.closeTemp(cur, curTemp)
				return -1, &fs.PathError{Op: "chmod", Path: next, Err: err}
			}
		case unix.ELOOP, unix.ENOTDIR:
			var st unix.Stat_t
			if err := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				u.closeTemp(cur, curTemp)
				return -1, &fs.PathError{Op: "lstat", Path: next, Err: err}
			}
			if st.Mode&unix.S_IFMT != unix.S_IFLNK {
				u.closeTemp(cur, curTemp)
				return -1, &fs.PathError{Op: "open", Path: next, Err: unix.ENOTDIR}
			}
			// A symlink: let os.Root resolve the whole path safely.
			u.closeTemp(cur, curTemp)
			fd, err = u.openDirViaRoot(p, create)
			if err != nil {
				return -1, err
			}
			u.push(p, fd, true)
			return fd, nil
		default:
			u.closeTemp(cur, curTemp)
			return -1, &fs.PathError{Op: "open", Path: next, Err: err}
		}
		u.closeTemp(cur, curTemp)
		cur, curPath = fd, next
		curTemp = !u.push(next, fd, false)
	}
	if curTemp {
		u.push(p, cur, true)
	}
	return cur, nil
}

// push appends a directory to the chain if there is room, or when force is
// set (then as the single entry beyond maxChain). It reports whether fd is
// now owned by the chain.
func (u *Unpacker) push(p string, fd int, force bool) bool {
	if len(u.chain) < maxChain {
		u.chain = append(u.chain, dirRef{path: p, fd: fd})
		return true
	}
	if !force {
		return false
	}
	u.truncateChain(maxChain)
	u.chain = append(u.chain, dirRef{path: p, fd: fd})
	return true
}

// closeTemp closes fd if it is a temporary descriptor.
func (u *Unpacker) closeTemp(fd int, temp bool) {
	if temp {
		unix.Close(fd)
	}
}

// truncateChain closes the cached directories from index i on.
func (u *Unpacker) truncateChain(i int) {
	for _, e := range u.chain[i:] {
		unix.Close(e.fd)
	}
	clear(u.chain[i:])
	u.chain = u.chain[:i]
}

// invalidate drops the cached directories at or below p, which is about to
// be removed or replaced.
func (u *Unpacker) invalidate(p string) {
	for i, e := range u.chain {
		if within(e.path, p) {
			u.truncateChain(i)
			return
		}
	}
}

// forgetDirs drops the deferred metadata of p and of everything below it.
func (u *Unpacker) forgetDirs(p string) {
	if len(u.dirs) == 0 {
		return
	}
	for k := range u.dirs {
		if within(k, p) {
			delete(u.dirs, k)
		}
	}
}

// openDirViaRoot opens the directory p through os.Root, following symlinks
// that stay inside the root, and returns a new descriptor.
func (u *Unpacker) openDirViaRoot(p string, create bool) (int, error) {
	f, err := u.root.OpenFile(p, dirFlags, 0)
	if err != nil && create && errors.Is(err, fs.ErrNotExist) && !u.isEscape(err) {
		if e := u.root.MkdirAll(p, 0o755); e != nil {
			err = e
		} else {
			f, err = u.root.OpenFile(p, dirFlags, 0)
		}
	}
	if err != nil {
		if u.isEscape(err) {
			return -1, fmt.Errorf("%w: %w", errLeaves, err)
		}
		return -1, err
	}
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "dup", Path: p, Err: err}
	}
	return fd, nil
}

// isEscape reports whether err is os.Root's refusal of a path that leaves
// the root.
func (u *Unpacker) isEscape(err error) bool {
	if u.escapeErr != nil {
		return errors.Is(err, u.escapeErr)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error() == "path escapes from parent"
	}
	return false
}

// removeExisting removes whatever is at base in the directory pfd (full is
// its path relative to the root). A missing entry is not an error.
// Directories are removed with their contents; symlinks are removed, never
// followed.
func (u *Unpacker) removeExisting(pfd int, base, full string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return &fs.PathError{Op: "lstat", Path: full, Err: err}
	}
	return u.removeMode(pfd, base, full, st.Mode)
}

// removeMode removes base in pfd, known to have the file type in mode.
func (u *Unpacker) removeMode(pfd int, base, full string, mode uint32) error {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		u.invalidate(full)
		u.forgetDirs(full)
		if err := u.root.RemoveAll(full); err != nil {
			if u.isEscape(err) {
				return fmt.Errorf("%w: %w", errLeaves, err)
			}
			return err
		}
		return nil
	case unix.S_IFLNK:
		u.invalidate(full)
		u.forgetDirs(full)
	}
	if err := unix.Unlinkat(pfd, base, 0); err != nil && err != unix.ENOENT {
		return &fs.PathError{Op: "unlink", Path: full, Err: err}
	}
	return nil
}

// readNames lists the directory open as dfd without moving dfd's offset.
func readNames(dfd int) ([]string, error) {
	fd, err := unix.Openat(dfd, ".", dirFlags, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// pruneChildren removes every child of the directory dfd (path dpath) that
// the current layer did not write, descending into the children it kept.
func (u *Unpacker) pruneChildren(dfd int, dpath string) error {
	names, err := readNames(dfd)
	if err != nil {
		return &fs.PathError{Op: "readdir", Path: dpath, Err: err}
	}
	for _, n := range names {
		child := join(dpath, n)
		if u.seen[child] == 0 {
			if err := u.removeExisting(dfd, n, child); err != nil {
				return err
			}
			continue
		}
		if err := u.pruneIfDir(dfd, n, child); err != nil {
			return err
		}
	}
	return nil
}

// pruneIfDir prunes the lower-layer content below base in pfd if base is a
// real directory (symlinks are not followed).
func (u *Unpacker) pruneIfDir(pfd int, base, full string) error {
	fd, err := unix.Openat(pfd, base, dirFlags|unix.O_NOFOLLOW, 0)
	switch err {
	case nil:
	case unix.ENOENT, unix.ENOTDIR, unix.ELOOP:
		return nil
	default:
		return &fs.PathError{Op: "open", Path: full, Err: err}
	}
	defer unix.Close(fd)
	return u.pruneChildren(fd, full)
}

// indexSlash returns the index of the first '/' in s, or -1.
func indexSlash(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}
