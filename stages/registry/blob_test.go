package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobServer serves one blob, misbehaving as told. It stands in for a
// registry only to inject faults; the real registry is tested in cli.
type blobServer struct {
	data      []byte
	dropAfter int64 // break the first dropN responses after this many bytes
	dropN     atomic.Int32
	noRange   bool // ignore Range headers
	corrupt   bool // flip a byte
	extra     bool // send one byte more
	ranges    atomic.Int32
}

func (s *blobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	body := s.data
	if s.corrupt {
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0xff
	}
	if s.extra {
		body = append(bytes.Clone(body), 'x')
	}
	start := int64(0)
	if rg := r.Header.Get("Range"); rg != "" && !s.noRange {
		s.ranges.Add(1)
		fmt.Sscanf(rg, "bytes=%d-", &start)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
		w.Header().Set("Content-Length", fmt.Sprint(int64(len(body))-start))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	}
	rest := body[start:]
	if s.dropN.Load() > 0 && int64(len(rest)) > s.dropAfter {
		s.dropN.Add(-1)
		w.Write(rest[:s.dropAfter])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Write(rest)
}

func TestOpenBlob(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	d := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	tests := []struct {
		name       string
		srv        *blobServer
		drops      int32
		retries    int
		wantErr    string
		wantRanges int32
	}{
		{name: "clean", srv: &blobServer{}},
		{name: "resume with range", srv: &blobServer{dropAfter: 1 << 20}, drops: 2, retries: 3, wantRanges: 2},
		{name: "resume without range support", srv: &blobServer{dropAfter: 1 << 20, noRange: true}, drops: 1, retries: 3},
		{name: "too many breaks", srv: &blobServer{dropAfter: 1000}, drops: 5, retries: 2, wantErr: "connection broken"},
		{name: "corrupt", srv: &blobServer{corrupt: true}, wantErr: "does not match"},
		{name: "oversize", srv: &blobServer{extra: true}, wantErr: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.srv.data = data
			tt.srv.dropN.Store(tt.drops)
			ts := httptest.NewServer(tt.srv)
			defer ts.Close()
			c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "repo", []string{"pull"}, Options{Retries: tt.retries})
			r, err := c.OpenBlob(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.name == "corrupt" && !errors.Is(err, elements.ErrDigestMismatch) {
					t.Fatalf("corrupt blob error does not wrap ErrDigestMismatch: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, not the blob", len(got))
			}
			if n := tt.srv.ranges.Load(); n != tt.wantRanges {
				t.Fatalf("%d Range requests, want %d", n, tt.wantRanges)
			}
		})
	}
}
