package regserver_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/occystrap/occystrap/stages/regserver"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"github.com/opencontainers/go-digest"
)

// TestSkopeo pushes an image into a TLS server with skopeo and copies it
// back out: a real client's push and pull of what was pushed.
func TestSkopeo(t *testing.T) {
	peers.Need(t, "skopeo")
	var mu sync.Mutex
	received := map[digest.Digest]int{}
	var manifests []*regserver.Manifest
	srv, _ := start(t, regserver.Options{TLS: true, Hooks: regserver.Hooks{
		BlobReceived: func(_ string, b *regserver.Blob) {
			mu.Lock()
			received[b.Digest]++
			mu.Unlock()
		},
		ManifestReceived: func(_ context.Context, m *regserver.Manifest) error {
			mu.Lock()
			manifests = append(manifests, m)
			mu.Unlock()
			return nil
		},
	}})

	dir := t.TempDir()
	archive := filepath.Join(dir, "image.tar")
	res, err := imagegen.WriteFile(archive, imagegen.Sample().WithCompression("gzip"), imagegen.OCI)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := "docker://" + srv.Addr() + "/test/sample:v1"
	if _, err := peers.SkopeoCopy(ctx, "--dest-tls-verify=false", "--dest-no-creds",
		"docker-archive:"+archive, ref); err != nil {
		t.Fatal(err)
	}
	m, ok := srv.Manifest("test/sample", "v1")
	if !ok {
		t.Fatal("no manifest under test/sample:v1")
	}
	var pushed struct {
		Config struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(m.Raw, &pushed); err != nil {
		t.Fatal(err)
	}
	var pushedLayers []digest.Digest
	for _, l := range pushed.Layers {
		pushedLayers = append(pushedLayers, l.Digest)
	}
	// skopeo recompresses a docker-archive's layers, so their digests are
	// its own; the config and what the layers hold are the image's.
	if len(pushedLayers) != len(res.DiffIDs) || pushed.Config.Digest != res.ConfigDigest {
		t.Fatalf("pushed layers %v config %s, want %d layers and config %s", pushedLayers, pushed.Config.Digest, len(res.DiffIDs), res.ConfigDigest)
	}
	for i, d := range pushedLayers {
		b, ok := srv.Blob(d)
		if !ok {
			t.Fatalf("layer %s not held", d)
		}
		rd := b.Open()
		if got := diffID(t, rd); got != res.DiffIDs[i] {
			t.Errorf("layer %d (%s) holds %s, want %s", i, d, got, res.DiffIDs[i])
		}
		rd.Close()
	}
	mu.Lock()
	for _, d := range append(slices.Clone(pushedLayers), res.ConfigDigest) {
		if received[d] != 1 {
			t.Errorf("BlobReceived(%s) called %d times", d, received[d])
		}
	}
	if len(manifests) != 1 || manifests[0].Digest != m.Digest {
		t.Errorf("ManifestReceived: %+v", manifests)
	}
	mu.Unlock()

	out := filepath.Join(dir, "out")
	if _, err := peers.SkopeoCopy(ctx, "--src-tls-verify=false", "--src-no-creds", ref, "dir:"+out); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(raw) != m.Digest {
		t.Errorf("pulled manifest %s, pushed %s", digest.FromBytes(raw), m.Digest)
	}
	var pulled struct {
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &pulled); err != nil {
		t.Fatal(err)
	}
	var pulledLayers []digest.Digest
	for _, l := range pulled.Layers {
		pulledLayers = append(pulledLayers, l.Digest)
		// dir: names blobs by their hex digest; skopeo has verified them,
		// check again.
		f, err := os.Open(filepath.Join(out, l.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.Digest.Algorithm().FromReader(f)
		f.Close()
		if err != nil || got != l.Digest {
			t.Errorf("pulled layer %s has digest %s (%v)", l.Digest, got, err)
		}
	}
	if !slices.Equal(pulledLayers, pushedLayers) {
		t.Errorf("pulled layers %v, pushed %v", pulledLayers, pushedLayers)
	}
	if cfg, err := os.ReadFile(filepath.Join(out, res.ConfigDigest.Encoded())); err != nil || digest.FromBytes(cfg) != res.ConfigDigest {
		t.Errorf("pulled config: %v", err)
	}

	// A copy within the server: skopeo mounts the blobs it knows are there.
	if _, err := peers.SkopeoCopy(ctx, "--src-tls-verify=false", "--src-no-creds", "--dest-tls-verify=false", "--dest-no-creds",
		ref, "docker://"+srv.Addr()+"/test/copy:v2"); err != nil {
		t.Fatal(err)
	}
	if m2, ok := srv.Manifest("test/copy", "v2"); !ok || m2.Digest != m.Digest {
		t.Errorf("copied manifest: %+v %v", m2, ok)
	}
	mu.Lock()
	for d, n := range received {
		if n != 1 {
			t.Errorf("after the copy, BlobReceived(%s) called %d times", d, n)
		}
	}
	mu.Unlock()
}

// diffID returns the digest of a gzip layer's uncompressed bytes.
func diffID(t *testing.T, r io.Reader) digest.Digest {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	d, err := digest.SHA256.FromReader(zr)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
