package registry

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// OpenBlob starts downloading a blob and returns its bytes as a stream that
// is checked against the descriptor while it is read: the Read that reaches
// the end fails with an *elements.DigestError if the bytes do not match the
// digest, and any Read fails once more bytes than the descriptor's size
// arrive. If the connection breaks in the middle, the download resumes
// where it stopped with a Range request (or, from a registry that ignores
// Range, by skipping what was already read), up to the client's retry
// count.
func (c *Client) OpenBlob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if err := checkDescriptor("blob", d); err != nil {
		return nil, err
	}
	b := &blobReader{c: c, ctx: ctx, d: d, h: sha256.New()}
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

type blobReader struct {
	c      *Client
	ctx    context.Context
	d      ocispec.Descriptor
	h      hash.Hash
	body   io.ReadCloser
	n      int64 // bytes delivered (and hashed)
	resume int   // resumptions so far
	err    error // sticky
}

// open issues the GET, from offset b.n.
func (b *blobReader) open() error {
	header := http.Header{}
	if b.n > 0 {
		header.Set("Range", fmt.Sprintf("bytes=%d-", b.n))
	}
	resp, err := b.c.do(b.ctx, http.MethodGet, b.c.repoPath("blobs/"+b.d.Digest.String()), header, nil, 0,
		http.StatusOK, http.StatusPartialContent)
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return fmt.Errorf("blob %s is missing from %s/%s: %w", b.d.Digest, b.c.host, b.c.repo, err)
		}
		return err
	}
	skip := int64(0)
	switch {
	case b.n == 0:
	case resp.StatusCode == http.StatusPartialContent && rangeStart(resp.Header.Get("Content-Range")) == b.n:
	case resp.StatusCode == http.StatusOK:
		skip = b.n // the server ignored Range: read past what we have
	default:
		resp.Body.Close()
		return fmt.Errorf("blob %s: resuming at byte %d got Content-Range %q", b.d.Digest, b.n, resp.Header.Get("Content-Range"))
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			resp.Body.Close()
			return fmt.Errorf("blob %s: skipping to byte %d: %w", b.d.Digest, skip, err)
		}
	}
	b.body = resp.Body
	return nil
}

// rangeStart parses the first byte of "bytes START-END/TOTAL", -1 if it
// cannot.
func rangeStart(cr string) int64 {
	s, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return -1
	}
	s, _, _ = strings.Cut(s, "-")
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return v
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	for {
		if b.d.Size >= 0 && int64(len(p)) > b.d.Size-b.n+1 {
			p = p[:b.d.Size-b.n+1] // read at most one byte past the size, to notice it
		}
		n, err := b.body.Read(p)
		if n > 0 {
			b.h.Write(p[:n])
			b.n += int64(n)
			if b.n > b.d.Size {
				b.fail(fmt.Errorf("blob %s: the registry sent more than the %d bytes the manifest gives", b.d.Digest, b.d.Size))
				return 0, b.err
			}
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF:
			if b.n < b.d.Size {
				err = io.ErrUnexpectedEOF // a clean close before the end is a break too
				break
			}
			if got := digest.NewDigest(digest.SHA256, b.h); got != b.d.Digest {
				b.fail(&elements.DigestError{What: "blob " + b.d.Digest.String(), Want: b.d.Digest, Got: got})
				if n > 0 {
					return n, nil
				}
				return 0, b.err
			}
			b.err = io.EOF
			return n, io.EOF
		}
		// A break in the middle: resume, unless we are cancelled.
		if b.ctx.Err() != nil {
			b.fail(context.Cause(b.ctx))
			return n, b.err
		}
		if b.resume >= b.c.retries {
			b.fail(fmt.Errorf("blob %s: connection broken at byte %d of %d after %d resumptions: %w", b.d.Digest, b.n, b.d.Size, b.resume, err))
			return n, b.err
		}
		b.resume++
		b.c.log.Warn().Err(err).Str("blob", b.d.Digest.String()).Int64("at", b.n).Int("attempt", b.resume).Msg("download broken; resuming")
		b.body.Close()
		select {
		case <-time.After(time.Duration(b.resume) * 250 * time.Millisecond):
		case <-b.ctx.Done():
			b.fail(context.Cause(b.ctx))
			return n, b.err
		}
		if oerr := b.open(); oerr != nil {
			b.body = io.NopCloser(strings.NewReader(""))
			b.fail(fmt.Errorf("blob %s: resuming at byte %d: %w", b.d.Digest, b.n, oerr))
			return n, b.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (b *blobReader) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *blobReader) Close() error {
	if b.err == nil {
		b.err = errors.New("blob reader closed")
	}
	return b.body.Close()
}
