package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
)

// blob is a member of a stream copied whole into an unlinked temporary
// file: a layer that arrived before it could be sent on, or before it
// could be told apart from other members. Unlike engine/spool (a consumer
// reading while a producer fills), a blob is complete before anyone reads
// it, and can be read more than once (an image may use one layer twice).
// The file is freed when the last holder lets go.
type blob struct {
	f      *os.File
	path   string // member name in the stream it came from
	size   int64
	digest digest.Digest // of its bytes, computed while it was copied
	comp   elements.Compression
	refs   atomic.Int64
}

// spoolBlob copies r to its end into a new unlinked file in dir. The
// returned blob holds one reference, the caller's.
func spoolBlob(ctx context.Context, dir, path string, r io.Reader, buf []byte) (*blob, error) {
	f, err := os.CreateTemp(dir, ".occystrap-docker-*")
	if err != nil {
		return nil, fmt.Errorf("create a spool file: %w (set --temp-dir to a writable directory)", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink spool file: %w", err)
	}
	b := &blob{f: f, path: path}
	b.refs.Store(1)
	d := elements.NewDigester(r)
	n, err := elements.CopyContext(ctx, f, d, buf)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	b.size, b.digest = n, d.Digest()
	head := make([]byte, elements.SniffLen)
	m, _ := f.ReadAt(head, 0)
	b.comp = elements.Detect(head[:m])
	return b, nil
}

// hold takes one more reference.
func (b *blob) hold() { b.refs.Add(1) }

// release lets go of one reference; the last one closes the file.
func (b *blob) release() {
	if b.refs.Add(-1) == 0 {
		b.f.Close()
	}
}

// open returns a body reading the whole blob; it holds a reference until
// it is closed.
func (b *blob) open() io.ReadCloser {
	b.hold()
	return &blobReader{SectionReader: io.NewSectionReader(b.f, 0, b.size), b: b}
}

type blobReader struct {
	*io.SectionReader
	b    *blob
	once sync.Once
}

func (r *blobReader) Close() error {
	r.once.Do(r.b.release)
	return nil
}
