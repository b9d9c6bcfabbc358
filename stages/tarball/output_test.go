package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func runPipeline(in stages.Input, out stages.Output) error {
	p := engine.Pipeline{Input: in, Output: out}
	return p.Run(context.Background())
}

// layerTarSizes returns the uncompressed size of each layer of img.
func layerTarSizes(t *testing.T, img imagegen.Image) []int64 {
	t.Helper()
	plain := img.WithCompression("")
	_, res, err := bufferedImage(plain, imagegen.OCI)
	if err != nil {
		t.Fatal(err)
	}
	return res.LayerSizes
}

func TestOutputRoundTrip(t *testing.T) {
	hub := imagegen.Sample()
	hub.RepoTag = "docker.io/library/busybox:1.36"
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
		{"repeated oci", imagegen.Repeated(), imagegen.OCI},
		{"repeated oci gzip", imagegen.Repeated().WithCompression("gzip"), imagegen.OCI},
		{"untagged", imagegen.Image{Layers: imagegen.Repeated().Layers[:2]}, imagegen.Legacy},
		{"docker hub name", hub, imagegen.OCI},
		{"no layers", imagegen.Image{RepoTag: "empty:1"}, imagegen.OCI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inPath, res := writeImage(t, tt.img, tt.format)
			outDir := t.TempDir()
			outPath := filepath.Join(outDir, "out.tar")
			out := NewOutput(outPath, stages.Env{})
			if err := runPipeline(NewInput(inPath, stages.Env{}), out); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			if got := listDir(t, outDir); !slices.Equal(got, []string{"out.tar"}) {
				t.Errorf("output directory holds %q, want only out.tar", got)
			}
			fi, err := os.Stat(outPath)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o644 {
				t.Errorf("mode %v, want 0644", fi.Mode())
			}
			if fi.Size()%recordSize != 0 {
				t.Errorf("size %d is not a multiple of %d", fi.Size(), recordSize)
			}
			b, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			members := readArchive(t, b)

			// Expected entries: the config, each distinct layer once in
			// image order, then manifest.json.
			configName := res.ConfigDigest.Encoded() + ".json"
			wantNames := []string{configName}
			var layers []string
			for i := range tt.img.Layers {
				name := layerName(res.LayerPaths[i]) + "/layer.tar"
				if tt.format == imagegen.OCI {
					name = res.LayerDigests[i].Encoded() + "/layer.tar"
				}
				layers = append(layers, name)
				if !slices.Contains(wantNames, name) {
					wantNames = append(wantNames, name)
				}
			}
			wantNames = append(wantNames, "manifest.json")
			var gotNames []string
			byName := map[string][]byte{}
			for _, m := range members {
				gotNames = append(gotNames, m.name)
				byName[m.name] = m.data
			}
			if !slices.Equal(gotNames, wantNames) {
				t.Fatalf("members %q, want %q", gotNames, wantNames)
			}
			if !bytes.Equal(byName[configName], res.Config) {
				t.Error("config bytes differ from the input's")
			}
			for i, l := range layers {
				if got := digest.FromBytes(byName[l]); got != res.DiffIDs[i] {
					t.Errorf("layer %d (%s) digest %s, want diff ID %s", i, l, got, res.DiffIDs[i])
				}
			}
			var tags []string
			if tt.img.RepoTag != "" {
				tags = []string{Familiar(tt.img.RepoTag)}
			}
			if want := manifestJSON(layers, tags, configName); !bytes.Equal(byName["manifest.json"], want) {
				t.Errorf("manifest.json =\n%s\nwant\n%s", byName["manifest.json"], want)
			}

			var wantBytes int64 = int64(len(res.Config))
			for _, n := range layerTarSizes(t, tt.img) {
				wantBytes += n
			}
			if r := out.Result(); r.Image != tt.img.RepoTag || r.Layers != len(tt.img.Layers) || r.Path != outPath || r.Bytes != wantBytes {
				t.Errorf("Result = %+v, want image %q, %d layers, %d bytes, path %s", r, tt.img.RepoTag, len(tt.img.Layers), wantBytes, outPath)
			}

			// The output reads back as the same image.
			d, err := NewInput(outPath, stages.Env{}).Describe()
			if err != nil {
				t.Fatalf("Describe the output: %v", err)
			}
			wantRef := ""
			if tt.img.RepoTag != "" {
				wantRef = Familiar(tt.img.RepoTag)
			}
			if d.Reference != wantRef || !slices.Equal(d.Parsed.RootFS.DiffIDs, res.DiffIDs) {
				t.Errorf("read back reference %q diff IDs %v", d.Reference, d.Parsed.RootFS.DiffIDs)
			}
			if err := runAll(t, outPath); err != nil {
				t.Errorf("reading the output back: %v", err)
			}
		})
	}
}

// TestOutputDeterministic: the same input gives the same bytes, and the
// kernel-copy path (uncompressed legacy layers) gives the same layer
// members as the streaming path (the same layers stored compressed).
func TestOutputDeterministic(t *testing.T) {
	write := func(img imagegen.Image, f imagegen.Format) []tarMember {
		inPath, _ := writeImage(t, img, f)
		outPath := filepath.Join(t.TempDir(), "out.tar")
		if err := runPipeline(NewInput(inPath, stages.Env{}), NewOutput(outPath, stages.Env{})); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(outPath)
		if err != nil {
			t.Fatal(err)
		}
		return readArchive(t, b)
	}
	a := write(imagegen.Sample(), imagegen.Legacy)
	b := write(imagegen.Sample(), imagegen.Legacy)
	if !slices.EqualFunc(a, b, func(x, y tarMember) bool { return x.name == y.name && bytes.Equal(x.data, y.data) }) {
		t.Error("two runs on the same input differ")
	}
	plain := write(imagegen.Sample(), imagegen.OCI)
	zst := write(imagegen.Sample().WithCompression("zstd"), imagegen.OCI)
	if len(plain) != len(zst) {
		t.Fatalf("%d members vs %d", len(plain), len(zst))
	}
	for i := 1; i < len(plain)-1; i++ { // the layers
		if !bytes.Equal(plain[i].data, zst[i].data) {
			t.Errorf("layer member %d differs between the kernel-copy and streaming paths", i)
		}
	}
}

// body is a Body that counts Close calls and may fail its reads.
type body struct {
	r      io.Reader
	closed *atomic.Int32
}

func (b *body) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *body) Close() error {
	b.closed.Add(1)
	return nil
}

// fakeInput sends its elements (built when Run starts, so that every run
// has fresh bodies), then returns err.
type fakeInput struct {
	els []elements.Element
	err error
}

func (f *fakeInput) Run(ctx context.Context, out chan<- elements.Element) error {
	for _, el := range f.els {
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	return f.err
}

func mkLayerTar(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))})
	tw.Write([]byte(content))
	tw.Close()
	return b.Bytes()
}

// elementSet builds the elements of fake images, with bodies whose closes
// are counted.
type elementSet struct {
	t      *testing.T
	bodies []*atomic.Int32
}

func (s *elementSet) body(r io.Reader) io.ReadCloser {
	c := new(atomic.Int32)
	s.bodies = append(s.bodies, c)
	return &body{r: r, closed: c}
}

func (s *elementSet) image(name string) elements.Element {
	return elements.Element{Kind: elements.KindImage, Name: name, Index: -1, Size: -1}
}

func (s *elementSet) config(data []byte, d digest.Digest) elements.Element {
	return elements.Element{Kind: elements.KindConfig, Name: digest.FromBytes(data).Encoded() + ".json", Index: -1,
		MediaType: ocispec.MediaTypeImageConfig, Digest: d, Size: int64(len(data)), Body: s.body(bytes.NewReader(data))}
}

func (s *elementSet) layer(i int, name string, r io.Reader, diffID digest.Digest) elements.Element {
	return elements.Element{Kind: elements.KindLayer, Name: name, Index: i, MediaType: ocispec.MediaTypeImageLayer,
		DiffID: diffID, Size: -1, Body: s.body(r)}
}

// checkClosed fails unless every body was closed exactly once.
func (s *elementSet) checkClosed() {
	s.t.Helper()
	for i, c := range s.bodies {
		if n := c.Load(); n != 1 {
			s.t.Errorf("body %d closed %d times, want 1", i, n)
		}
	}
}

func TestOutputFailures(t *testing.T) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	good := mkLayerTar(t, "f", strings.Repeat("good layer ", 1000))
	readErr := errors.New("the network went away")
	inputErr := errors.New("input gave up")
	tests := []struct {
		name     string
		els      func(s *elementSet) []elements.Element
		inputErr error
		want     string
		wantIs   error
	}{
		{
			name: "layer body fails at once",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.config(cfg, ""), s.layer(0, "l0", &failReader{readErr}, "")}
			},
			want: "the network went away", wantIs: readErr,
		},
		{
			name: "layer body fails mid-way",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.config(cfg, ""),
					s.layer(0, "l0", bytes.NewReader(good), digest.FromBytes(good)),
					s.layer(1, "l1", io.MultiReader(bytes.NewReader(good[:3000]), &failReader{readErr}), "")}
			},
			want: "layer 1 (l1)", wantIs: readErr,
		},
		{
			name: "layer with the wrong diff ID",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.config(cfg, ""), s.layer(0, "l0", bytes.NewReader(good), digest.FromString("other"))}
			},
			wantIs: elements.ErrDigestMismatch,
		},
		{
			name: "config with the wrong digest",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.config(cfg, digest.FromString("other"))}
			},
			wantIs: elements.ErrDigestMismatch,
		},
		{
			name: "no config",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.layer(0, "l0", bytes.NewReader(good), "")}
			},
			want: "config",
		},
		{
			name: "nothing at all",
			els:  func(s *elementSet) []elements.Element { return nil },
			want: "config",
		},
		{
			name: "layers out of order",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.config(cfg, ""),
					s.layer(1, "l1", bytes.NewReader(good), ""), s.layer(0, "l0", bytes.NewReader(good), "")}
			},
			want: "image order",
		},
		{
			name: "layer name with a slash",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.config(cfg, ""), s.layer(0, "../x", bytes.NewReader(good), "")}
			},
			want: "not usable",
		},
		{
			name: "layer is not a tar",
			els: func(s *elementSet) []elements.Element {
				el := s.layer(0, "l0", strings.NewReader(strings.Repeat("nope", 100)), "")
				el.MediaType = "application/octet-stream"
				return []elements.Element{s.image("a:1"), s.config(cfg, ""), el}
			},
			want: "layer 0 (l0)",
		},
		{
			name: "input fails after the layers",
			els: func(s *elementSet) []elements.Element {
				return []elements.Element{s.image("a:1"), s.config(cfg, ""), s.layer(0, "l0", bytes.NewReader(good), "")}
			},
			inputErr: inputErr, wantIs: inputErr,
		},
	}
	for _, tt := range tests {
		for _, pre := range []bool{false, true} {
			name := tt.name
			if pre {
				name += "/over an existing file"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				dest := filepath.Join(dir, "out.tar")
				if pre {
					if err := os.WriteFile(dest, []byte("previous"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				s := &elementSet{t: t}
				err := runPipeline(&fakeInput{els: tt.els(s), err: tt.inputErr}, NewOutput(dest, stages.Env{}))
				if err == nil {
					t.Fatal("pipeline succeeded, want an error")
				}
				if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q lacks %q", err, tt.want)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %v does not wrap %v", err, tt.wantIs)
				}
				s.checkClosed()
				names := listDir(t, dir)
				if pre {
					if b, err := os.ReadFile(dest); err != nil || string(b) != "previous" {
						t.Errorf("existing destination changed: %q, %v", b, err)
					}
					if !slices.Equal(names, []string{"out.tar"}) {
						t.Errorf("directory holds %q, want only the old out.tar", names)
					}
				} else if len(names) != 0 {
					t.Errorf("directory holds %q after a failure, want nothing (no output, no .out.tar.tmp-*)", names)
				}
			})
		}
	}
}

// TestOutputCorruptLayerFromTarball: a layer whose bytes do not match its
// diff ID fails the write on both the kernel-copy path (uncompressed legacy
// layers) and the streaming path, and leaves nothing behind.
func TestOutputCorruptLayerFromTarball(t *testing.T) {
	tests := []struct {
		name   string
		img    imagegen.Image
		format imagegen.Format
		// The decompressor may trip over the flipped byte before the
		// body reaches its end and its digest is checked.
		anyErr bool
	}{
		{"legacy (kernel copy)", imagegen.Sample(), imagegen.Legacy, false},
		{"oci (stream)", imagegen.Sample(), imagegen.OCI, false},
		{"oci gzip (stream)", imagegen.Sample().WithCompression("gzip"), imagegen.OCI, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inPath, res := writeImage(t, tt.img, tt.format)
			last := len(res.LayerPaths) - 1
			corruptLayers(t, inPath, res.LayerPaths[last:])
			dir := t.TempDir()
			err := runPipeline(NewInput(inPath, stages.Env{}), NewOutput(filepath.Join(dir, "out.tar"), stages.Env{}))
			if err == nil || (!tt.anyErr && !errors.Is(err, elements.ErrDigestMismatch)) {
				t.Fatalf("pipeline error %v, want a digest mismatch", err)
			}
			if names := listDir(t, dir); len(names) != 0 {
				t.Errorf("directory holds %q after a failure", names)
			}
		})
	}
}

func TestOutputBadDestination(t *testing.T) {
	tmp := t.TempDir()
	inPath, _ := writeImage(t, imagegen.Repeated(), imagegen.Legacy)
	if err := os.Mkdir(filepath.Join(tmp, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dest, want string
	}{
		{"directory", filepath.Join(tmp, "adir"), "is a directory"},
		{"missing parent", filepath.Join(tmp, "nope", "out.tar"), "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runPipeline(NewInput(inPath, stages.Env{}), NewOutput(tt.dest, stages.Env{}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if got := listDir(t, filepath.Join(tmp, "adir")); len(got) != 0 {
		t.Errorf("adir holds %q", got)
	}
}

// tracker records progress reports.
type tracker struct {
	total *atomic.Int64
	done  *atomic.Int32
}

func (t tracker) Add(n int64)    { t.total.Add(n) }
func (t tracker) Done(err error) { t.done.Add(1) }

type progress struct {
	total  atomic.Int64
	done   atomic.Int32
	tracks atomic.Int32
}

func (p *progress) Track(name string, total int64) stages.Tracker {
	p.tracks.Add(1)
	return tracker{&p.total, &p.done}
}

func TestOutputProgress(t *testing.T) {
	tests := []struct {
		name   string
		img    imagegen.Image
		format imagegen.Format
	}{
		{"legacy (kernel copy)", imagegen.Sample(), imagegen.Legacy},
		{"oci zstd (stream)", imagegen.Sample().WithCompression("zstd"), imagegen.OCI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inPath, _ := writeImage(t, tt.img, tt.format)
			p := &progress{}
			if err := runPipeline(NewInput(inPath, stages.Env{}), NewOutput(filepath.Join(t.TempDir(), "o.tar"), stages.Env{Progress: p})); err != nil {
				t.Fatal(err)
			}
			var want int64
			for _, n := range layerTarSizes(t, tt.img) {
				want += n
			}
			if n := int(p.tracks.Load()); n != len(tt.img.Layers) || int(p.done.Load()) != n {
				t.Errorf("%d tracks, %d done, want %d", n, p.done.Load(), len(tt.img.Layers))
			}
			if got := p.total.Load(); got != want {
				t.Errorf("progress counted %d bytes, want %d", got, want)
			}
		})
	}
}
