package pipe_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/occystrap/occystrap/engine/pipe"
)

// TestPipeCarriesBytes: whatever the chunk size, depth and write sizes,
// the reader gets the bytes written, in order, then the close's error.
func TestPipeCarriesBytes(t *testing.T) {
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	boom := errors.New("boom")
	tests := []struct {
		name         string
		chunk, depth int
		writeSize    int
		readSize     int
		closeErr     error
	}{
		{"small chunks", 100, 1, 37, 1000, nil},
		{"writes larger than chunks", 4096, 3, 100000, 777, nil},
		{"reads larger than chunks", 4096, 2, 5000, 1 << 20, nil},
		{"one byte at a time", 7, 2, 1, 3, nil},
		{"exact chunks", 1 << 10, 4, 1 << 10, 1 << 10, nil},
		{"close with error", 1000, 2, 333, 500, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w := pipe.New(tt.chunk, tt.depth)
			go func() {
				for b := data; len(b) > 0; {
					k := min(tt.writeSize, len(b))
					if n, err := w.Write(b[:k]); n != k || err != nil {
						t.Errorf("Write = %d, %v", n, err)
						return
					}
					b = b[k:]
				}
				w.CloseWithError(tt.closeErr)
			}()
			var got bytes.Buffer
			buf := make([]byte, tt.readSize)
			var err error
			for {
				var n int
				n, err = r.Read(buf)
				got.Write(buf[:n])
				if err != nil {
					break
				}
			}
			want := io.EOF
			if tt.closeErr != nil {
				want = tt.closeErr
			}
			if err != want {
				t.Fatalf("read ended with %v, want %v", err, want)
			}
			if tt.closeErr == nil && !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("read %d bytes that differ from the %d written", got.Len(), len(data))
			}
			if tt.closeErr != nil && !bytes.Equal(got.Bytes(), data[:got.Len()]) {
				t.Fatalf("the %d bytes read before the error are not the first written", got.Len())
			}
		})
	}
}

// TestPipeReaderCloseStopsWriter: a writer blocked on a full pipe, and
// every later Write, fail once the reader is closed.
func TestPipeReaderCloseStopsWriter(t *testing.T) {
	r, w := pipe.New(10, 1)
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 1000)) // more than the pipe holds
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Write returned %v before the reader closed; it should block", err)
	case <-time.After(50 * time.Millisecond):
	}
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("blocked Write = %v, want io.ErrClosedPipe", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write still blocked after the reader closed")
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("later Write = %v, want io.ErrClosedPipe", err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Read after Close = %v, want io.ErrClosedPipe", err)
	}
}

// TestPipeBounded: the writer cannot run more than depth+1 chunks ahead.
func TestPipeBounded(t *testing.T) {
	r, w := pipe.New(100, 2)
	defer r.Close()
	written := make(chan int, 100)
	go func() {
		for {
			if _, err := w.Write(make([]byte, 100)); err != nil {
				return
			}
			written <- 1
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if n := len(written); n > 3 {
		t.Fatalf("the writer wrote %d chunks with nobody reading; at most 3 fit", n)
	}
}
