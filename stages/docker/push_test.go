package docker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages/regserver"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// fakeLayer is a layer as an engine would push it: a tar, gzipped.
type fakeLayer struct {
	gz     []byte
	diffID digest.Digest
}

func makeLayer(t *testing.T, name string) fakeLayer {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := strings.Repeat(name, 1000)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
	tw.Close()
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.Write(tb.Bytes())
	zw.Close()
	return fakeLayer{gz: gb.Bytes(), diffID: digest.FromBytes(tb.Bytes())}
}

// fakePusher pushes blobs and manifests to a regserver as an engine does:
// POST, one PATCH, PUT ?digest=.
type fakePusher struct {
	t    *testing.T
	base string
}

func (e fakePusher) do(method, url string, body []byte, hdr http.Header) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (e fakePusher) blob(data []byte) {
	e.t.Helper()
	resp := e.do("POST", e.base+"/v2/test/img/blobs/uploads/", nil, nil)
	loc := e.base + resp.Header.Get("Location")
	e.do("PATCH", loc, data, nil)
	if r := e.do("PUT", loc+"?digest="+digest.FromBytes(data).String(), nil, nil); r.StatusCode != 201 {
		e.t.Fatalf("PUT blob: %s", r.Status)
	}
}

func (e fakePusher) manifest(raw []byte, mediaType string) int {
	return e.do("PUT", e.base+"/v2/test/img/manifests/v1", raw, http.Header{"Content-Type": {mediaType}}).StatusCode
}

// TestReceipt drives the dockerpush receipt with a fake engine, for the
// cases a real engine does not produce on demand: every layer is sent on
// in image order whatever the upload order, and a missing layer, an
// undecompressable blob, a manifest list or a manifest that disagrees
// fails with a message that says so.
func TestReceipt(t *testing.T) {
	a, b, c := makeLayer(t, "a"), makeLayer(t, "b"), makeLayer(t, "c")
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}`)
	configD := digest.FromBytes(config)
	manifestOf := func(cfg digest.Digest, ls ...fakeLayer) []byte {
		m := ocispec.Manifest{MediaType: "application/vnd.docker.distribution.manifest.v2+json",
			Config: ocispec.Descriptor{MediaType: "application/vnd.docker.container.image.v1+json", Digest: cfg, Size: int64(len(config))}}
		m.SchemaVersion = 2
		for _, l := range ls {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", Digest: digest.FromBytes(l.gz), Size: int64(len(l.gz))})
		}
		raw, _ := json.Marshal(m)
		return raw
	}
	corrupt := append([]byte{0x1f, 0x8b}, bytes.Repeat([]byte{0xff}, 100)...)
	for _, tc := range []struct {
		name    string
		image   []fakeLayer // the image's layers (diff IDs in order)
		push    func(e fakePusher)
		wantErr string
	}{
		{"uploads in any order", []fakeLayer{a, b, c}, func(e fakePusher) {
			e.blob(c.gz)
			e.blob(a.gz)
			e.blob(b.gz)
			e.blob(config)
			e.manifest(manifestOf(configD, a, b, c), "application/vnd.docker.distribution.manifest.v2+json")
		}, ""},
		{"a layer used twice is uploaded once", []fakeLayer{a, b, a}, func(e fakePusher) {
			e.blob(b.gz)
			e.blob(a.gz)
			e.blob(config)
			e.manifest(manifestOf(configD, a, b, a), "application/vnd.docker.distribution.manifest.v2+json")
		}, ""},
		{"missing layer", []fakeLayer{a, b, c}, func(e fakePusher) {
			e.blob(a.gz)
			e.blob(b.gz)
			e.blob(config)
			e.manifest(manifestOf(configD, a, b), "application/vnd.docker.distribution.manifest.v2+json")
		}, "pushed no blob for layer 2 (diff ID " + c.diffID.String()},
		{"blob that does not decompress", []fakeLayer{a}, func(e fakePusher) {
			e.blob(corrupt)
			e.blob(a.gz)
		}, "does not decompress as gzip"},
		{"manifest list", []fakeLayer{a}, func(e fakePusher) {
			e.blob(a.gz)
			e.blob(config)
			if code := e.manifest([]byte(`{"schemaVersion":2,"manifests":[]}`), ocispec.MediaTypeImageIndex); code != 400 {
				t.Errorf("a manifest list got %d, want 400", code)
			}
		}, "sent no manifest"},
		{"manifest with another layer order", []fakeLayer{a, b}, func(e fakePusher) {
			e.blob(a.gz)
			e.blob(b.gz)
			e.blob(config)
			e.manifest(manifestOf(configD, b, a), "application/vnd.docker.distribution.manifest.v2+json")
		}, "says layer 0 is blob " + digest.FromBytes(b.gz).String()},
		{"manifest with another config", []fakeLayer{a}, func(e fakePusher) {
			e.blob(a.gz)
			e.blob(config)
			other := []byte(`{"os":"linux"}`)
			e.blob(other)
			e.manifest(manifestOf(digest.FromBytes(other), a), "application/vnd.docker.distribution.manifest.v2+json")
		}, "with config " + digest.FromBytes([]byte(`{"os":"linux"}`)).String() + ", but its inspect says " + configD.String()},
	} {
		for _, keepGzip := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/keepGzip=%v", tc.name, keepGzip), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				f := Facts{Reference: "test/img:v1", Config: configD}
				for _, l := range tc.image {
					f.DiffIDs = append(f.DiffIDs, l.diffID)
				}
				g, gctx := errgroup.WithContext(ctx)
				rc := newReceipt(gctx, f, 2)
				rc.keepGzip, rc.tempDir = keepGzip, t.TempDir()
				defer rc.release()
				srv, err := regserver.Start(regserver.Options{TempDir: t.TempDir(), Hooks: regserver.Hooks{BlobReceived: rc.received, ManifestReceived: rc.manifestPut}})
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				out := make(chan elements.Element)
				var got []elements.Element
				g.Go(func() error {
					tc.push(fakePusher{t: t, base: srv.URL()})
					rc.pushed(nil)
					return nil
				})
				g.Go(func() error { defer close(out); return rc.emit(gctx, out) })
				g.Go(func() error {
					for el := range out {
						raw, err := io.ReadAll(el.Body)
						el.Close()
						if err != nil {
							return err
						}
						if digest.FromBytes(raw) != el.Digest {
							return fmt.Errorf("%s: body digest %s, element says %s", el, digest.FromBytes(raw), el.Digest)
						}
						got = append(got, el)
					}
					return nil
				})
				err = g.Wait()
				rc.wg.Wait()
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tc.image)+1 {
					t.Fatalf("%d elements, want %d layers and the config", len(got), len(tc.image))
				}
				for i, l := range tc.image {
					el := got[i]
					wantDigest, wantType := digest.FromBytes(l.gz), ocispec.MediaTypeImageLayerGzip
					if !keepGzip { // the tar stream, decompressed once
						wantDigest, wantType = l.diffID, ocispec.MediaTypeImageLayer
					}
					if el.Kind != elements.KindLayer || el.Index != i || el.DiffID != l.diffID || el.Digest != wantDigest ||
						el.MediaType != wantType || el.Name != l.diffID.Encoded() {
						t.Errorf("element %d: %+v, want layer %d with diff ID %s", i, el, i, l.diffID)
					}
				}
				if last := got[len(got)-1]; last.Kind != elements.KindConfig || last.Digest != configD || last.Name != configD.Encoded()+".json" {
					t.Errorf("last element %+v, want the config", last)
				}
			})
		}
	}
}
