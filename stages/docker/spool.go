package docker

import (
	"context"
	"fmt"
	"io"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/spool"
	"github.com/opencontainers/go-digest"
)

// blob is a member of a stream copied whole into a spool.File: a layer
// that arrived before it could be sent on, or before it could be told apart
// from other members. It can be read more than once (an image may use one
// layer twice); the file is freed when the last holder lets go.
type blob struct {
	*spool.File
	path   string // member name in the stream it came from
	size   int64
	digest digest.Digest // of its bytes, computed while it was copied
	comp   elements.Compression
}

// spoolBlob copies r to its end into a new spool.File in dir. The
// returned blob holds one reference, the caller's.
func spoolBlob(ctx context.Context, dir, path string, r io.Reader, buf []byte) (*blob, error) {
	f, err := spool.NewFile(dir)
	if err != nil {
		return nil, err
	}
	d := elements.NewDigester(r)
	n, err := elements.CopyContext(ctx, f, d, buf)
	if err != nil {
		f.Release()
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	b := &blob{File: f, path: path, size: n, digest: d.Digest()}
	head := make([]byte, elements.SniffLen)
	m, _ := f.OSFile().ReadAt(head, 0)
	b.comp = elements.Detect(head[:m])
	return b, nil
}
