package tarstream

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

var (
	benchOnce  sync.Once
	benchBig   []byte // 256 MiB: 1 MiB files
	benchSmall []byte // 64 MiB: 4 KiB files with PAX headers
)

func benchArchives(b *testing.B) {
	benchOnce.Do(func() {
		build := func(n, size int, pax bool) []byte {
			var buf bytes.Buffer
			buf.Grow(n * (size + 2048))
			tw := tar.NewWriter(&buf)
			data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
			for i := range n {
				h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("dir%d/file%d", i%100, i),
					Mode: 0o644, Size: int64(size), ModTime: time.Unix(1700000000, 0)}
				if pax {
					h.ModTime = time.Unix(1700000000, 123)
					h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capability}
				}
				if err := tw.WriteHeader(h); err != nil {
					b.Fatal(err)
				}
				if _, err := tw.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			if err := tw.Close(); err != nil {
				b.Fatal(err)
			}
			return buf.Bytes()
		}
		benchBig = build(256, 1<<20, false)
		benchSmall = build(16384, 4096, true)
	})
}

// onlyReader and onlyWriter hide bytes.Reader's WriterTo and Discard's
// ReaderFrom, so that the baseline copies through a buffer as a real
// stream would.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

func benchPass(b *testing.B, in []byte, fn func(rw *Rewriter, e *Entry) error) {
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		rw := NewRewriter(onlyReader{bytes.NewReader(in)}, onlyWriter{io.Discard})
		for {
			e, err := rw.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if fn != nil {
				if err := fn(rw, e); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := rw.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCopy is the floor: a buffered copy of the same bytes.
func BenchmarkCopy(b *testing.B) {
	benchArchives(b)
	b.SetBytes(int64(len(benchBig)))
	buf := make([]byte, inBufSize)
	for b.Loop() {
		if _, err := io.CopyBuffer(onlyWriter{io.Discard}, onlyReader{bytes.NewReader(benchBig)}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeepAll passes a 256 MiB archive of 1 MiB files.
func BenchmarkKeepAll(b *testing.B) {
	benchArchives(b)
	benchPass(b, benchBig, nil)
}

// BenchmarkKeepAllSmallFiles passes 64 MiB of 4 KiB files with PAX headers.
func BenchmarkKeepAllSmallFiles(b *testing.B) {
	benchArchives(b)
	benchPass(b, benchSmall, nil)
}

// BenchmarkSetModTime normalises them (every PAX header rewritten).
func BenchmarkSetModTime(b *testing.B) {
	benchArchives(b)
	benchPass(b, benchSmall, func(rw *Rewriter, e *Entry) error {
		e.SetModTime(0)
		return rw.Keep()
	})
}

// BenchmarkSetModTimeBig normalises the 1 MiB files.
func BenchmarkSetModTimeBig(b *testing.B) {
	benchArchives(b)
	benchPass(b, benchBig, func(rw *Rewriter, e *Entry) error {
		e.SetModTime(0)
		return rw.Keep()
	})
}
