package elements

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// ErrDigestMismatch is wrapped by every *DigestError, for errors.Is.
var ErrDigestMismatch = errors.New("digest mismatch")

// DigestError reports bytes whose digest is not the one they were named by.
type DigestError struct {
	What string        // what was read, for the message
	Want digest.Digest // the digest it should have
	Got  digest.Digest // the digest it has
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("%s: digest mismatch: the content does not match its digest (it is %s, expected %s)", e.What, e.Got, e.Want)
}

// Unwrap makes errors.Is(err, ErrDigestMismatch) true.
func (e *DigestError) Unwrap() error { return ErrDigestMismatch }

// Digester tees the bytes read through it into a sha256 hash and counts
// them. It is not safe for concurrent use.
type Digester struct {
	r io.Reader
	c io.Closer
	h hash.Hash
	n int64
}

// NewDigester returns a Digester reading from r. Closing it closes r if r is
// an io.Closer.
func NewDigester(r io.Reader) *Digester {
	c, _ := r.(io.Closer)
	return &Digester{r: r, c: c, h: sha256.New()}
}

// Read reads from the underlying reader and hashes what it returns.
func (d *Digester) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if n > 0 {
		d.h.Write(p[:n])
		d.n += int64(n)
	}
	return n, err
}

// Close closes the underlying reader if it is an io.Closer.
func (d *Digester) Close() error {
	if d.c == nil {
		return nil
	}
	return d.c.Close()
}

// Digest returns the sha256 digest of the bytes read so far.
func (d *Digester) Digest() digest.Digest {
	return digest.NewDigestFromBytes(digest.SHA256, d.h.Sum(nil))
}

// Size returns how many bytes have been read so far.
func (d *Digester) Size() int64 { return d.n }

// NewVerifier returns a reader of rc that fails its final Read with a
// *DigestError instead of io.EOF when the bytes read do not have digest
// want. what names the stream in the error. Closing it closes rc.
// Only sha256 digests are supported; any other algorithm fails at once.
func NewVerifier(rc io.ReadCloser, want digest.Digest, what string) io.ReadCloser {
	return &verifier{d: NewDigester(rc), rc: rc, want: want, what: what}
}

type verifier struct {
	d    *Digester
	rc   io.ReadCloser
	want digest.Digest
	what string
	err  error
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if err := v.want.Validate(); err != nil || v.want.Algorithm() != digest.SHA256 {
		v.err = fmt.Errorf("%s: unsupported digest %q: only sha256 digests are supported", v.what, v.want)
		return 0, v.err
	}
	n, err := v.d.Read(p)
	if err == io.EOF {
		if got := v.d.Digest(); got != v.want {
			v.err = &DigestError{What: v.what, Want: v.want, Got: got}
			return n, v.err
		}
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

// CopyContext copies src to dst through buf (1 MiB if nil), checking ctx
// between reads so that a cancelled pipeline stops within one buffer. Unlike
// io.CopyBuffer it never hands the copy to dst's ReadFrom, so buf's size is
// what sets the read size.
func CopyContext(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	if buf == nil {
		buf = make([]byte, 1<<20)
	}
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, context.Cause(ctx)
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, err := dst.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
