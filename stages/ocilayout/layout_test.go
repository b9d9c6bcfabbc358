package ocilayout

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// emptyTar is an empty tar archive (two zero blocks).
var emptyTar = make([]byte, 1024)

func writeImage(t *testing.T, dir, tag string, arch string) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(emptyTar)
	cfg, _ := json.Marshal(map[string]any{"architecture": arch, "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{d.String()}}})
	in := make(chan elements.Element, 4)
	in <- elements.Element{Kind: elements.KindImage, Name: "x:" + tag, Index: -1}
	in <- elements.Element{Kind: elements.KindConfig, Name: "c.json", Index: -1, Body: io.NopCloser(bytes.NewReader(cfg))}
	in <- elements.Element{Kind: elements.KindLayer, Name: "l", Index: 0, MediaType: ocispec.MediaTypeImageLayer,
		Digest: d, DiffID: d, Size: int64(len(emptyTar)), Body: io.NopCloser(bytes.NewReader(emptyTar))}
	close(in)
	if err := NewOutput(dir, tag, stages.Env{}).Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	ix, err := readIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ix.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == tag {
			return m
		}
	}
	t.Fatalf("tag %s not in index", tag)
	return ocispec.Descriptor{}
}

// TestInputFollowsIndex: an index.json entry that is an image index is
// followed to the manifest of the requested platform.
func TestInputFollowsIndex(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	amd := writeImage(t, dir, "amd", "amd64")
	arm := writeImage(t, dir, "arm", "arm64")
	amd.Annotations, arm.Annotations = nil, nil
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	nested, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{amd, arm}})
	nd := digest.FromBytes(nested)
	os.WriteFile(filepath.Join(dir, "blobs", "sha256", nd.Encoded()), nested, 0o644)
	top, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageIndex, Digest: nd, Size: int64(len(nested)),
			Annotations: map[string]string{ocispec.AnnotationRefName: "multi"}}}})
	os.WriteFile(filepath.Join(dir, "index.json"), top, 0o644)

	for _, arch := range []string{"amd64", "arm64"} {
		in := NewInput(dir, "", stages.Env{Platform: ocispec.Platform{OS: "linux", Architecture: arch}})
		img, err := in.resolve()
		if err != nil {
			t.Fatal(err)
		}
		if img.parsed.Architecture != arch {
			t.Errorf("picked %s, want %s", img.parsed.Architecture, arch)
		}
		if img.name != "layout:multi" {
			t.Errorf("name %q", img.name)
		}
	}
	in := NewInput(dir, "", stages.Env{Platform: ocispec.Platform{OS: "linux", Architecture: "s390x"}})
	if _, err := in.resolve(); err == nil || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("missing platform: %v", err)
	}
}

// TestOutputFailureLeavesNothing: a failed run removes a layout it created
// and, in an existing layout, the blobs it added, leaving index.json as it
// was.
func TestOutputFailureLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	run := func() error {
		in := make(chan elements.Element, 4)
		in <- elements.Element{Kind: elements.KindImage, Name: "x:bad", Index: -1}
		in <- elements.Element{Kind: elements.KindConfig, Name: "c.json", Index: -1, Body: io.NopCloser(strings.NewReader(`{"bad":1}`))}
		in <- elements.Element{Kind: elements.KindLayer, Name: "l", Index: 0, MediaType: ocispec.MediaTypeImageLayer,
			Digest: digest.FromString("other"), Body: io.NopCloser(bytes.NewReader(emptyTar))}
		close(in)
		return NewOutput(dir, "", stages.Env{}).Run(context.Background(), in)
	}
	if err := run(); err == nil {
		t.Fatal("a layer not matching its digest was accepted")
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Fatal("a failed run left a new layout behind")
	}
	writeImage(t, dir, "good", "amd64")
	before, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err := run(); err == nil {
		t.Fatal("a layer not matching its digest was accepted")
	}
	after, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	entries2, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if !bytes.Equal(before, after) || len(entries) != len(entries2) {
		t.Errorf("a failed run changed the layout: %d blobs before, %d after", len(entries), len(entries2))
	}
}
