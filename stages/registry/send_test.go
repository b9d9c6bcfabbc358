package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// patchServer answers an upload's PATCH as told, after reading its body
// or not. It stands in for a registry only to inject faults.
type patchServer struct {
	readBody  bool
	status    int
	got       atomic.Int64 // body bytes read
	puts      atomic.Int32
	cancelled atomic.Int32
}

func (s *patchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPatch:
		if s.readBody {
			n, _ := io.Copy(io.Discard, r.Body)
			s.got.Store(n)
		}
		w.WriteHeader(s.status)
	case http.MethodPut:
		s.puts.Add(1)
		w.WriteHeader(http.StatusCreated)
	case http.MethodDelete:
		s.cancelled.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}
}

// TestSend: an upload slot is given back once the body is sent; what the
// registry answers afterwards still decides the push's outcome.
func TestSend(t *testing.T) {
	data := bytes.Repeat([]byte("layer bytes "), 100000)
	tests := []struct {
		name      string
		srv       *patchServer
		size      int64
		big       bool   // a body too large for socket buffers to absorb
		sendErr   string // error from send itself
		finishErr string // error from the finishing group
		puts      int32
	}{
		{name: "chunked, accepted", srv: &patchServer{readBody: true, status: 202}, size: -1, puts: 1},
		{name: "sized, accepted", srv: &patchServer{readBody: true, status: 202}, size: int64(len(data)), puts: 1},
		{name: "refused after the whole body", srv: &patchServer{readBody: true, status: 400}, size: -1, finishErr: "400"},
		{name: "answered before the body was read", srv: &patchServer{status: 202}, size: -1, big: true, sendErr: "before receiving the whole blob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.srv)
			defer ts.Close()
			c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "repo", []string{"push", "pull"}, Options{})
			o := &Output{client: c, progress: stages.NoProgress{}}
			o.finishing, o.finishingCtx = errgroup.WithContext(context.Background())
			u := &upload{c: c, location: ts.URL + "/v2/repo/blobs/uploads/1"}
			var body io.Reader = bytes.NewReader(data)
			if tt.big {
				body = io.LimitReader(zeros{}, 1<<30)
			}
			err := o.send(context.Background(), u, body, tt.size, stages.NoProgress{}.Track("x", -1),
				func() digest.Digest { return digest.FromBytes(data) })
			if tt.sendErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.sendErr) {
					t.Fatalf("send error %v, want %q", err, tt.sendErr)
				}
			} else if err != nil {
				t.Fatalf("send: %v", err)
			}
			ferr := o.finishing.Wait()
			if tt.finishErr != "" {
				if ferr == nil || !strings.Contains(ferr.Error(), tt.finishErr) {
					t.Fatalf("finishing error %v, want %q", ferr, tt.finishErr)
				}
			} else if ferr != nil {
				t.Fatalf("finishing: %v", ferr)
			}
			if got := tt.srv.puts.Load(); got != tt.puts {
				t.Errorf("%d completing PUTs, want %d", got, tt.puts)
			}
			if tt.puts == 1 {
				if n := tt.srv.got.Load(); n != int64(len(data)) {
					t.Errorf("registry read %d bytes, want %d", n, len(data))
				}
				if o.uploaded.Load() != 1 {
					t.Errorf("uploaded = %d, want 1", o.uploaded.Load())
				}
			} else if tt.srv.cancelled.Load() != 1 {
				t.Errorf("the failed upload was not cancelled")
			}
		})
	}
}

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// blockingReader gives some bytes and then blocks until closed.
type blockingReader struct {
	first bool
	stop  chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.first {
		b.first = true
		return copy(p, "some bytes"), nil
	}
	<-b.stop
	return 0, errors.New("stopped")
}

// TestSendSlotCancelled: cancelling the slot's context while the body is
// still being sent stops the upload and reports the cause.
func TestSendSlotCancelled(t *testing.T) {
	srv := &patchServer{readBody: true, status: 202}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "repo", []string{"push", "pull"}, Options{})
	o := &Output{client: c, progress: stages.NoProgress{}}
	o.finishing, o.finishingCtx = errgroup.WithContext(context.Background())
	u := &upload{c: c, location: ts.URL + "/v2/repo/blobs/uploads/1"}
	ctx, cancel := context.WithCancelCause(context.Background())
	stopped := errors.New("another layer failed")
	body := &blockingReader{stop: make(chan struct{})}
	defer close(body.stop)
	time.AfterFunc(100*time.Millisecond, func() { cancel(stopped) })
	err := o.send(ctx, u, body, -1, stages.NoProgress{}.Track("x", -1), func() digest.Digest { return "" })
	if !errors.Is(err, stopped) {
		t.Fatalf("send error %v, want the slot's cause", err)
	}
	if err := o.finishing.Wait(); err != nil {
		t.Fatalf("finishing: %v", err)
	}
	if srv.puts.Load() != 0 {
		t.Error("a cancelled upload was completed")
	}
}

// failingWriter fails its second write.
type failingWriter struct{ writes int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.writes++; f.writes == 2 {
		return 0, errors.New("socket closed")
	}
	return len(p), nil
}

// TestEndNotifierWriteTo: the large-write path net/http takes for chunked
// bodies carries every byte, signals the end, and reports write and read
// errors.
func TestEndNotifierWriteTo(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB: several writes
	readErr := errors.New("source broken")
	tests := []struct {
		name    string
		src     io.Reader
		dst     io.Writer
		wantN   int64
		wantErr string
		ended   bool
	}{
		{"all of it", bytes.NewReader(data), &bytes.Buffer{}, int64(len(data)), "", true},
		{"empty", bytes.NewReader(nil), &bytes.Buffer{}, 0, "", true},
		{"write fails", bytes.NewReader(data), &failingWriter{}, sendBuf, "socket closed", false},
		{"read fails", io.MultiReader(bytes.NewReader(data[:1000]), &errReader{readErr}), &bytes.Buffer{}, 1000, "source broken", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end := make(chan struct{})
			e := &endNotifier{r: tt.src, size: -1, end: end}
			n, err := e.WriteTo(tt.dst)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("WriteTo error %v, want %q", err, tt.wantErr)
			}
			if n != tt.wantN {
				t.Errorf("WriteTo wrote %d bytes, want %d", n, tt.wantN)
			}
			if b, ok := tt.dst.(*bytes.Buffer); ok && tt.wantErr == "" && !bytes.Equal(b.Bytes(), data[:n]) {
				t.Error("the bytes written are not the source's")
			}
			select {
			case <-end:
				if !tt.ended {
					t.Error("end signalled though the body was not read to its end")
				}
			default:
				if tt.ended {
					t.Error("end not signalled")
				}
			}
		})
	}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }
