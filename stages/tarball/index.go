// Package tarball reads and writes docker-save tarballs: the legacy layout
// of Docker 24 and earlier (<id>/layer.tar, manifest.json, repositories) and
// the OCI-style layout of Docker 25 and later (oci-layout, index.json,
// blobs/sha256/..., plus manifest.json). Its output is the v1.2 layout that
// `docker load` accepts, with entries in image order so that the same input
// always gives the same bytes.
package tarball

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/occystrap/occystrap/elements"
)

// maxMetadataSize bounds what is read into memory from a tarball's JSON
// files (manifest.json, configs): real ones are kilobytes, and a hostile
// tarball must not make us allocate gigabytes.
const maxMetadataSize = 64 << 20

// maxLinkDepth bounds symlink resolution inside a tarball's index (docker
// save links repeated layers to their first copy; a loop must not hang us).
const maxLinkDepth = 16

// entry is one member of the outer tarball, located by its data offset.
type entry struct {
	name     string
	offset   int64
	size     int64
	typeflag byte
	linkname string
}

// index maps cleaned member names to their place in the file.
type index struct {
	file    *sharedFile
	size    int64
	entries map[string]*entry
}

// sharedFile is a file that stays open until its last user closes it:
// layer bodies outlive the input's Run, which only sends them on.
type sharedFile struct {
	*os.File
	refs atomic.Int64
}

func (f *sharedFile) acquire() { f.refs.Add(1) }

func (f *sharedFile) release() {
	if f.refs.Add(-1) == 0 {
		f.File.Close()
	}
}

// section is a body reading one member's bytes; closing it releases the file.
type section struct {
	*io.SectionReader
	f    *sharedFile
	once sync.Once
}

func (s *section) Close() error {
	s.once.Do(s.f.release)
	return nil
}

// positionReader counts the offset reached in an io.ReadSeeker, so that the
// data offset of each tar member can be recorded while archive/tar skips
// member data with Seek.
type positionReader struct {
	r   io.ReadSeeker
	pos int64
}

func (p *positionReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.pos += int64(n)
	return n, err
}

func (p *positionReader) Seek(off int64, whence int) (int64, error) {
	n, err := p.r.Seek(off, whence)
	if err == nil {
		p.pos = n
	}
	return n, err
}

// openIndex opens the tarball at name and reads every member header,
// skipping the data. It checks that every member lies inside the file.
func openIndex(name string) (*index, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open tarball: %w", err)
	}
	sf := &sharedFile{File: f}
	sf.acquire()
	idx, err := readIndex(sf, name)
	if err != nil {
		sf.release()
		return nil, err
	}
	return idx, nil
}

func readIndex(f *sharedFile, name string) (*index, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat tarball: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a tarball (did you mean dir://?)", name)
	}
	head := make([]byte, blockSize)
	n, _ := f.ReadAt(head, 0)
	if c := outerCompression(head[:n]); c != "" {
		return nil, fmt.Errorf("%s is a %s-compressed file: decompress it first (for example with %s), then read the .tar", name, c, decompressHint[c])
	}
	if n < 512 || elements.Detect(head[:n]) != elements.None {
		return nil, fmt.Errorf("%s is not a tar archive", name)
	}

	idx := &index{file: f, size: fi.Size(), entries: map[string]*entry{}}
	pr := &positionReader{r: io.NewSectionReader(f, 0, fi.Size())}
	tr := tar.NewReader(pr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tarball %s: %w (the file is truncated or not a tar)", name, err)
		}
		e := &entry{name: clean(hdr.Name), offset: pr.pos, size: hdr.Size, typeflag: hdr.Typeflag, linkname: hdr.Linkname}
		if e.offset+e.size > idx.size {
			return nil, fmt.Errorf("read tarball %s: member %q runs past the end of the file (the file is truncated)", name, hdr.Name)
		}
		idx.entries[e.name] = e
	}
	return idx, nil
}

var decompressHint = map[string]string{"gzip": "gunzip -k", "bzip2": "bunzip2 -k", "xz": "unxz -k", "zstd": "unzstd"}

func outerCompression(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(head, []byte("BZh")):
		return "bzip2"
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	}
	return ""
}

// clean turns a member name into the form manifest.json uses.
func clean(name string) string {
	name = path.Clean("/" + name)
	return strings.TrimPrefix(name, "/")
}

// ErrNotFound is wrapped by errors about members a tarball lacks.
var ErrNotFound = errors.New("missing from the tarball")

// lookup finds a regular member by name, following symlinks and hardlinks
// inside the tarball.
func (idx *index) lookup(name string) (*entry, error) {
	want := clean(name)
	cur := want
	for range maxLinkDepth {
		e, ok := idx.entries[cur]
		if !ok {
			return nil, fmt.Errorf("%s: %w", want, ErrNotFound)
		}
		switch e.typeflag {
		case tar.TypeReg, tar.TypeRegA:
			return e, nil
		case tar.TypeSymlink:
			cur = clean(path.Join(path.Dir(cur), e.linkname))
		case tar.TypeLink:
			cur = clean(e.linkname)
		default:
			return nil, fmt.Errorf("%s is not a regular file in the tarball", want)
		}
	}
	return nil, fmt.Errorf("%s: too many levels of links in the tarball", want)
}

// open returns a body reading the member's bytes. The file stays open until
// the body is closed.
func (idx *index) open(e *entry) io.ReadCloser {
	idx.file.acquire()
	return &section{SectionReader: io.NewSectionReader(idx.file, e.offset, e.size), f: idx.file}
}

// readAll reads a small member (JSON metadata) whole.
func (idx *index) readAll(e *entry) ([]byte, error) {
	if e.size > maxMetadataSize {
		return nil, fmt.Errorf("%s is %d bytes, larger than the %d bytes allowed for metadata", e.name, e.size, maxMetadataSize)
	}
	b := make([]byte, e.size)
	if _, err := idx.file.ReadAt(b, e.offset); err != nil && !(err == io.EOF && e.size == 0) {
		return nil, fmt.Errorf("read %s: %w", e.name, err)
	}
	return b, nil
}

// close releases the index's own hold on the file.
func (idx *index) close() { idx.file.release() }
