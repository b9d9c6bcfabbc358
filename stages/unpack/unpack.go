// Package unpack applies container image layers (uncompressed tar streams),
// one after another, onto a directory, producing the merged root filesystem,
// like `umoci unpack` or containerd's naive applier.
//
// Layers follow the OCI image-spec rules: a `.wh.<name>` entry deletes <name>
// as it exists in lower layers, and a `.wh..wh..opq` entry makes its
// directory opaque, hiding every lower-layer child of it while keeping the
// entries of the same layer, whatever their order in the tar.
//
// Confinement comes first: every path is resolved through an *os.Root, or
// through directory descriptors obtained from it, and the final component of
// a path is never followed when it is created, replaced or changed. A layer
// that tries to reach outside the root fails with an *UnsafeError.
//
// Data is streamed: no layer or file is held in memory, only per-layer sets
// of path names and the deferred metadata of directories.
package unpack

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
	xattrPrefix    = "SCHILY.xattr."

	bufSize  = 1 << 20 // copy buffer for file data
	maxChain = 64      // directory descriptors kept open at most (plus one)

	reasonEscapes     = "path escapes the root"
	reasonSymlink     = "path escapes the root through a symlink (absolute symlinks count as leaving it)"
	reasonLinkEscapes = "hardlink target escapes the root"
	reasonLinkSymlink = "hardlink target escapes the root through a symlink"
	reasonRoot        = "entry would replace the root directory"
	reasonWhiteout    = "whiteout names an invalid path"
)

// Flags of the per-layer set of paths.
const (
	seenWritten  uint8 = 1 << iota // the layer wrote this path
	seenAncestor                   // the layer wrote something below this path
)

// ErrUnsafe is the error every *UnsafeError wraps: a layer entry tried to
// reach outside the root. Test with errors.Is(err, ErrUnsafe).
var ErrUnsafe = errors.New("unsafe path in layer")

// UnsafeError reports a layer entry refused because it would read or write
// outside the root.
type UnsafeError struct {
	// Layer is the index of the layer, as given to Apply.
	Layer int
	// Entry is the entry's name as written in the tar.
	Entry string
	// Reason says why the entry was refused.
	Reason string
}

// Error returns a message of the form `layer 2 entry "../../x": <reason>`.
func (e *UnsafeError) Error() string {
	return fmt.Sprintf("layer %d entry %q: %s", e.Layer, e.Entry, e.Reason)
}

// Unwrap returns ErrUnsafe.
func (e *UnsafeError) Unwrap() error { return ErrUnsafe }

// errLeaves is returned internally when os.Root refuses to follow a symlink
// out of the root; callers turn it into an *UnsafeError.
var errLeaves = errors.New("symlink leaves the root")

// Options configures an Unpacker.
type Options struct {
	// Log receives warnings (skipped device nodes, empty whiteouts) and
	// debug messages (skipped entries, xattrs that could not be set).
	Log zerolog.Logger
	// Owner applies the uid and gid of every entry with lchown. Callers
	// normally set it when running as root; when false, ownership in the
	// layers is ignored and files belong to the calling user.
	Owner bool
	// Whiteouts says what whiteout entries do: WhiteoutsApply (the
	// default) applies them to what lower layers wrote; WhiteoutsOverlay
	// keeps each layer apart, converting them to overlayfs form.
	Whiteouts WhiteoutMode
}

// dirMeta is the metadata of a directory, applied by Finish.
type dirMeta struct {
	mode     uint32
	uid, gid int
	times    [2]unix.Timespec // atime, mtime
}

// dirRef is an open directory descriptor and the path, relative to the root,
// that it was opened as.
type dirRef struct {
	path string
	fd   int
}

// Unpacker applies layers in order onto the directory root. It is not safe
// for concurrent use.
type Unpacker struct {
	root      *os.Root
	rootDir   *os.File // the root directory itself, kept open for its fd
	rootfd    int
	opts      Options
	log       zerolog.Logger
	escapeErr error // the error os.Root gives for paths that leave it

	buf   []byte
	br    *bufio.Reader
	times [2]unix.Timespec // scratch for utimensat

	// src is ApplyFile's reader, kept for reuse. copySrc is the same while
	// ApplyFile runs: regular files are then copied from the layer's file
	// in the kernel, unless noKernelCopy says that cannot work here.
	src          *rangeReader
	copySrc      *rangeReader
	noKernelCopy bool

	// chain caches open descriptors of the directories most recently
	// written into; each entry's path is an ancestor of (or equal to) the
	// next one's.
	chain []dirRef

	dirs map[string]dirMeta // directory metadata, applied by Finish
	seen map[string]uint8   // paths written by the current layer
	// whited holds the paths the current layer turned into overlayfs
	// whiteouts (WhiteoutsOverlay).
	whited map[string]bool

	layer       int    // current layer, for messages
	entry       string // current entry's raw name, for messages
	warnedMknod bool
	finished    bool
	closed      bool
}

// New returns an Unpacker writing into root, which must exist and be a
// directory. Close it when done.
func New(root string, opts Options) (*Unpacker, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("unpack: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("unpack: %s is not a directory", root)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("unpack: %w", err)
	}
	d, err := r.Open(".")
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("unpack: %w", err)
	}
	u := &Unpacker{
		root:    r,
		rootDir: d,
		rootfd:  int(d.Fd()),
		opts:    opts,
		log:     opts.Log,
		buf:     make([]byte, bufSize),
		dirs:    make(map[string]dirMeta),
		seen:    make(map[string]uint8),
	}
	// os.Root does not export the error it gives for paths that leave it;
	// obtain it from a path that is refused without touching the disk.
	if _, err := r.Lstat(".."); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			u.escapeErr = pe.Err
		}
	}
	return u, nil
}

// Apply applies one layer, read as an uncompressed tar stream from r, on
// top of what is already in the root. layer is the layer's index, used in
// messages. Apply reads headers until the end-of-archive marker; the caller
// drains any remainder of r (Apply reads r through a buffer, so it may have
// consumed part of that remainder already). It checks ctx between entries (and between
// chunks of large files). Directory modes and times are applied by Finish.
func (u *Unpacker) Apply(ctx context.Context, layer int, r io.Reader) error {
	if err := u.usable(); err != nil {
		return err
	}
	if _, ok := r.(io.ByteReader); !ok {
		// Buffer small reads (512-byte headers); large reads bypass it.
		if u.br == nil {
			u.br = bufio.NewReaderSize(r, 64<<10)
		} else {
			u.br.Reset(r)
		}
		defer u.br.Reset(nil)
		r = u.br
	}
	return u.applyTar(ctx, layer, r, nil)
}

// ApplyFile applies one layer like Apply, reading it from the n bytes at
// offset off of f: an uncompressed tar stream lying in a file, such as a
// layer inside a docker-save tarball. The data of regular files is copied
// from f into the new files in the kernel (copy_file_range) where the file
// systems allow it, rather than read into user space and written back.
// Nothing outside the range is read, and nothing is left for the caller to
// drain. f's own offset is neither used nor moved; f must stay open until
// ApplyFile returns. The same checks as Apply's confine every entry.
func (u *Unpacker) ApplyFile(ctx context.Context, layer int, f *os.File, off, n int64) error {
	if err := u.usable(); err != nil {
		return err
	}
	if off < 0 || n < 0 {
		return fmt.Errorf("unpack: layer %d: invalid range %d+%d", layer, off, n)
	}
	if u.src == nil {
		u.src = &rangeReader{buf: make([]byte, rangeBuf)}
	}
	u.src.reset(f, off, n)
	defer u.src.reset(nil, 0, 0)
	return u.applyTar(ctx, layer, u.src, u.src)
}

func (u *Unpacker) usable() error {
	if u.closed {
		return errors.New("unpack: Apply after Close")
	}
	if u.finished {
		return errors.New("unpack: Apply after Finish")
	}
	return nil
}

// applyTar applies the tar stream r. When the stream is read from a file
// range, src is r itself, and regular files are copied from it in the
// kernel.
func (u *Unpacker) applyTar(ctx context.Context, layer int, r io.Reader, src *rangeReader) error {
	clear(u.seen)
	defer clear(u.seen)
	clear(u.whited)
	u.layer = layer
	u.copySrc = src
	defer func() { u.copySrc = nil }()
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %d: reading tar: %w", layer, truncated(err))
		}
		u.entry = hdr.Name
		if err := u.apply(ctx, tr, hdr); err != nil {
			if errors.Is(err, errLeaves) {
				return u.unsafe(reasonSymlink)
			}
			var ue *UnsafeError
			if errors.As(err, &ue) || errors.Is(err, context.Canceled) ||
				errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return fmt.Errorf("layer %d entry %q: %w", layer, hdr.Name, truncated(err))
		}
	}
}

// truncated says plainly that a tar stream ended early.
func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the layer's tar stream is truncated: %w", err)
	}
	return err
}

// unsafe returns an *UnsafeError for the current entry.
func (u *Unpacker) unsafe(reason string) error {
	return &UnsafeError{Layer: u.layer, Entry: u.entry, Reason: reason}
}

// apply applies one tar entry.
func (u *Unpacker) apply(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	name, ok := cleanName(hdr.Name)
	if !ok {
		return u.unsafe(reasonEscapes)
	}
	dir, base := split(name)
	if hasWhiteoutDir(dir) {
		u.log.Debug().Int("layer", u.layer).Str("entry", hdr.Name).
			Msg("skipping entry inside a whiteout directory")
		return nil
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	if name == "." && hdr.Typeflag != tar.TypeDir {
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse, tar.TypeSymlink,
			tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return u.unsafe(reasonRoot)
		}
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(hdr, name, dir, base)
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		pfd, err := u.openDir(dir, true)
		if err != nil {
			return err
		}
		return u.writeFile(ctx, tr, hdr, pfd, base, name)
	case tar.TypeSymlink:
		pfd, err := u.openDir(dir, true)
		if err != nil {
			return err
		}
		return u.symlink(hdr, pfd, base, name)
	case tar.TypeLink:
		return u.hardlink(hdr, name, dir, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		pfd, err := u.openDir(dir, true)
		if err != nil {
			return err
		}
		return u.mknod(hdr, pfd, base, name)
	default:
		u.log.Debug().Int("layer", u.layer).Str("entry", hdr.Name).
			Str("type", string(hdr.Typeflag)).Msg("skipping entry of unknown type")
		return nil
	}
}

// Finish applies the deferred metadata of directories: owner, mode and
// times, deepest first, so that read-only directories did not block writes
// into them and writing children did not change their times. Call it once,
// after the last layer.
func (u *Unpacker) Finish() error {
	if u.closed {
		return errors.New("unpack: Finish after Close")
	}
	if u.finished {
		return nil
	}
	u.finished = true
	keys := make([]string, 0, len(u.dirs))
	for k := range u.dirs {
		if k != "." {
			keys = append(keys, k)
		}
	}
	// In reverse lexical order every directory comes before its ancestors.
	slices.Sort(keys)
	slices.Reverse(keys)
	if _, ok := u.dirs["."]; ok {
		keys = append(keys, ".")
	}
	for _, p := range keys {
		if err := u.finishDir(p, u.dirs[p]); err != nil {
			return fmt.Errorf("unpack: directory %q: %w", p, err)
		}
	}
	clear(u.dirs)
	return nil
}

// finishDir applies m to the directory p, if it is still a directory.
func (u *Unpacker) finishDir(p string, m dirMeta) error {
	dir, base := split(p)
	pfd, err := u.openDir(dir, false)
	if err != nil {
		u.log.Debug().Str("dir", p).Err(err).Msg("directory gone, metadata not applied")
		return nil
	}
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0)
	if err != nil {
		u.log.Debug().Str("dir", p).Err(err).Msg("directory gone, metadata not applied")
		return nil
	}
	if u.opts.Owner {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			unix.Close(fd)
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		unix.Close(fd)
		return fmt.Errorf("chmod: %w", err)
	}
	unix.Close(fd)
	if err := unix.UtimesNanoAt(pfd, base, m.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimensat: %w", err)
	}
	return nil
}

// Close releases the Unpacker's descriptors. It does not call Finish.
func (u *Unpacker) Close() error {
	if u.closed {
		return nil
	}
	u.closed = true
	u.truncateChain(0)
	err := u.rootDir.Close()
	if e := u.root.Close(); err == nil {
		err = e
	}
	return err
}

// cleanName turns a tar name into a clean path relative to the root: leading
// slashes and "./" are dropped, so absolute names are confined to the root.
// It reports false for names that still escape ("..", "../x").
func cleanName(n string) (string, bool) {
	n = strings.TrimLeft(n, "/")
	if n == "" {
		return ".", true
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return c, true
}

// split splits a clean relative path into its parent and last component.
// The parent of a top-level name is ".".
func split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// join joins a clean directory path and a name.
func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// within reports whether p is a or lies below a.
func within(p, a string) bool {
	if a == "." {
		return true
	}
	return p == a || (len(p) > len(a) && p[len(a)] == '/' && p[:len(a)] == a)
}

// hasWhiteoutDir reports whether a component of the directory path dir
// starts with ".wh." (AUFS metadata directories such as .wh..wh.plnk).
func hasWhiteoutDir(dir string) bool {
	return strings.HasPrefix(dir, whiteoutPrefix) || strings.Contains(dir, "/"+whiteoutPrefix)
}

// mark records that the current layer wrote p.
func (u *Unpacker) mark(p string) {
	u.seen[p] |= seenWritten
	for d, _ := split(p); d != "."; d, _ = split(d) {
		if u.seen[d]&seenAncestor != 0 {
			break
		}
		u.seen[d] |= seenAncestor
	}
}

// setTimes stores the entry's atime and mtime in u.times.
func (u *Unpacker) setTimes(hdr *tar.Header) {
	u.times = entryTimes(hdr)
}

// entryTimes returns the atime and mtime of an entry; atime defaults to the
// mtime.
func entryTimes(hdr *tar.Header) [2]unix.Timespec {
	m := unix.Timespec{Sec: hdr.ModTime.Unix(), Nsec: int64(hdr.ModTime.Nanosecond())}
	a := m
	if !hdr.AccessTime.IsZero() {
		a = unix.Timespec{Sec: hdr.AccessTime.Unix(), Nsec: int64(hdr.AccessTime.Nanosecond())}
	}
	return [2]unix.Timespec{a, m}
}

// entryMode returns the permission bits of an entry, with setuid, setgid
// and sticky, as a unix mode.
func entryMode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

// isSparse reports whether a file entry is a GNU sparse file.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	if hdr.PAXRecords == nil {
		return false
	}
	for _, k := range []string{"GNU.sparse.major", "GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.realsize"} {
		if _, ok := hdr.PAXRecords[k]; ok {
			return true
		}
	}
	return false
}
