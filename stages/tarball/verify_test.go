package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
)

// writeOutput writes img (in format f) through the tarball input and
// output, and returns the output and the tarball it wrote.
func writeOutput(t *testing.T, img imagegen.Image, f imagegen.Format) (*Output, string, imagegen.Result) {
	t.Helper()
	inPath, res := writeImage(t, img, f)
	outPath := filepath.Join(t.TempDir(), "out.tar")
	out := NewOutput(outPath, stages.Env{})
	if err := runPipeline(NewInput(inPath, stages.Env{}), out); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	return out, outPath, res
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		img    imagegen.Image
		format imagegen.Format
	}{
		{"sample legacy", imagegen.Sample(), imagegen.Legacy},
		{"sample oci", imagegen.Sample(), imagegen.OCI},
		{"sample oci gzip", imagegen.Sample().WithCompression("gzip"), imagegen.OCI},
		{"sample oci zstd", imagegen.Sample().WithCompression("zstd"), imagegen.OCI},
		{"repeated legacy", imagegen.Repeated(), imagegen.Legacy},
		{"repeated oci gzip", imagegen.Repeated().WithCompression("gzip"), imagegen.OCI},
		{"no layers", imagegen.Image{RepoTag: "empty:1"}, imagegen.OCI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, _ := writeOutput(t, tt.img, tt.format)
			n := len(tt.img.Layers)
			for _, full := range []bool{false, true} {
				got, err := out.Verify(context.Background(), full)
				if err != nil {
					t.Fatalf("Verify(full=%v): %v", full, err)
				}
				want := stages.Verified{Layers: n, Message: fmt.Sprintf("All %d layers verified in tarball", n)}
				if got != want {
					t.Errorf("Verify(full=%v) = %+v, want %+v", full, got, want)
				}
			}
		})
	}
}

// written is the tarball an output wrote, as members, with what its
// manifest.json names.
type written struct {
	members []tarMember
	config  string
	layers  []string
}

func readWritten(t *testing.T, path string) *written {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &written{members: readArchive(t, b)}
	var m []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(w.member(t, "manifest.json").data, &m); err != nil {
		t.Fatal(err)
	}
	w.config, w.layers = m[0].Config, m[0].Layers
	return w
}

func (w *written) member(t *testing.T, name string) *tarMember {
	t.Helper()
	for i := range w.members {
		if w.members[i].name == name {
			return &w.members[i]
		}
	}
	t.Fatalf("the tarball has no member %s", name)
	return nil
}

func (w *written) drop(name string) {
	w.members = slices.DeleteFunc(w.members, func(m tarMember) bool { return m.name == name })
}

func (w *written) setManifest(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	w.member(t, "manifest.json").data = b
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestVerifyCorrupt: each corruption of a written tarball fails the
// verification with stages.ErrVerify and a message naming the problem;
// those only the layer data shows fail only with full.
func TestVerifyCorrupt(t *testing.T) {
	manifest := func(config string, layers []string) []map[string]any {
		return []map[string]any{{"Config": config, "Layers": layers, "RepoTags": []string{"sample:v1"}}}
	}
	tests := []struct {
		name     string
		edit     func(t *testing.T, w *written)
		fullOnly bool // the quick verification passes
		// want are in the message: {layer0}, {layer1}, {config}, {diff0}
		// and {diff1} stand for the paths of layers 0 and 1, the config's
		// name and the diff IDs of layers 0 and 1; {n} for the number of
		// layers, {n-1} for one less.
		want []string
	}{
		{"layer missing", func(t *testing.T, w *written) { w.drop(w.layers[1]) }, false,
			[]string{"layer 1: {layer1}: missing from the tarball"}},
		{"config missing", func(t *testing.T, w *written) { w.drop(w.config) }, false,
			[]string{"the config manifest.json names: {config}: missing from the tarball"}},
		{"manifest missing", func(t *testing.T, w *written) { w.drop("manifest.json") }, false,
			[]string{"manifest.json: missing from the tarball"}},
		{"manifest not JSON", func(t *testing.T, w *written) {
			w.member(t, "manifest.json").data = []byte(`[{"Layers": [`)
		}, false, []string{"manifest.json: not a JSON list of images"}},
		{"manifest empty list", func(t *testing.T, w *written) {
			w.member(t, "manifest.json").data = []byte(`[]`)
		}, false, []string{"manifest.json: an empty list: it names no image"}},
		{"manifest without Layers", func(t *testing.T, w *written) {
			w.setManifest(t, []map[string]any{{"Config": w.config}})
		}, false, []string{"manifest.json: the image has no Layers"}},
		{"manifest without Config", func(t *testing.T, w *written) {
			w.setManifest(t, []map[string]any{{"Layers": w.layers}})
		}, false, []string{"manifest.json: the image has no Config"}},
		{"fewer layers than diff IDs", func(t *testing.T, w *written) {
			w.setManifest(t, manifest(w.config, w.layers[:len(w.layers)-1]))
		}, false, []string{"config {config} has {n} diff IDs in rootfs.diff_ids, but the manifest lists {n-1} layers"}},
		{"one layer listed for two", func(t *testing.T, w *written) {
			w.setManifest(t, manifest(w.config, append([]string{w.layers[0]}, w.layers[:len(w.layers)-1]...)))
		}, false, []string{"layer 1 ({layer0}) is also layer 0, but the config gives them different diff IDs ({diff1} and {diff0})"}},
		{"config changed", func(t *testing.T, w *written) {
			c := w.member(t, w.config)
			c.data = bytes.Replace(c.data, []byte(`"amd64"`), []byte(`"arm64"`), 1)
		}, false, []string{"config {config}", "has digest sha256:", "not the sha256:"}},
		{"layer compressed", func(t *testing.T, w *written) {
			l := w.member(t, w.layers[0])
			l.data = gzipped(t, l.data)
		}, false, []string{"layer 0 ({layer0}) is gzip-compressed"}},
		{"layer byte changed", func(t *testing.T, w *written) {
			l := w.member(t, w.layers[0])
			i := bytes.Index(l.data, []byte("echo tool"))
			if i < 0 {
				t.Fatal("layer 0 lacks the bytes to change")
			}
			l.data[i] ^= 0x20
		}, true, []string{"layer 0 ({layer0}): its content", "has digest sha256:", "but the config's diff ID for it is {diff0}"}},
		{"layer not a tar", func(t *testing.T, w *written) {
			l := w.member(t, w.layers[0])
			copy(l.data, bytes.Repeat([]byte("not a tar "), 60))
		}, true, []string{"layer 0 ({layer0}): not a valid tar in its first header"}},
		{"layer cut short", func(t *testing.T, w *written) {
			l := w.member(t, w.layers[0])
			i := bytes.Index(l.data, []byte("echo tool"))
			if i < 0 {
				t.Fatal("layer 0 lacks the bytes to cut at")
			}
			l.data = l.data[:i+4]
		}, true, []string{"layer 0 ({layer0}): the file is", "ends in or after member", "it is truncated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, path, res := writeOutput(t, imagegen.Sample(), imagegen.Legacy)
			w := readWritten(t, path)
			layer0, layer1 := w.layers[0], w.layers[1]
			tt.edit(t, w)
			if err := os.WriteFile(path, hostileTar(t, w.members...), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, full := range []bool{false, true} {
				got, err := out.Verify(context.Background(), full)
				if tt.fullOnly && !full {
					if err != nil {
						t.Errorf("Verify(full=false): %v, want success (only the layer data shows this)", err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("Verify(full=%v) = %+v, want an error", full, got)
				}
				t.Logf("full=%v: %v", full, err)
				if !errors.Is(err, stages.ErrVerify) {
					t.Errorf("Verify(full=%v): %v does not wrap ErrVerify", full, err)
				}
				for _, want := range tt.want {
					want = strings.NewReplacer("{layer0}", layer0, "{layer1}", layer1, "{config}", w.config,
						"{diff0}", res.DiffIDs[0].String(), "{diff1}", res.DiffIDs[1].String(),
						"{n}", strconv.Itoa(len(res.DiffIDs)), "{n-1}", strconv.Itoa(len(res.DiffIDs)-1)).Replace(want)
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Verify(full=%v): %v\nlacks %q", full, err, want)
					}
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("Verify(full=%v): %v does not name the tarball", full, err)
				}
			}
		})
	}
}

// TestVerifyTruncatedTarball: a tarball cut short fails even the quick
// verification, which reads only member headers.
func TestVerifyTruncatedTarball(t *testing.T) {
	out, path, _ := writeOutput(t, imagegen.Sample(), imagegen.Legacy)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	_, err = out.Verify(context.Background(), false)
	if !errors.Is(err, stages.ErrVerify) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("Verify: %v, want an ErrVerify saying the tarball is truncated", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = out.Verify(context.Background(), false)
	if !errors.Is(err, stages.ErrVerify) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Verify of a removed tarball: %v, want an ErrVerify saying it is not there", err)
	}
}

// TestVerifyNotRun: Verify fails before any successful Run, including
// after a failed one.
func TestVerifyNotRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.tar")
	out := NewOutput(path, stages.Env{})
	if _, err := out.Verify(context.Background(), false); !errors.Is(err, stages.ErrVerify) || !strings.Contains(err.Error(), "not run successfully") {
		t.Errorf("Verify before Run: %v, want an ErrVerify saying nothing was written", err)
	}
	if err := runPipeline(NewInput(filepath.Join(t.TempDir(), "missing.tar"), stages.Env{}), out); err == nil {
		t.Fatal("a pipeline from a missing tarball succeeded")
	}
	if _, err := out.Verify(context.Background(), true); !errors.Is(err, stages.ErrVerify) || !strings.Contains(err.Error(), "not run successfully") {
		t.Errorf("Verify after a failed Run: %v, want an ErrVerify saying nothing was written", err)
	}
}

// TestVerifyCancelled: a cancelled verification says so, and is not a
// verification failure.
func TestVerifyCancelled(t *testing.T) {
	out, path, res := writeOutput(t, imagegen.Sample(), imagegen.Legacy)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := out.Verify(ctx, true)
	if !errors.Is(err, context.Canceled) || errors.Is(err, stages.ErrVerify) {
		t.Errorf("Verify with a cancelled context: %v, want context.Canceled and not ErrVerify", err)
	}
	// Inside a layer's read too.
	w := readWritten(t, path)
	l := w.member(t, w.layers[0])
	for _, full := range []bool{false, true} {
		err := VerifyLayer(ctx, bytes.NewReader(l.data), int64(len(l.data)), res.DiffIDs[0], full)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("VerifyLayer(full=%v) with a cancelled context: %v, want context.Canceled", full, err)
		}
	}
}

// tarOf writes a tar of the given files (name, content), without the
// end-of-archive marker when open.
func tarOf(t *testing.T, open bool, files ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[i+1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	if open {
		tw.Flush()
		return b.Bytes()
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestVerifyLayer(t *testing.T) {
	big := strings.Repeat("x", 5000)
	good := tarOf(t, false, "a", "hello", "b", big, "c", "")
	padded := append(slices.Clone(good), make([]byte, 10240-len(good)%10240)...)
	open := tarOf(t, true, "a", "hello", "b", big)
	tests := []struct {
		name     string
		data     []byte
		quick    string // "" for success, else in the error
		full     string
		noMarker bool // the quick error wraps ErrNoEndMarker
	}{
		{"good", good, "", "", false},
		{"padded to a record", padded, "", "", false},
		{"empty tar", make([]byte, 1024), "", "", false},
		{"cut in data", good[:512+512+512+2000], "ends in or after member \"b\", whose 5000 bytes of data start at offset 1536: it is truncated", "it is truncated", false},
		{"cut in a header", good[:512+512+100], "ends in or after member \"a\"", "it is truncated", false},
		{"cut after a member", good[:512+512+512+5120], "ends after its last member \"b\" (data at offset 1536, 5000 bytes) with no end-of-archive marker", "", true},
		{"written without the marker", open, "with no end-of-archive marker", "", true},
		{"empty file", nil, "with no member and no end-of-archive marker", "", true},
		{"half a marker", good[:len(good)-512], "no end-of-archive marker", "", true},
		// archive/tar takes a file that ends in a member's padding for a
		// clean end.
		{"cut in padding", good[:512+512+512+5100], "ends after its last member \"b\" (data at offset 1536, 5000 bytes) with no end-of-archive marker", "", true},
		{"not a tar", bytes.Repeat([]byte("garbage!"), 256), "not a valid tar in its first header", "not a valid tar in its first header", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r, size := bytes.NewReader(tt.data), int64(len(tt.data))
			err := VerifyLayer(ctx, r, size, "sha256:0000000000000000000000000000000000000000000000000000000000000000", false)
			switch {
			case tt.quick == "" && err != nil:
				t.Errorf("quick: %v", err)
			case tt.quick != "" && (err == nil || !strings.Contains(err.Error(), tt.quick)):
				t.Errorf("quick: %v, want an error with %q", err, tt.quick)
			case errors.Is(err, ErrNoEndMarker) != tt.noMarker:
				t.Errorf("quick: %v: wraps ErrNoEndMarker %v, want %v", err, !tt.noMarker, tt.noMarker)
			}
			// Full: the digest settles it.
			if err := VerifyLayer(ctx, r, size, digest.FromBytes(tt.data), true); tt.full == "" && err != nil {
				t.Errorf("full: %v", err)
			} else if tt.full != "" && (err == nil || !strings.Contains(err.Error(), tt.full)) {
				t.Errorf("full: %v, want an error with %q", err, tt.full)
			}
			if len(tt.data) > 0 && tt.full == "" {
				other := slices.Clone(tt.data)
				other[len(other)-1] ^= 1
				err := VerifyLayer(ctx, bytes.NewReader(tt.data), size, digest.FromBytes(other), true)
				if err == nil || !strings.Contains(err.Error(), "but the config's diff ID for it is "+digest.FromBytes(other).String()) {
					t.Errorf("full, wrong diff ID: %v", err)
				}
			}
		})
	}
}

// TestVerifyManifest covers manifest.json shapes the corruption test does
// not.
func TestVerifyManifest(t *testing.T) {
	tests := []struct {
		raw    string
		config string
		layers []string
		err    string
	}{
		{`[{"Config": "c.json", "Layers": ["a/layer.tar"], "RepoTags": null}]`, "c.json", []string{"a/layer.tar"}, ""},
		{`[{"Config": "c.json", "Layers": []}]`, "c.json", []string{}, ""},
		{`[{"Config": "c.json", "Layers": null}]`, "c.json", nil, ""},
		{`{"Config": "c.json", "Layers": []}`, "", nil, "not a JSON list of images"},
		{`[{"Config": "c.json", "Layers": []}, {"Config": "d.json", "Layers": []}]`, "", nil, "lists 2 images; the output writes exactly one"},
		{`[{"Config": "", "Layers": []}]`, "", nil, `the image's Config is "", not the config's path`},
		{`[{"Config": 5, "Layers": []}]`, "", nil, `the image's Config is 5`},
		{`[{"Config": "c.json", "Layers": "a/layer.tar"}]`, "", nil, "the image's Layers are not a list of paths"},
		{`[{"Config": "c.json", "Layers": ["a/layer.tar", ""]}]`, "", nil, "layer 1's path is empty"},
	}
	for _, tt := range tests {
		config, layers, err := VerifyManifest([]byte(tt.raw))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.raw, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: %v, want an error with %q", tt.raw, err, tt.err)
		case config != tt.config || !slices.Equal(layers, tt.layers):
			t.Errorf("%s: %q %q, want %q %q", tt.raw, config, layers, tt.config, tt.layers)
		}
	}
}

// TestVerifyLateLayers: layers written under a header patched at their end
// (late layers, from a rewriting filter), one of them twice, and the
// config after them, verify; a config whose diff ID for one of them is
// wrong (which Run cannot see: late layers carry no diff ID) fails only
// the full verification.
func TestVerifyLateLayers(t *testing.T) {
	l0 := mkLayerTar(t, "zero", strings.Repeat("0", 3000))
	l1 := mkLayerTar(t, "one", "1")
	d0, d1 := digest.FromBytes(l0), digest.FromBytes(l1)
	wrong := digest.FromString("something else")
	tests := []struct {
		name     string
		diffIDs  []digest.Digest
		fullFail string
	}{
		{"right diff IDs", []digest.Digest{d0, d1, d0}, ""},
		{"wrong diff ID", []digest.Digest{d0, wrong, d0}, "layer 1 (" + d1.Encoded() + "/layer.tar): its content (" + strconv.Itoa(len(l1)) + " bytes) has digest " + d1.String() + ", but the config's diff ID for it is " + wrong.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &elementSet{t: t}
			late := func(i int, data []byte) elements.Element {
				el := s.layer(i, "old"+strconv.Itoa(i), bytes.NewReader(data), "")
				d := digest.FromBytes(data)
				el.Late = func() (elements.Final, error) {
					return elements.Final{Name: d.Encoded(), Digest: d, Size: int64(len(data))}, nil
				}
				return el
			}
			cfg, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
				"rootfs": map[string]any{"type": "layers", "diff_ids": tt.diffIDs}})
			if err != nil {
				t.Fatal(err)
			}
			els := []elements.Element{s.image("late:1"), late(0, l0), late(1, l1), late(2, l0), s.config(cfg, digest.FromBytes(cfg))}
			path := filepath.Join(t.TempDir(), "out.tar")
			out := NewOutput(path, stages.Env{})
			if err := runPipeline(&fakeInput{els: els}, out); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			s.checkClosed()
			if got, err := out.Verify(context.Background(), false); err != nil || got.Layers != 3 {
				t.Errorf("Verify(full=false) = %+v, %v; want 3 layers verified", got, err)
			}
			got, err := out.Verify(context.Background(), true)
			switch {
			case tt.fullFail == "" && (err != nil || got.Layers != 3):
				t.Errorf("Verify(full=true) = %+v, %v; want 3 layers verified", got, err)
			case tt.fullFail != "" && (!errors.Is(err, stages.ErrVerify) || !strings.Contains(err.Error(), tt.fullFail)):
				t.Errorf("Verify(full=true): %v\nwant an ErrVerify with %q", err, tt.fullFail)
			}
		})
	}
}
