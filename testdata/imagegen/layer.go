// Package imagegen writes synthetic container images as "docker save"
// tarballs, for tests and benchmarks of occystrap.
//
// An Image is a list of Layers, each a list of Entries (files, directories,
// links, whiteouts, ...). Write serialises it in one of the two formats that
// "docker save" produces: Legacy (Docker 24 and older: "<v1id>/layer.tar"
// directories) or OCI (Docker 25 and newer: an OCI image layout with a
// Docker manifest.json added). Output is deterministic: the same Image gives
// the same bytes and digests on every run.
//
// Big layers are never held in memory. Files with Data == nil and Size > 0
// are filled with pseudo-random, incompressible bytes generated from Seed,
// and each layer is generated twice: once to learn its size and digests
// and once to write it.
//
// Sample returns a small image covering the awkward corners of layer
// contents, Big a large one for benchmarks, and Hostile a set of malformed
// or malicious tarballs that a safe reader must refuse.
package imagegen

import (
	"archive/tar"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"time"
)

// DefaultModTime is the modification time given to entries whose ModTime is
// zero, to outer tarball entries, and the creation time of images whose
// Created is zero.
var DefaultModTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// EntryType is the kind of a layer entry.
type EntryType int

const (
	// File is a regular file holding Data, or Size pseudo-random bytes.
	File EntryType = iota
	// Dir is a directory; its name is written with a trailing "/".
	Dir
	// Symlink is a symbolic link to Link, written verbatim.
	Symlink
	// Hardlink is a hard link to the archive path Link.
	Hardlink
	// Whiteout deletes Path from lower layers: it is written as an empty
	// regular file named ".wh.<base of Path>" in Path's directory.
	Whiteout
	// Opaque hides all lower-layer contents of the directory Path: it is
	// written as an empty regular file "<Path>/.wh..wh..opq".
	Opaque
	// Fifo is a named pipe.
	Fifo
	// CharDev is a character device with numbers DevMajor and DevMinor.
	CharDev
)

var entryTypeNames = [...]string{"file", "dir", "symlink", "hardlink", "whiteout", "opaque", "fifo", "chardev"}

// String returns a lower-case name for the type, such as "symlink".
func (t EntryType) String() string {
	if t >= 0 && int(t) < len(entryTypeNames) {
		return entryTypeNames[t]
	}
	return fmt.Sprintf("EntryType(%d)", int(t))
}

// ModeNone requests an entry with no permission bits at all (mode 0000);
// a zero Mode means "use the default for the type".
const ModeNone int64 = -1

// Entry is one member of a layer tarball.
type Entry struct {
	// Path is the path inside the layer, without a leading "./" (the writer
	// adds one when Layer.DotSlash is set). It is written as given, without
	// cleaning, so hostile names such as "../x" or "/x" survive.
	Path string
	// Type is the kind of entry; the zero value is File.
	Type EntryType
	// Data is the content of a File. When Data is nil, Size is used.
	Data []byte
	// Size is the length of a File whose Data is nil: the content is Size
	// deterministic pseudo-random bytes generated from Seed, streamed and
	// never held whole in memory.
	Size int64
	// Seed selects the pseudo-random content of a File that uses Size.
	Seed int64
	// Link is the target of a Symlink (written verbatim) or of a Hardlink
	// (an archive path, prefixed with "./" like Path when DotSlash is set
	// and Link is relative).
	Link string
	// Mode holds the permission bits, including setuid, setgid and sticky
	// bits. Zero selects the default: 0644 for files, whiteouts, opaque
	// markers, hardlinks and fifos, 0755 for directories, 0777 for
	// symlinks, 0666 for devices. ModeNone gives mode 0000.
	Mode int64
	// UID and GID are the numeric owner and group.
	UID, GID int
	// ModTime is the modification time; zero selects DefaultModTime.
	// It is stored with one-second precision.
	ModTime time.Time
	// Xattrs are extended attributes, written as PAX SCHILY.xattr.* records.
	Xattrs map[string]string
	// DevMajor and DevMinor are the device numbers of a CharDev.
	DevMajor, DevMinor int64
}

// Layer is one filesystem layer of an image.
type Layer struct {
	// Entries are written in order. Real layers list a directory before
	// its contents; AddParents can insert the missing directories.
	Entries []Entry
	// Compression is how the layer blob is stored in the tarball: "" (plain
	// tar, what docker save writes), "gzip" or "zstd".
	Compression string
	// DotSlash prefixes every name with "./" and starts the layer with a
	// "./" directory entry, as "tar -C root ." does.
	DotSlash bool
	// Raw, when not nil, is the exact uncompressed layer content, written
	// instead of Entries. It exists to build broken layers (for example a
	// truncated tar) whose digests are still correct.
	Raw []byte
}

// header returns the tar header for e, with names prefixed by prefix.
func (e Entry) header(prefix string) (*tar.Header, error) {
	name := e.Path
	h := &tar.Header{
		Uid:     e.UID,
		Gid:     e.GID,
		ModTime: e.ModTime,
	}
	if h.ModTime.IsZero() {
		h.ModTime = DefaultModTime
	}
	h.ModTime = h.ModTime.Truncate(time.Second)
	defMode := int64(0o644)
	switch e.Type {
	case File:
		h.Typeflag = tar.TypeReg
		if e.Data != nil {
			h.Size = int64(len(e.Data))
		} else if e.Size > 0 {
			h.Size = e.Size
		}
	case Dir:
		h.Typeflag = tar.TypeDir
		defMode = 0o755
		if !strings.HasSuffix(name, "/") {
			name += "/"
		}
	case Symlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.Link
		defMode = 0o777
	case Hardlink:
		h.Typeflag = tar.TypeLink
		h.Linkname = e.Link
		if !path.IsAbs(e.Link) {
			h.Linkname = prefix + e.Link
		}
	case Whiteout:
		dir, base := path.Split(strings.TrimSuffix(name, "/"))
		if base == "" {
			return nil, fmt.Errorf("imagegen: whiteout %q has no base name", e.Path)
		}
		h.Typeflag = tar.TypeReg
		name = dir + ".wh." + base
	case Opaque:
		h.Typeflag = tar.TypeReg
		name = strings.TrimSuffix(name, "/")
		if name != "" {
			name += "/"
		}
		name += ".wh..wh..opq"
	case Fifo:
		h.Typeflag = tar.TypeFifo
	case CharDev:
		h.Typeflag = tar.TypeChar
		h.Devmajor = e.DevMajor
		h.Devminor = e.DevMinor
		defMode = 0o666
	default:
		return nil, fmt.Errorf("imagegen: entry %q has unknown type %v", e.Path, e.Type)
	}
	switch {
	case e.Mode == ModeNone:
		h.Mode = 0
	case e.Mode == 0:
		h.Mode = defMode
	default:
		h.Mode = e.Mode
	}
	if !path.IsAbs(name) {
		name = prefix + name
	}
	h.Name = name
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return h, nil
}

// writeLayerTar writes the uncompressed tar of l to w.
func writeLayerTar(w io.Writer, l Layer) error {
	if l.Raw != nil {
		_, err := w.Write(l.Raw)
		return err
	}
	tw := tar.NewWriter(w)
	prefix := ""
	if l.DotSlash {
		prefix = "./"
		root := &tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: DefaultModTime}
		if err := tw.WriteHeader(root); err != nil {
			return err
		}
	}
	for _, e := range l.Entries {
		h, err := e.header(prefix)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("imagegen: entry %q: %w", e.Path, err)
		}
		if h.Typeflag != tar.TypeReg || h.Size == 0 {
			continue
		}
		if e.Data != nil {
			_, err = tw.Write(e.Data)
		} else {
			_, err = io.CopyN(tw, NewPRNG(e.Seed), e.Size)
		}
		if err != nil {
			return fmt.Errorf("imagegen: entry %q: %w", e.Path, err)
		}
	}
	return tw.Close()
}

// NewPRNG returns an endless reader of deterministic, incompressible
// pseudo-random bytes for seed (ChaCha8 keyed by the seed). It is the
// content generator of File entries that use Size.
func NewPRNG(seed int64) io.Reader {
	var key [32]byte
	copy(key[:], "occystrap imagegen PRNG key.....")
	binary.LittleEndian.PutUint64(key[:8], uint64(seed))
	return rand.NewChaCha8(key)
}

// AddParents returns entries with a Dir entry (default mode and owner)
// inserted before the first entry that needs each missing parent
// directory, so that directories precede their contents as in layers
// written by real tools. For Opaque entries Path itself counts as a parent.
// Existing Dir entries are kept where they are; a Dir entry that appears
// after its contents is not moved.
func AddParents(entries []Entry) []Entry {
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Type == Dir {
			seen[strings.TrimSuffix(e.Path, "/")] = false
		}
	}
	out := make([]Entry, 0, len(entries))
	var need func(dir string)
	need = func(dir string) {
		if dir == "" || dir == "." || dir == "/" || seen[dir] {
			return
		}
		need(parentDir(dir))
		if _, declared := seen[dir]; declared {
			return // declared later by an explicit entry: leave it alone
		}
		seen[dir] = true
		out = append(out, Entry{Path: dir, Type: Dir})
	}
	for _, e := range entries {
		p := strings.TrimSuffix(e.Path, "/")
		need(parentDir(p))
		if e.Type == Opaque {
			need(p)
		}
		if e.Type == Dir {
			seen[p] = true
		}
		out = append(out, e)
	}
	return out
}

func parentDir(p string) string {
	d := path.Dir(p)
	if d == "." || d == "/" {
		return ""
	}
	return d
}
