package ocilayout

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// store is where a layout's files are: a directory or a tar archive.
type store interface {
	index() (ocispec.Index, error)
	blob(d ocispec.Descriptor) ([]byte, error)
	// open returns a file holding the blob's bytes at [off, off+size); the
	// caller closes it.
	open(d digest.Digest) (f *os.File, off, size int64, err error)
	close()
}

// dirStore is a layout directory.
type dirStore string

func (s dirStore) index() (ocispec.Index, error)             { return readIndex(string(s)) }
func (s dirStore) blob(d ocispec.Descriptor) ([]byte, error) { return readBlob(string(s), d) }
func (s dirStore) close()                                    {}
func (s dirStore) open(d digest.Digest) (*os.File, int64, int64, error) {
	p, err := blobPath(string(s), d)
	if err != nil {
		return nil, 0, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, 0, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, 0, fmt.Errorf("blob %s is not a regular file", d)
	}
	return f, 0, fi.Size(), nil
}

// sectionCloser is a section of a file that closes the file.
type sectionCloser struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionCloser) Close() error { return s.f.Close() }

// archiveStore is an uncompressed tar archive of a layout, indexed on first
// use: each regular member's data range in the file.
type archiveStore struct {
	path    string
	members map[string][2]int64 // name -> offset, size
	err     error
}

// positionReader counts the offset in a file read by archive/tar, and lets
// it seek over member data.
type positionReader struct {
	f   *os.File
	pos int64
}

func (p *positionReader) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	p.pos += int64(n)
	return n, err
}

func (p *positionReader) Seek(off int64, whence int) (int64, error) {
	n, err := p.f.Seek(off, whence)
	if err == nil {
		p.pos = n
	}
	return n, err
}

func (s *archiveStore) load() error {
	if s.members != nil || s.err != nil {
		return s.err
	}
	s.err = s.scan()
	return s.err
}

func (s *archiveStore) scan() error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 4)
	if n, _ := f.ReadAt(head, 0); n == 4 && (head[0] == 0x1f && head[1] == 0x8b || string(head) == "\x28\xb5\x2f\xfd") {
		return fmt.Errorf("%s is compressed: an OCI archive must be an uncompressed tar", s.path)
	}
	pr := &positionReader{f: f}
	tr := tar.NewReader(pr)
	s.members = map[string][2]int64{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.members = nil
			return fmt.Errorf("read %s: %w", s.path, err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		s.members[name] = [2]int64{pr.pos, hdr.Size}
	}
	return nil
}

func (s *archiveStore) read(name string) ([]byte, error) {
	if err := s.load(); err != nil {
		return nil, err
	}
	m, ok := s.members[name]
	if !ok {
		return nil, fmt.Errorf("%s: no %s in the archive: %w", s.path, name, os.ErrNotExist)
	}
	if m[1] > maxMetadataSize {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", s.path, name, maxMetadataSize)
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, m[1])
	if _, err := f.ReadAt(data, m[0]); err != nil && m[1] > 0 {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	return data, nil
}

func (s *archiveStore) index() (ocispec.Index, error) {
	var ix ocispec.Index
	data, err := s.read(ocispec.ImageIndexFile)
	if err != nil {
		return ix, err
	}
	if err := json.Unmarshal(data, &ix); err != nil {
		return ix, fmt.Errorf("%s: index.json is not a valid OCI index: %w", s.path, err)
	}
	return ix, nil
}

func (s *archiveStore) blob(d ocispec.Descriptor) ([]byte, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("invalid digest %q: %w", d.Digest, err)
	}
	data, err := s.read("blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded())
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(data); got != d.Digest {
		return nil, fmt.Errorf("blob %s: digest mismatch: the content does not match its digest (it is %s)", d.Digest, got)
	}
	return data, nil
}

func (s *archiveStore) open(d digest.Digest) (*os.File, int64, int64, error) {
	if err := d.Validate(); err != nil {
		return nil, 0, 0, fmt.Errorf("invalid digest %q: %w", d, err)
	}
	if err := s.load(); err != nil {
		return nil, 0, 0, err
	}
	m, ok := s.members["blobs/"+d.Algorithm().String()+"/"+d.Encoded()]
	if !ok {
		return nil, 0, 0, fmt.Errorf("blob %s is not in %s: %w", d, s.path, os.ErrNotExist)
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, 0, 0, err
	}
	return f, m[0], m[1], nil
}

func (s *archiveStore) close() {}
