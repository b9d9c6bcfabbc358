package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// slowReader hands out its bytes a few at a time, pausing, so that the
// consumer catches up with the producer.
type slowReader struct {
	data []byte
	err  error
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		return 0, io.EOF
	}
	time.Sleep(time.Millisecond)
	n := copy(p[:min(len(p), 7)], s.data)
	s.data = s.data[n:]
	return n, nil
}

func TestSpool(t *testing.T) {
	boom := errors.New("boom")
	data := bytes.Repeat([]byte("0123456789abcdef"), 100)
	tests := []struct {
		name    string
		src     io.Reader
		want    []byte
		wantErr error
	}{
		{"empty", bytes.NewReader(nil), nil, nil},
		{"fast", bytes.NewReader(data), data, nil},
		{"slow", &slowReader{data: data}, data, nil},
		{"error after data", &slowReader{data: data[:100], err: boom}, data[:100], boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := New(context.Background(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			r := sp.Reader()
			defer r.Close()
			go sp.Fill(tt.src)
			got, err := io.ReadAll(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("read %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func TestSpoolLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	sp, err := New(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("spool file visible in %s: %v", dir, entries)
	}
	sp.Reader().Close()
}

// blockingReader blocks until its context is done.
type blockingReader struct{ ctx context.Context }

func (b blockingReader) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func TestCloseStopsProducer(t *testing.T) {
	sp, err := New(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sp.Fill(blockingReader{sp.Context()})
		done <- err
	}()
	r := sp.Reader()
	r.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Fill returned nil after the reader closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Fill did not stop when the reader closed")
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestCancelWakesReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sp, err := New(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := sp.Reader()
	defer r.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader still waiting after cancel")
	}
}
