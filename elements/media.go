package elements

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types that are not in the OCI image-spec package.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
)

// Compression is the compression of a layer's bytes.
type Compression int

const (
	// Unknown means the bytes are neither a tar, gzip nor zstd as far as
	// their first bytes show.
	Unknown Compression = iota
	// None is an uncompressed tar stream.
	None
	// Gzip is a gzip stream (possibly multi-member).
	Gzip
	// Zstd is a zstd stream.
	Zstd
)

// String returns the name used in info output: none, gzip, zstd or unknown.
func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "unknown"
}

// SniffLen is how many leading bytes Detect needs to recognise a tar.
const SniffLen = 262

// Detect recognises a compression from the first bytes of a stream: gzip
// and zstd by their magic numbers, an uncompressed tar by "ustar" at offset
// 257, and an empty stream or one of zero blocks (an empty tar) as None.
func Detect(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")):
		return None
	case len(bytes.Trim(head, "\x00")) == 0:
		return None
	}
	return Unknown
}

// CompressionOf maps a layer media type to its compression. Docker and OCI
// types map directly; otherwise a "+gzip"/".gzip" or "+zstd"/".zstd" suffix
// decides, and a bare ".tar" means None. Anything else is Unknown.
func CompressionOf(mediaType string) Compression {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, MediaTypeDockerLayer:
		return None
	case ocispec.MediaTypeImageLayerGzip, MediaTypeDockerLayerGzip:
		return Gzip
	case ocispec.MediaTypeImageLayerZstd, MediaTypeDockerLayerZstd:
		return Zstd
	}
	mt, _, _ := strings.Cut(mediaType, ";")
	switch {
	case strings.HasSuffix(mt, "+gzip"), strings.HasSuffix(mt, ".gzip"):
		return Gzip
	case strings.HasSuffix(mt, "+zstd"), strings.HasSuffix(mt, ".zstd"):
		return Zstd
	case strings.HasSuffix(mt, ".tar"):
		return None
	}
	return Unknown
}

// LayerMediaType returns the OCI layer media type for a compression.
func LayerMediaType(c Compression) string {
	switch c {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayer
}

// OpenTar returns the uncompressed tar stream of a layer element and takes
// ownership of its Body: closing the returned reader closes the Body.
//
// The compression comes from the media type and, when that does not say,
// from the first bytes. If the element has a DiffID that its own Digest does
// not already cover, the stream is verified against it: the last Read fails
// with a *DigestError when the bytes do not match.
func OpenTar(el Element) (io.ReadCloser, error) {
	if el.Body == nil {
		return nil, fmt.Errorf("open %s: no body", el)
	}
	br := bufio.NewReaderSize(el.Body, 64<<10)
	c := CompressionOf(el.MediaType)
	if c == Unknown {
		head, err := br.Peek(SniffLen)
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			el.Body.Close()
			return nil, fmt.Errorf("read %s: %w", el, err)
		}
		c = Detect(head)
		if c == Unknown {
			el.Body.Close()
			return nil, fmt.Errorf("%s is not a tar, gzip or zstd stream (first bytes % x)", el, head[:min(len(head), 8)])
		}
	}
	rc, err := Decompress(br, c, el.Body)
	if err != nil {
		if derr := digestFailure(br); derr != nil {
			err = derr
		}
		el.Body.Close()
		return nil, fmt.Errorf("decompress %s: %w", el, err)
	}
	if c != None {
		rc = &blameDigest{ReadCloser: rc, raw: br}
	}
	if el.DiffID != "" && !(c == None && el.Digest == el.DiffID) {
		rc = NewVerifier(rc, el.DiffID, el.String()+" diff ID")
	}
	return rc, nil
}

// blameDigest reports a body's digest mismatch rather than the
// decompression error it caused: when corrupt bytes make the decompressor
// fail (a bad gzip checksum, an invalid zstd block), the reason to show is
// that the bytes are not the ones the digest names.
type blameDigest struct {
	io.ReadCloser
	raw io.Reader
}

func (b *blameDigest) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrDigestMismatch) {
		if derr := digestFailure(b.raw); derr != nil {
			return n, fmt.Errorf("%w (and so decompression failed: %v)", derr, err)
		}
	}
	return n, err
}

// digestFailure reads the rest of a compressed body and returns its
// digest error, if reading it to the end gives one. Bodies are bounded by
// their stated size, so this ends.
func digestFailure(raw io.Reader) error {
	_, err := io.Copy(io.Discard, raw)
	if errors.Is(err, ErrDigestMismatch) {
		return err
	}
	return nil
}

// Decompress returns a reader of r's uncompressed bytes for compression c.
// Closing it releases the decompressor and closes closer (which may be nil).
func Decompress(r io.Reader, c Compression, closer io.Closer) (io.ReadCloser, error) {
	switch c {
	case None:
		return readCloser{r, closer, nil}, nil
	case Gzip:
		zr, err := pgzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		return readCloser{zr, closer, zr.Close}, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
		return readCloser{zr, closer, func() error { zr.Close(); return nil }}, nil
	}
	return nil, fmt.Errorf("unknown compression")
}

type readCloser struct {
	io.Reader
	closer io.Closer
	done   func() error
}

func (r readCloser) Close() error {
	var err error
	if r.done != nil {
		err = r.done()
	}
	if r.closer != nil {
		if cerr := r.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
