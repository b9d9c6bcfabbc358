package tarball

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/stagetest"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeImage writes img in format f into a fresh directory and returns the
// tarball's path.
func writeImage(t *testing.T, img imagegen.Image, f imagegen.Format) (string, imagegen.Result) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	res, err := imagegen.WriteFile(p, img, f)
	if err != nil {
		t.Fatal(err)
	}
	return p, res
}

func compressionOf(c string) elements.Compression {
	switch c {
	case "gzip":
		return elements.Gzip
	case "zstd":
		return elements.Zstd
	}
	return elements.None
}

type inputCase struct {
	name   string
	img    imagegen.Image
	format imagegen.Format
}

func inputCases() []inputCase {
	return []inputCase{
		{"sample legacy", imagegen.Sample(), imagegen.Legacy},
		{"sample oci", imagegen.Sample(), imagegen.OCI},
		{"sample oci gzip", imagegen.Sample().WithCompression("gzip"), imagegen.OCI},
		{"sample oci zstd", imagegen.Sample().WithCompression("zstd"), imagegen.OCI},
		{"sample legacy gzip", imagegen.Sample().WithCompression("gzip"), imagegen.Legacy},
		{"repeated legacy", imagegen.Repeated(), imagegen.Legacy},
		{"repeated oci", imagegen.Repeated(), imagegen.OCI},
		{"untagged", imagegen.Image{Layers: imagegen.Repeated().Layers[:1]}, imagegen.OCI},
		{"no layers", imagegen.Image{RepoTag: "empty:1"}, imagegen.Legacy},
		{"mixed compression", imagegen.Image{RepoTag: "mixed:1", Layers: []imagegen.Layer{
			{Entries: []imagegen.Entry{{Path: "a", Data: []byte("a")}}},
			{Entries: []imagegen.Entry{{Path: "b", Data: []byte("b")}}, Compression: "gzip"},
			{Entries: []imagegen.Entry{{Path: "c", Data: []byte("c")}}, Compression: "zstd"},
		}}, imagegen.OCI},
	}
}

func TestInputRun(t *testing.T) {
	for _, tc := range inputCases() {
		t.Run(tc.name, func(t *testing.T) {
			path, res := writeImage(t, tc.img, tc.format)
			els, err := stagetest.Collect(t, NewInput(path, stages.Env{}))
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(els) != 2+len(tc.img.Layers) {
				t.Fatalf("got %d elements, want %d", len(els), 2+len(tc.img.Layers))
			}

			img := els[0]
			if img.Kind != elements.KindImage || img.Name != tc.img.RepoTag || img.Index != -1 || img.Body != nil {
				t.Errorf("first element = %v (index %d, body %v), want image %q", img, img.Index, img.Body, tc.img.RepoTag)
			}

			cfg := els[1]
			if cfg.Kind != elements.KindConfig {
				t.Fatalf("second element is %v, want the config", cfg)
			}
			if want := res.ConfigDigest.Encoded() + ".json"; cfg.Name != want {
				t.Errorf("config name %q, want %q", cfg.Name, want)
			}
			if cfg.Digest != res.ConfigDigest || cfg.MediaType != ocispec.MediaTypeImageConfig || cfg.Size != int64(len(res.Config)) || cfg.Index != -1 {
				t.Errorf("config digest %s media type %s size %d index %d", cfg.Digest, cfg.MediaType, cfg.Size, cfg.Index)
			}
			data, err := ReadConfig(cfg)
			els[1].Body = nil // ReadConfig closed it
			if err != nil {
				t.Fatalf("read config: %v", err)
			}
			if digest.FromBytes(data) != res.ConfigDigest || !bytes.Equal(data, res.Config) {
				t.Errorf("config body digest %s, want %s", digest.FromBytes(data), res.ConfigDigest)
			}

			for i := range tc.img.Layers {
				el := els[2+i]
				comp := compressionOf(tc.img.Layers[i].Compression)
				if el.Kind != elements.KindLayer || el.Index != i {
					t.Errorf("element %d is %v, want layer %d", 2+i, el, i)
					continue
				}
				if el.DiffID != res.DiffIDs[i] {
					t.Errorf("layer %d diff ID %s, want %s", i, el.DiffID, res.DiffIDs[i])
				}
				if want := elements.LayerMediaType(comp); el.MediaType != want {
					t.Errorf("layer %d media type %s, want %s", i, el.MediaType, want)
				}
				if el.Size != res.LayerSizes[i] {
					t.Errorf("layer %d size %d, want %d", i, el.Size, res.LayerSizes[i])
				}
				var wantName string
				if tc.format == imagegen.Legacy {
					wantName = res.V1IDs[i]
				} else {
					wantName = res.LayerDigests[i].Encoded()
				}
				if el.Name != wantName {
					t.Errorf("layer %d name %q, want %q", i, el.Name, wantName)
				}
				switch {
				case comp == elements.None:
					if el.Digest != el.DiffID {
						t.Errorf("uncompressed layer %d digest %s, want its diff ID", i, el.Digest)
					}
				case tc.format == imagegen.OCI:
					if el.Digest != res.LayerDigests[i] {
						t.Errorf("layer %d digest %s, want %s", i, el.Digest, res.LayerDigests[i])
					}
				default:
					if el.Digest != "" {
						t.Errorf("legacy compressed layer %d digest %s, want none", i, el.Digest)
					}
				}
				if el.Source == nil {
					t.Fatalf("layer %d has no Source", i)
				}
				if el.Source.Length != res.LayerSizes[i] {
					t.Errorf("layer %d Source length %d, want %d", i, el.Source.Length, res.LayerSizes[i])
				}
				rawRange := RawRange(el)
				if (rawRange != nil) != (comp == elements.None) || (rawRange != nil && rawRange != el.Source) {
					t.Errorf("layer %d (%v): RawRange = %v", i, comp, rawRange)
				}
				src := make([]byte, el.Source.Length)
				if _, err := el.Source.File.ReadAt(src, el.Source.Offset); err != nil {
					t.Fatalf("layer %d: read Source: %v", i, err)
				}
				body, err := io.ReadAll(el.Body)
				if err != nil {
					t.Fatalf("layer %d: read body: %v", i, err)
				}
				if !bytes.Equal(body, src) {
					t.Errorf("layer %d: body differs from its Source range", i)
				}
				if got := digest.FromBytes(body); got != res.LayerDigests[i] {
					t.Errorf("layer %d body digest %s, want %s", i, got, res.LayerDigests[i])
				}
			}
		})
	}
}

// TestInputLayersOpen: every layer's OpenTar stream reads to its end, which
// verifies the diff ID, and the bodies stay readable after Run returned.
func TestInputLayersOpen(t *testing.T) {
	for _, tc := range inputCases() {
		t.Run(tc.name, func(t *testing.T) {
			path, res := writeImage(t, tc.img, tc.format)
			els, err := stagetest.Collect(t, NewInput(path, stages.Env{}))
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			for i := range tc.img.Layers {
				el := els[2+i]
				els[2+i].Body = nil // OpenTar owns it now
				rc, err := elements.OpenTar(el)
				if err != nil {
					t.Fatalf("layer %d: OpenTar: %v", i, err)
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatalf("layer %d: read tar: %v", i, err)
				}
				if got := digest.FromBytes(b); got != res.DiffIDs[i] {
					t.Errorf("layer %d tar digest %s, want %s", i, got, res.DiffIDs[i])
				}
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range inputCases() {
		t.Run(tc.name, func(t *testing.T) {
			path, res := writeImage(t, tc.img, tc.format)
			d, err := NewInput(path, stages.Env{}).Describe()
			if err != nil {
				t.Fatal(err)
			}
			if d.Reference != tc.img.RepoTag {
				t.Errorf("Reference %q, want %q", d.Reference, tc.img.RepoTag)
			}
			if !bytes.Equal(d.Config, res.Config) || d.ConfigName != res.ConfigPath {
				t.Errorf("config %s (%d bytes), want %s (%d bytes)", d.ConfigName, len(d.Config), res.ConfigPath, len(res.Config))
			}
			if !slices.Equal(d.Layers, res.LayerPaths) {
				t.Errorf("Layers %q, want %q", d.Layers, res.LayerPaths)
			}
			if !slices.Equal(d.Parsed.RootFS.DiffIDs, res.DiffIDs) {
				t.Errorf("parsed diff IDs %v, want %v", d.Parsed.RootFS.DiffIDs, res.DiffIDs)
			}
			if d.Parsed.Architecture != "amd64" || d.Parsed.OS != "linux" {
				t.Errorf("parsed platform %s/%s", d.Parsed.OS, d.Parsed.Architecture)
			}
		})
	}
}

// corruptLayers flips one byte in the middle of every layer blob of the
// tarball at path.
func corruptLayers(t *testing.T, path string, layerPaths []string) {
	t.Helper()
	idx, err := openIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for _, p := range layerPaths {
		e, err := idx.lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, e.offset+e.size/2)
	}
	idx.close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range offs {
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDescribeReadsNoLayer: Describe succeeds on a tarball whose every
// layer is corrupt, because it reads no layer data, while reading the
// layers from Run fails their digest check.
func TestDescribeReadsNoLayer(t *testing.T) {
	tests := []inputCase{
		{"legacy", imagegen.Sample(), imagegen.Legacy},
		{"oci gzip", imagegen.Sample().WithCompression("gzip"), imagegen.OCI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, res := writeImage(t, tc.img, tc.format)
			corruptLayers(t, path, res.LayerPaths)
			d, err := NewInput(path, stages.Env{}).Describe()
			if err != nil {
				t.Fatalf("Describe of a tarball with corrupt layers: %v", err)
			}
			if d.Reference != tc.img.RepoTag || !bytes.Equal(d.Config, res.Config) {
				t.Errorf("Describe = %q and %d config bytes", d.Reference, len(d.Config))
			}
			els, err := stagetest.Collect(t, NewInput(path, stages.Env{}))
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			for i, el := range els[2:] {
				_, err := io.ReadAll(el.Body)
				if !errors.Is(err, elements.ErrDigestMismatch) {
					t.Errorf("layer %d: read error %v, want a digest mismatch", i, err)
				}
			}
		})
	}
}

// hostileTar writes a hand-made outer tarball of the given members.
func hostileTar(t *testing.T, members ...tarMember) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(m.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compress(t *testing.T, kind string, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	switch kind {
	case "gzip":
		zw := gzip.NewWriter(&out)
		zw.Write(b)
		zw.Close()
	case "zstd":
		zw, err := zstd.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(b)
		zw.Close()
	default:
		t.Fatalf("compression %q", kind)
	}
	return out.Bytes()
}

// runAll runs the input and reads every layer through OpenTar, returning
// the first error.
func runAll(t *testing.T, path string) error {
	t.Helper()
	els, err := stagetest.Collect(t, NewInput(path, stages.Env{}))
	if err != nil {
		return err
	}
	for i := range els {
		el := els[i]
		els[i].Body = nil
		switch el.Kind {
		case elements.KindConfig:
			if _, err := ReadConfig(el); err != nil {
				return err
			}
		case elements.KindLayer:
			rc, err := elements.OpenTar(el)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		default:
			el.Close()
		}
	}
	return nil
}

// sanitize removes the tarball's path from an error message, so that
// words in the test's temporary directory name cannot satisfy a check.
func sanitize(err error, path string) string {
	if err == nil {
		return ""
	}
	return strings.ToLower(strings.ReplaceAll(err.Error(), path, "<path>"))
}

func TestInputHostile(t *testing.T) {
	sample, _, err := bufferedImage(imagegen.Sample(), imagegen.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	layer := hostileTar(t, tarMember{name: "f", data: []byte("hi")})
	cfgFor := func(diffIDs ...string) []byte {
		b, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
		return b
	}
	manifest := func(cfg string, layers ...string) []byte {
		b, _ := json.Marshal([]manifestEntry{{Config: cfg, RepoTags: []string{"h:1"}, Layers: layers}})
		return b
	}
	tests := []struct {
		name string
		data []byte
		dir  bool
		want string
	}{
		{name: "member runs past the end", data: func() []byte {
			h, _ := header("manifest.json", 1000)
			return append(h, make([]byte, 100)...)
		}(), want: "truncated"},
		{name: "sample cut in a layer", data: sample[:len(sample)/2], want: "truncated"},
		{name: "gzip-compressed tarball", data: compress(t, "gzip", sample), want: "gunzip"},
		{name: "zstd-compressed tarball", data: compress(t, "zstd", sample), want: "unzstd"},
		{name: "bzip2 magic", data: append([]byte("BZh91AY&SY"), make([]byte, 1000)...), want: "bunzip2"},
		{name: "xz magic", data: append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, make([]byte, 1000)...), want: "unxz"},
		{name: "empty file", data: []byte{}, want: "not a tar"},
		{name: "garbage", data: bytes.Repeat([]byte("garbage!"), 200), want: "not a tar"},
		{name: "directory", dir: true, want: "is a directory"},
		{name: "no manifest", data: hostileTar(t, tarMember{name: "x", data: []byte("y")}), want: "no manifest.json"},
		{name: "oci layout without manifest", data: hostileTar(t, tarMember{name: "index.json", data: []byte("{}")}), want: "oci image layout"},
		{name: "manifest lists no image", data: hostileTar(t, tarMember{name: "manifest.json", data: []byte("[]")}), want: "lists no image"},
		{name: "manifest names no config", data: hostileTar(t, tarMember{name: "manifest.json", data: manifest("")}), want: "names no config"},
		{name: "config missing", data: hostileTar(t, tarMember{name: "manifest.json", data: manifest("c.json")}), want: "c.json"},
		{name: "config not json", data: hostileTar(t,
			tarMember{name: "manifest.json", data: manifest("c.json")},
			tarMember{name: "c.json", data: []byte("{nope")}), want: "not valid json"},
		{name: "layer count differs from diff IDs", data: hostileTar(t,
			tarMember{name: "manifest.json", data: manifest("c.json", "l/layer.tar")},
			tarMember{name: "c.json", data: cfgFor()},
			tarMember{name: "l/layer.tar", data: layer}), want: "1 layers but the config has 0"},
		{name: "layer not a tar", data: hostileTar(t,
			tarMember{name: "manifest.json", data: manifest("c.json", "l/layer.tar")},
			tarMember{name: "c.json", data: cfgFor(digest.FromBytes(layer).String())},
			tarMember{name: "l/layer.tar", data: bytes.Repeat([]byte("junk"), 200)}), want: "not a tar, gzip or zstd"},
		{name: "layer digest in name differs from diff ID", data: hostileTar(t,
			tarMember{name: "manifest.json", data: manifest("c.json", "blobs/sha256/"+digest.FromBytes(layer).Encoded())},
			tarMember{name: "c.json", data: cfgFor(digest.FromString("other").String())},
			tarMember{name: "blobs/sha256/" + digest.FromBytes(layer).Encoded(), data: layer}), want: "does not match"},
		{name: "layer content differs from diff ID", data: hostileTar(t,
			tarMember{name: "manifest.json", data: manifest("c.json", "l/layer.tar")},
			tarMember{name: "c.json", data: cfgFor(digest.FromString("other").String())},
			tarMember{name: "l/layer.tar", data: layer}), want: "does not match"},
		{name: "symlink loop", data: func() []byte {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			m := manifest("c.json", "a/layer.tar")
			tw.WriteHeader(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(m))})
			tw.Write(m)
			c := cfgFor(digest.FromBytes(layer).String())
			tw.WriteHeader(&tar.Header{Name: "c.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(c))})
			tw.Write(c)
			tw.WriteHeader(&tar.Header{Name: "a/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../b/layer.tar"})
			tw.WriteHeader(&tar.Header{Name: "b/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../a/layer.tar"})
			tw.Close()
			return b.Bytes()
		}(), want: "too many levels of links"},
		{name: "empty diff ID", data: hostileTar(t,
			tarMember{name: "manifest.json", data: manifest("c.json", "l/layer.tar")},
			tarMember{name: "c.json", data: cfgFor("")},
			tarMember{name: "l/layer.tar", data: layer}), want: "diff"},
		{name: "diff ID without algorithm", data: hostileTar(t,
			tarMember{name: "manifest.json", data: manifest("c.json", "l/layer.tar")},
			tarMember{name: "c.json", data: cfgFor("nonsense")},
			tarMember{name: "l/layer.tar", data: layer}), want: "diff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.tar")
			if tt.dir {
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			err := func() (err error) {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panic: %v", p)
					}
				}()
				return runAll(t, path)
			}()
			if err == nil {
				t.Fatalf("reading the tarball succeeded, want an error with %q", tt.want)
			}
			if msg := sanitize(err, path); !strings.Contains(msg, tt.want) {
				t.Errorf("error %q lacks %q", msg, tt.want)
			}
			if strings.HasPrefix(err.Error(), "panic") {
				t.Errorf("reading panicked: %v", err)
			}
		})
	}
}

// TestInputImagegenHostile runs the input-stage hostile cases of imagegen:
// reading each fails with its documented word, found in the message once
// the tarball's path is taken out of it.
func TestInputImagegenHostile(t *testing.T) {
	for _, hc := range imagegen.Hostile() {
		if hc.Stage != imagegen.StageInput {
			continue
		}
		t.Run(hc.Name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.tar")
			var b bytes.Buffer
			if err := hc.Write(&b); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			err := runAll(t, path)
			if err == nil {
				t.Fatalf("reading %s succeeded (%s)", hc.Name, hc.Description)
			}
			if msg := sanitize(err, path); !strings.Contains(msg, hc.Want) {
				t.Errorf("error %q lacks %q", msg, hc.Want)
			}
		})
	}
}

// bufferedImage writes img to memory.
func bufferedImage(img imagegen.Image, f imagegen.Format) ([]byte, imagegen.Result, error) {
	var b bytes.Buffer
	res, err := imagegen.Write(&b, img, f)
	return b.Bytes(), res, err
}

func TestRawRange(t *testing.T) {
	src := &elements.FileRange{Offset: 1, Length: 2}
	tests := []struct {
		name string
		el   elements.Element
		want *elements.FileRange
	}{
		{"uncompressed oci", elements.Element{Kind: elements.KindLayer, MediaType: ocispec.MediaTypeImageLayer, Source: src}, src},
		{"uncompressed docker", elements.Element{Kind: elements.KindLayer, MediaType: elements.MediaTypeDockerLayer, Source: src}, src},
		{"gzip", elements.Element{Kind: elements.KindLayer, MediaType: ocispec.MediaTypeImageLayerGzip, Source: src}, nil},
		{"docker gzip", elements.Element{Kind: elements.KindLayer, MediaType: elements.MediaTypeDockerLayerGzip, Source: src}, nil},
		{"zstd", elements.Element{Kind: elements.KindLayer, MediaType: ocispec.MediaTypeImageLayerZstd, Source: src}, nil},
		{"unknown media type", elements.Element{Kind: elements.KindLayer, MediaType: "application/octet-stream", Source: src}, nil},
		{"nil source", elements.Element{Kind: elements.KindLayer, MediaType: ocispec.MediaTypeImageLayer}, nil},
		{"config", elements.Element{Kind: elements.KindConfig, MediaType: ocispec.MediaTypeImageLayer, Source: src}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RawRange(tt.el); got != tt.want {
				t.Errorf("RawRange = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadConfig(t *testing.T) {
	data := []byte(`{"os":"linux"}`)
	tests := []struct {
		name string
		el   elements.Element
		want string // error substring, "" for success
	}{
		{"ok", elements.Element{Kind: elements.KindConfig, Name: "c", Digest: digest.FromBytes(data), Body: io.NopCloser(bytes.NewReader(data))}, ""},
		{"no digest", elements.Element{Kind: elements.KindConfig, Name: "c", Body: io.NopCloser(bytes.NewReader(data))}, ""},
		{"wrong digest", elements.Element{Kind: elements.KindConfig, Name: "c", Digest: digest.FromString("x"), Body: io.NopCloser(bytes.NewReader(data))}, "does not match"},
		{"no body", elements.Element{Kind: elements.KindConfig, Name: "c"}, "no body"},
		{"read error", elements.Element{Kind: elements.KindConfig, Name: "c", Body: io.NopCloser(&failReader{errors.New("eio")})}, "eio"},
		{"too large", elements.Element{Kind: elements.KindConfig, Name: "c", Body: io.NopCloser(io.LimitReader(zeroReader{}, maxMetadataSize+1))}, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadConfig(tt.el)
			if tt.want == "" {
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("ReadConfig = %q, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadConfig error = %v, want %q", err, tt.want)
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
