package elements_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/elements"
)

// countingReader records the size of every Read buffer it is given.
type countingReader struct {
	r     io.Reader
	sizes []int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	return c.r.Read(p)
}

// cancelAfter cancels its context after n reads.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelCauseFunc
	cause  error
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	c.n--
	if c.n == 0 {
		c.cancel(c.cause)
	}
	return c.r.Read(p)
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

// readFromWriter would take over the copy if CopyContext used io.Copy.
type readFromWriter struct {
	bytes.Buffer
	used bool
}

func (w *readFromWriter) ReadFrom(r io.Reader) (int64, error) {
	w.used = true
	return w.Buffer.ReadFrom(r)
}

func TestCopyContext(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 300000) // 3 MB
	writeErr := errors.New("disk full")
	readErr := errors.New("read failed")
	stopped := errors.New("stopped")
	tests := []struct {
		name    string
		buf     []byte
		src     func(ctx context.Context, cancel context.CancelCauseFunc) io.Reader
		dst     io.Writer
		wantN   int64 // -1: do not check
		wantErr error
	}{
		{"default buffer", nil, func(context.Context, context.CancelCauseFunc) io.Reader { return bytes.NewReader(data) }, nil, int64(len(data)), nil},
		{"small buffer", make([]byte, 4096), func(context.Context, context.CancelCauseFunc) io.Reader { return bytes.NewReader(data) }, nil, int64(len(data)), nil},
		{"empty source", nil, func(context.Context, context.CancelCauseFunc) io.Reader { return strings.NewReader("") }, nil, 0, nil},
		{"read error after data", make([]byte, 100), func(context.Context, context.CancelCauseFunc) io.Reader {
			return io.MultiReader(bytes.NewReader(data[:250]), &errOnRead{readErr})
		}, nil, 250, readErr},
		{"write error", nil, func(context.Context, context.CancelCauseFunc) io.Reader { return bytes.NewReader(data) }, failWriter{writeErr}, 0, writeErr},
		{"cancelled before the start", nil, func(_ context.Context, cancel context.CancelCauseFunc) io.Reader {
			cancel(stopped)
			return bytes.NewReader(data)
		}, nil, 0, stopped},
		{"cancelled mid-way", make([]byte, 1000), func(_ context.Context, cancel context.CancelCauseFunc) io.Reader {
			return &cancelAfter{r: bytes.NewReader(data), n: 3, cancel: cancel, cause: stopped}
		}, nil, 3000, stopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			var out bytes.Buffer
			dst := tt.dst
			if dst == nil {
				dst = &out
			}
			n, err := elements.CopyContext(ctx, dst, tt.src(ctx, cancel), tt.buf)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CopyContext error = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN {
				t.Errorf("copied %d bytes, want %d", n, tt.wantN)
			}
			if tt.dst == nil && !bytes.Equal(out.Bytes(), data[:n]) {
				t.Errorf("destination holds %d bytes that are not the source's first %d", out.Len(), n)
			}
		})
	}
}

type errOnRead struct{ err error }

func (e *errOnRead) Read([]byte) (int, error) { return 0, e.err }

// TestCopyContextReadSize: the buffer given sets the read size (1 MiB by
// default), and a ReaderFrom destination does not take the copy over.
func TestCopyContextReadSize(t *testing.T) {
	tests := []struct {
		name string
		buf  []byte
		want int
	}{
		{"default", nil, 1 << 20},
		{"given", make([]byte, 777), 777},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &countingReader{r: bytes.NewReader(make([]byte, 5000))}
			dst := &readFromWriter{}
			if _, err := elements.CopyContext(context.Background(), dst, src, tt.buf); err != nil {
				t.Fatal(err)
			}
			if dst.used {
				t.Error("CopyContext handed the copy to ReadFrom")
			}
			for _, s := range src.sizes {
				if s != tt.want {
					t.Fatalf("read sizes %v, want all %d", src.sizes, tt.want)
				}
			}
			if dst.Len() != 5000 {
				t.Errorf("copied %d bytes", dst.Len())
			}
		})
	}
}
