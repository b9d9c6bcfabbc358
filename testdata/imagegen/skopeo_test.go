package imagegen

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const skopeoPath = "/usr/bin/skopeo"

// skopeo runs skopeo with args, skipping the test if it is not installed.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	if _, err := os.Stat(skopeoPath); err != nil {
		t.Skip("skopeo not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, skopeoPath, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// TestSkopeo checks that skopeo reads both formats as docker-archive and
// that copying the image out (which verifies every digest) works.
func TestSkopeo(t *testing.T) {
	if _, err := os.Stat(skopeoPath); err != nil {
		t.Skip("skopeo not installed")
	}
	tests := []struct {
		name string
		img  Image
		f    Format
	}{
		{"sample-legacy", Sample(), Legacy},
		{"sample-oci", Sample(), OCI},
		{"sample-legacy-gzip", Sample().WithCompression("gzip"), Legacy},
		{"sample-oci-zstd", Sample().WithCompression("zstd"), OCI},
		{"repeated-legacy", Repeated(), Legacy},
		{"repeated-oci", Repeated(), OCI},
		{"untagged", Image{Layers: Sample().Layers[:1]}, OCI},
		{"big", Big(4*mib, 2), Legacy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "image.tar")
			res, err := WriteFile(p, tt.img, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				Architecture, Os string
				Layers           []string
			}
			if err := json.Unmarshal(skopeo(t, "inspect", "docker-archive:"+p), &info); err != nil {
				t.Fatal(err)
			}
			if len(info.Layers) != len(tt.img.Layers) || info.Architecture != "amd64" || info.Os != "linux" {
				t.Errorf("skopeo inspect: %+v", info)
			}
			cfg := skopeo(t, "inspect", "--config", "--raw", "docker-archive:"+p)
			if !bytes.Equal(cfg, res.Config) {
				t.Errorf("skopeo config differs:\n%s\n%s", cfg, res.Config)
			}
			skopeo(t, "--insecure-policy", "copy", "-q", "docker-archive:"+p, "dir:"+filepath.Join(dir, "out"))
			for _, d := range res.DiffIDs {
				if _, err := os.Stat(filepath.Join(dir, "out", d.Encoded())); err != nil {
					t.Errorf("copied image lacks layer %s", d.Encoded())
				}
			}
		})
	}
}

// TestSkopeoHostileExtract checks that the extract-stage hostile cases are
// images that a non-extracting tool accepts, digests included.
func TestSkopeoHostileExtract(t *testing.T) {
	if _, err := os.Stat(skopeoPath); err != nil {
		t.Skip("skopeo not installed")
	}
	for _, c := range Hostile() {
		if c.Stage != StageExtract {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, c.Name+".tar")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Write(f); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			skopeo(t, "--insecure-policy", "copy", "-q", "docker-archive:"+p, "dir:"+filepath.Join(dir, "out"))
		})
	}
}
