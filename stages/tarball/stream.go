package tarball

import (
	"context"
	"fmt"
	"io"

	"github.com/occystrap/occystrap/elements"
)

// StreamWriter writes the same USTAR archive as the tar:// output (fixed,
// neutral headers; see archive) to a stream that cannot seek, such as the
// body of a `docker load` request. Since no header can be patched after the
// fact, every member's size must be known before its data is written: the
// caller works it out (for a layer of unknown size, by spooling it first).
type StreamWriter struct {
	w   io.Writer
	off int64
	buf []byte
}

// NewStreamWriter returns a StreamWriter writing to w.
func NewStreamWriter(w io.Writer) *StreamWriter {
	return &StreamWriter{w: w, buf: make([]byte, copyBuf)}
}

// Written returns the bytes written so far.
func (s *StreamWriter) Written() int64 { return s.off }

// AddBytes writes a member whose bytes are in memory.
func (s *StreamWriter) AddBytes(name string, data []byte) error {
	hdr, err := header(name, int64(len(data)))
	if err != nil {
		return err
	}
	if err := s.write(hdr); err != nil {
		return err
	}
	if err := s.write(data); err != nil {
		return err
	}
	return s.pad(int64(len(data)))
}

// AddReader writes a member of exactly size bytes read from r. It then
// reads r to its end, so that a verifying reader (elements.NewVerifier,
// elements.OpenTar) gets to check its digest: a body that is shorter or
// longer than size, or fails its check, is an error. It checks ctx between
// reads. The member's bytes are in the stream before the check fails, so
// the caller must abandon the stream (close it with the error) on failure.
func (s *StreamWriter) AddReader(ctx context.Context, name string, size int64, r io.Reader) (int64, error) {
	if size < 0 {
		return 0, fmt.Errorf("write %s: size unknown: a streamed archive needs each member's size before its data", name)
	}
	hdr, err := header(name, size)
	if err != nil {
		return 0, err
	}
	if err := s.write(hdr); err != nil {
		return 0, err
	}
	n, err := elements.CopyContext(ctx, writerFunc(func(b []byte) (int, error) { return len(b), s.write(b) }), io.LimitReader(r, size), s.buf)
	if err != nil {
		return n, err
	}
	if n < size {
		return n, fmt.Errorf("write %s: the data ended after %d of its %d bytes", name, n, size)
	}
	extra, err := io.CopyBuffer(io.Discard, r, s.buf)
	if err != nil {
		return n, err
	}
	if extra > 0 {
		return n, fmt.Errorf("write %s: the data is longer than its stated %d bytes", name, size)
	}
	return n, s.pad(n)
}

// Close writes the end-of-archive marker and pads to a whole record, as
// the tar:// output does. It does not close the underlying writer.
func (s *StreamWriter) Close() error {
	end := s.off + 2*blockSize
	if r := end % recordSize; r != 0 {
		end += recordSize - r
	}
	return s.write(make([]byte, end-s.off))
}

func (s *StreamWriter) write(b []byte) error {
	n, err := s.w.Write(b)
	s.off += int64(n)
	return err
}

func (s *StreamWriter) pad(n int64) error {
	if r := n % blockSize; r != 0 {
		return s.write(make([]byte, blockSize-r))
	}
	return nil
}

// ManifestJSON renders a docker-save manifest.json for one image exactly as
// the tar:// output writes it: Python's json.dumps layout with the keys
// Layers, RepoTags, Config.
func ManifestJSON(layers, repoTags []string, config string) []byte {
	return manifestJSON(layers, repoTags, config)
}

// CheckLayerName refuses layer names that are not a single plain path
// component (they become directory names in docker-save archives).
func CheckLayerName(name string) error { return checkName(name) }
