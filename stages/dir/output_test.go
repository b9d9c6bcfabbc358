package dir

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func writeImage(t *testing.T, img imagegen.Image, f imagegen.Format) (string, imagegen.Result) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	res, err := imagegen.WriteFile(p, img, f)
	if err != nil {
		t.Fatal(err)
	}
	return p, res
}

func runPipeline(in stages.Input, out stages.Output) error {
	p := engine.Pipeline{Input: in, Output: out}
	return p.Run(context.Background())
}

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

// snapshot describes every path under root: type, mode, size, content
// digest or link target, and inode, so that any change shows.
func snapshot(t *testing.T, root string) map[string]string {
	return snapshotOpt(t, root, true)
}

// contents is snapshot without inodes: it shows changed content only.
func contents(t *testing.T, root string) map[string]string {
	return snapshotOpt(t, root, false)
}

func snapshotOpt(t *testing.T, root string, inodes bool) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d", fi.Mode(), fi.Size())
		if inodes {
			desc += fmt.Sprintf(" ino=%d", fi.Sys().(*syscall.Stat_t).Ino)
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		m[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// noStaging fails if a staging directory is left in dir.
func noStaging(t *testing.T, dir string) {
	t.Helper()
	for _, n := range listDir(t, dir) {
		if strings.HasPrefix(n, ".occystrap-") || strings.HasPrefix(n, ".old-") {
			t.Errorf("%s left behind in %s", n, dir)
		}
	}
}

// jsonList renders a list of strings as writeJSON does at the given depth.
func jsonList(items []string, indent string) string {
	if len(items) == 0 {
		return "[]"
	}
	var b strings.Builder
	b.WriteString("[\n")
	for i, it := range items {
		fmt.Fprintf(&b, "%s    %q", indent, it)
		if i < len(items)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(indent + "]")
	return b.String()
}

// wantManifest is the manifest file writeJSON must produce: 4-space
// indent, sorted keys, no trailing newline.
func wantManifest(config, imageName string, unique bool, layers, tags []string) string {
	var b strings.Builder
	b.WriteString("[\n    {\n")
	fmt.Fprintf(&b, "        \"Config\": %q,\n", config)
	if unique {
		fmt.Fprintf(&b, "        \"ImageName\": %q,\n", imageName)
	}
	fmt.Fprintf(&b, "        \"Layers\": %s,\n", jsonList(layers, "        "))
	fmt.Fprintf(&b, "        \"RepoTags\": %s\n", jsonList(tags, "        "))
	b.WriteString("    }\n]")
	return b.String()
}

// wantCatalog renders catalog.json for image -> tag -> manifest entries
// given in sorted order.
func wantCatalog(entries [][3]string) string {
	var b strings.Builder
	b.WriteString("{\n")
	for i := 0; i < len(entries); {
		img := entries[i][0]
		fmt.Fprintf(&b, "    %q: {\n", img)
		j := i
		for ; j < len(entries) && entries[j][0] == img; j++ {
			fmt.Fprintf(&b, "        %q: %q", entries[j][1], entries[j][2])
			if j+1 < len(entries) && entries[j+1][0] == img {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString("    }")
		if j < len(entries) {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
		i = j
	}
	b.WriteString("}")
	return b.String()
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// layerNames returns the layer element names the tarball input gives.
func layerNames(res imagegen.Result, f imagegen.Format) []string {
	var names []string
	for i := range res.LayerPaths {
		if f == imagegen.Legacy {
			names = append(names, res.V1IDs[i])
		} else {
			names = append(names, res.LayerDigests[i].Encoded())
		}
	}
	return names
}

func TestLayout(t *testing.T) {
	hub := imagegen.Sample()
	hub.RepoTag = "docker.io/library/busybox:1.36"
	untagged := imagegen.Image{Layers: imagegen.Repeated().Layers[:2]}
	tests := []struct {
		name     string
		img      imagegen.Image
		format   imagegen.Format
		opts     Options
		image    string // catalog image name
		tag      string
		repoTags []string
		manifest string
	}{
		{"sample legacy", imagegen.Sample(), imagegen.Legacy, Options{},
			"example.com/test/sample", "v1", []string{"example.com/test/sample:v1"}, "manifest.json"},
		{"sample legacy unique", imagegen.Sample(), imagegen.Legacy, Options{UniqueNames: true},
			"example.com/test/sample", "v1", []string{"example.com/test/sample:v1"}, "manifest-example.com_test_sample-v1.json"},
		{"sample oci gzip", imagegen.Sample().WithCompression("gzip"), imagegen.OCI, Options{},
			"example.com/test/sample", "v1", []string{"example.com/test/sample:v1"}, "manifest.json"},
		{"sample oci zstd unique", imagegen.Sample().WithCompression("zstd"), imagegen.OCI, Options{UniqueNames: true},
			"example.com/test/sample", "v1", []string{"example.com/test/sample:v1"}, "manifest-example.com_test_sample-v1.json"},
		{"docker hub name unique", hub, imagegen.OCI, Options{UniqueNames: true},
			"busybox", "1.36", []string{"busybox:1.36"}, "manifest-busybox-1.36.json"},
		{"repeated legacy", imagegen.Repeated(), imagegen.Legacy, Options{},
			"repeated", "latest", []string{"repeated:latest"}, "manifest.json"},
		{"repeated oci (one blob twice)", imagegen.Repeated(), imagegen.OCI, Options{UniqueNames: true},
			"repeated", "latest", []string{"repeated:latest"}, "manifest-repeated-latest.json"},
		{"untagged unique", untagged, imagegen.OCI, Options{UniqueNames: true},
			"unknown", "unknown", []string{}, "manifest-unknown-unknown.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inPath, res := writeImage(t, tt.img, tt.format)
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			out := NewOutput(dest, tt.opts, stages.Env{})
			if err := runPipeline(tarball.NewInput(inPath, stages.Env{}), out); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			if got := listDir(t, parent); !slices.Equal(got, []string{"out"}) {
				t.Errorf("parent holds %q, want only out", got)
			}
			fi, err := os.Stat(dest)
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("destination %v, %v; want a 0755 directory", fi, err)
			}

			configName := res.ConfigDigest.Encoded() + ".json"
			names := layerNames(res, tt.format)
			want := []string{"catalog.json", configName, tt.manifest}
			var layers []string
			for _, n := range names {
				layers = append(layers, n+"/layer.tar")
				if !slices.Contains(want, n) {
					want = append(want, n)
				}
			}
			slices.Sort(want)
			if got := listDir(t, dest); !slices.Equal(got, want) {
				t.Fatalf("destination holds %q, want %q", got, want)
			}
			for i, n := range names {
				if got := listDir(t, filepath.Join(dest, n)); !slices.Equal(got, []string{"layer.tar"}) {
					t.Errorf("%s holds %q", n, got)
				}
				b, err := os.ReadFile(filepath.Join(dest, n, "layer.tar"))
				if err != nil {
					t.Fatal(err)
				}
				if got := digest.FromBytes(b); got != res.DiffIDs[i] {
					t.Errorf("layer %d: %s/layer.tar digest %s, want %s", i, n, got, res.DiffIDs[i])
				}
			}
			if got := readString(t, filepath.Join(dest, configName)); got != string(res.Config) {
				t.Error("config differs from the input's")
			}
			if got, want := readString(t, filepath.Join(dest, tt.manifest)), wantManifest(configName, tt.image, tt.opts.UniqueNames, layers, tt.repoTags); got != want {
				t.Errorf("%s =\n%s\nwant\n%s", tt.manifest, got, want)
			}
			if got, want := readString(t, filepath.Join(dest, "catalog.json")), wantCatalog([][3]string{{tt.image, tt.tag, tt.manifest}}); got != want {
				t.Errorf("catalog.json =\n%s\nwant\n%s", got, want)
			}
			if r := out.Result(); r.Image != tt.img.RepoTag || r.Layers != len(tt.img.Layers) || r.Path != dest || r.Bytes <= int64(len(res.Config)) {
				t.Errorf("Result = %+v", r)
			}
		})
	}
}

// TestSecondImage: images written one after another into a unique_names
// directory share it: earlier files stay as they were, layers already
// present are not rewritten, and catalog.json lists every image.
func TestSecondImage(t *testing.T) {
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(format.String(), func(t *testing.T) {
			v1 := imagegen.Sample()
			v2 := imagegen.Sample()
			v2.RepoTag = "example.com/test/sample:v2"
			in1, res1 := writeImage(t, v1, format)
			in2, _ := writeImage(t, v2, format)
			in3, res3 := writeImage(t, imagegen.Repeated(), format)
			parent := t.TempDir()
			dest := filepath.Join(parent, "shared")
			opts := Options{UniqueNames: true}
			if err := runPipeline(tarball.NewInput(in1, stages.Env{}), NewOutput(dest, opts, stages.Env{})); err != nil {
				t.Fatal(err)
			}
			before := contents(t, dest)
			layerInodes := snapshot(t, dest)

			out2 := NewOutput(dest, opts, stages.Env{})
			if err := runPipeline(tarball.NewInput(in2, stages.Env{}), out2); err != nil {
				t.Fatalf("second image: %v", err)
			}
			if r := out2.Result(); r.Layers != len(v2.Layers) {
				t.Errorf("second image Result %+v, want %d layers", r, len(v2.Layers))
			}
			if err := runPipeline(tarball.NewInput(in3, stages.Env{}), NewOutput(dest, opts, stages.Env{})); err != nil {
				t.Fatalf("third image: %v", err)
			}
			after := contents(t, dest)
			for p, d := range before {
				if p == "catalog.json" || p == "." {
					continue
				}
				if after[p] != d {
					t.Errorf("%s changed: %s -> %s", p, d, after[p])
				}
			}
			// Layers already present are not written again.
			afterInodes := snapshot(t, dest)
			for _, n := range layerNames(res1, format) {
				p := filepath.Join(n, "layer.tar")
				if afterInodes[p] != layerInodes[p] {
					t.Errorf("%s was rewritten: %s -> %s", p, layerInodes[p], afterInodes[p])
				}
			}
			m1 := "manifest-example.com_test_sample-v1.json"
			m2 := "manifest-example.com_test_sample-v2.json"
			m3 := "manifest-repeated-latest.json"
			for _, m := range []string{m1, m2, m3} {
				if _, ok := after[m]; !ok {
					t.Errorf("%s is missing", m)
				}
			}
			for _, n := range layerNames(res3, format) {
				if _, ok := after[filepath.Join(n, "layer.tar")]; !ok {
					t.Errorf("layer %s of the third image is missing", n)
				}
			}
			// v2 shares v1's layers and config: its manifest names them.
			var l1 []string
			for _, n := range layerNames(res1, format) {
				l1 = append(l1, n+"/layer.tar")
			}
			cfg := res1.ConfigDigest.Encoded() + ".json"
			if got, want := readString(t, filepath.Join(dest, m2)), wantManifest(cfg, "example.com/test/sample", true, l1, []string{"example.com/test/sample:v2"}); got != want {
				t.Errorf("%s =\n%s\nwant\n%s", m2, got, want)
			}
			wantCat := wantCatalog([][3]string{
				{"example.com/test/sample", "v1", m1},
				{"example.com/test/sample", "v2", m2},
				{"repeated", "latest", m3},
			})
			if got := readString(t, filepath.Join(dest, "catalog.json")); got != wantCat {
				t.Errorf("catalog.json =\n%s\nwant\n%s", got, wantCat)
			}
			noStaging(t, dest)
			noStaging(t, parent)
		})
	}
}

// body is a Body that counts Close calls.
type body struct {
	r      io.Reader
	closed *atomic.Int32
}

func (b *body) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *body) Close() error {
	b.closed.Add(1)
	return nil
}

type failReader struct{ err error }

func (f failReader) Read([]byte) (int, error) { return 0, f.err }

// fakeInput sends els, then returns err.
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

func mkLayerTar(name, content string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))})
	tw.Write([]byte(content))
	tw.Close()
	return b.Bytes()
}

// fakeImage returns an image, a config and layers built from layer tars,
// the last of which fails with err after its first bytes when err is set.
func fakeImage(ref string, closed *[]*atomic.Int32, err error, cfgName string, layers ...[]byte) []elements.Element {
	mk := func(r io.Reader) io.ReadCloser {
		c := new(atomic.Int32)
		*closed = append(*closed, c)
		return &body{r: r, closed: c}
	}
	cfg := []byte(`{"os":"linux"}`)
	if cfgName == "" {
		cfgName = digest.FromBytes(cfg).Encoded() + ".json"
	}
	els := []elements.Element{
		{Kind: elements.KindImage, Name: ref, Index: -1, Size: -1},
		{Kind: elements.KindConfig, Name: cfgName, Index: -1, MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg)), Body: mk(bytes.NewReader(cfg))},
	}
	for i, l := range layers {
		var r io.Reader = bytes.NewReader(l)
		if err != nil && i == len(layers)-1 {
			r = io.MultiReader(bytes.NewReader(l[:len(l)/2]), failReader{err})
		}
		els = append(els, elements.Element{Kind: elements.KindLayer, Name: fmt.Sprintf("layer%d", i), Index: i,
			MediaType: ocispec.MediaTypeImageLayer, DiffID: digest.FromBytes(l), Size: int64(len(l)), Body: mk(r)})
	}
	return els
}

// corruptLastLayer flips a byte in the middle of the last layer blob of
// the tarball at path.
func corruptLastLayer(t *testing.T, path string, res imagegen.Result) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	last := res.LayerPaths[len(res.LayerPaths)-1]
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("layer %s not found: %v", last, err)
		}
		if hdr.Name != last {
			continue
		}
		data, _ := io.ReadAll(tr)
		i := bytes.Index(b, data)
		if i < 0 || len(data) < 2 {
			t.Fatal("layer data not located")
		}
		b[i+len(data)/2] ^= 0xff
		break
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFailureLeavesDestination(t *testing.T) {
	readErr := errors.New("connection reset")
	l0 := mkLayerTar("a", strings.Repeat("layer zero ", 500))
	l1 := mkLayerTar("b", strings.Repeat("layer one ", 500))
	type input struct {
		in     stages.Input
		bodies []*atomic.Int32
	}
	tests := []struct {
		name  string
		opts  Options
		in    func(t *testing.T) input
		want  string
		fixed string // the bug this case once exposed
	}{
		{"input fails after its last element", Options{UniqueNames: true}, func(t *testing.T) input {
			var c []*atomic.Int32
			return input{&fakeInput{els: fakeImage("fail:1", &c, nil, "", l0), err: errors.New("input gave up")}, c}
		}, "input gave up",
			"race: engine/engine.go closes the input's channel before errgroup cancels the context, and stages/dir/output.go Run commits once Recv reports the channel closed without checking ctx, so Pipeline.Run can return the input's error with the image written (a few percent of runs)"},
		{"layer body fails", Options{UniqueNames: true}, func(t *testing.T) input {
			var c []*atomic.Int32
			return input{&fakeInput{els: fakeImage("fail:1", &c, readErr, "", l0, l1)}, c}
		}, "connection reset", ""},
		{"layer body fails, expand", Options{UniqueNames: true, Expand: true}, func(t *testing.T) input {
			var c []*atomic.Int32
			return input{&fakeInput{els: fakeImage("fail:1", &c, readErr, "", l0, l1)}, c}
		}, "connection reset", ""},
		{"layers out of order", Options{UniqueNames: true}, func(t *testing.T) input {
			var c []*atomic.Int32
			els := fakeImage("fail:1", &c, nil, "", l0, l1)
			els[2], els[3] = els[3], els[2]
			return input{&fakeInput{els: els}, c}
		}, "image order", ""},
		{"config named like the catalog", Options{UniqueNames: true}, func(t *testing.T) input {
			var c []*atomic.Int32
			return input{&fakeInput{els: fakeImage("fail:1", &c, nil, "catalog.json", l0)}, c}
		}, "not usable", ""},
		{"config named like a manifest", Options{}, func(t *testing.T) input {
			var c []*atomic.Int32
			return input{&fakeInput{els: fakeImage("fail:1", &c, nil, "manifest.json", l0)}, c}
		}, "not usable", ""},
		{"no config", Options{UniqueNames: true}, func(t *testing.T) input {
			var c []*atomic.Int32
			els := fakeImage("fail:1", &c, nil, "", l0)
			els[1].Close()
			els = slices.Delete(els, 1, 2)
			return input{&fakeInput{els: els}, c}
		}, "config", ""},
		{"corrupt legacy layer (kernel copy)", Options{UniqueNames: true}, func(t *testing.T) input {
			img := imagegen.Sample()
			img.RepoTag = "corrupt:1"
			img.Created = time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC) // another config, so no layer name is already present
			p, res := writeImage(t, img, imagegen.Legacy)
			corruptLastLayer(t, p, res)
			return input{in: tarball.NewInput(p, stages.Env{})}
		}, "does not match", ""},
		{"corrupt oci zstd layer, expand", Options{Expand: true}, func(t *testing.T) input {
			img := imagegen.Sample().WithCompression("zstd")
			img.RepoTag = "corrupt:1"
			img.Created = time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC) // another config, so no layer name is already present
			p, res := writeImage(t, img, imagegen.OCI)
			corruptLastLayer(t, p, res)
			return input{in: tarball.NewInput(p, stages.Env{})}
		}, "layer 3", ""},
		{"corrupt legacy layer, expand", Options{UniqueNames: true, Expand: true}, func(t *testing.T) input {
			img := imagegen.Sample()
			img.RepoTag = "corrupt:1"
			img.Created = time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC) // another config, so no layer name is already present
			p, res := writeImage(t, img, imagegen.Legacy)
			corruptLastLayer(t, p, res)
			return input{in: tarball.NewInput(p, stages.Env{})}
		}, "does not match", ""},
	}
	firstPath, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	for _, tt := range tests {
		for _, existing := range []bool{false, true} {
			name := tt.name + "/new destination"
			if existing {
				name = tt.name + "/existing destination"
			}
			t.Run(name, func(t *testing.T) {
				parent := t.TempDir()
				dest := filepath.Join(parent, "out")
				var before map[string]string
				if existing {
					if err := runPipeline(tarball.NewInput(firstPath, stages.Env{}), NewOutput(dest, Options{UniqueNames: true, Expand: tt.opts.Expand}, stages.Env{})); err != nil {
						t.Fatal(err)
					}
					before = snapshot(t, dest)
				}
				in := tt.in(t)
				err := runPipeline(in.in, NewOutput(dest, tt.opts, stages.Env{}))
				if err == nil {
					t.Fatal("pipeline succeeded, want an error")
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q lacks %q", err, tt.want)
				}
				for i, c := range in.bodies {
					if n := c.Load(); n != 1 {
						t.Errorf("body %d closed %d times, want 1", i, n)
					}
				}
				noStaging(t, parent)
				if !existing {
					if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("a new destination was left behind (%v)", err)
					}
					if got := listDir(t, parent); len(got) != 0 {
						t.Errorf("parent holds %q", got)
					}
					return
				}
				noStaging(t, dest)
				after := snapshot(t, dest)
				for p, d := range before {
					if p == "." {
						continue
					}
					if after[p] != d {
						t.Errorf("%s changed: %s -> %s", p, d, after[p])
					}
				}
				for p := range after {
					if _, ok := before[p]; !ok {
						t.Errorf("%s appeared", p)
					}
				}
			})
		}
	}
}

func TestBadDestination(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	inPath, _ := writeImage(t, imagegen.Repeated(), imagegen.Legacy)
	tests := []struct{ name, dest, want string }{
		{"a file", file, "not a directory"},
		{"below a file", filepath.Join(file, "sub"), "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runPipeline(tarball.NewInput(inPath, stages.Env{}), NewOutput(tt.dest, Options{}, stages.Env{}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if got := readString(t, file); got != "x" {
		t.Errorf("the file changed: %q", got)
	}
	noStaging(t, tmp)
}

// TestNewDestinationParents: a destination whose parent does not exist is
// created with it.
func TestNewDestinationParents(t *testing.T) {
	inPath, _ := writeImage(t, imagegen.Repeated(), imagegen.Legacy)
	dest := filepath.Join(t.TempDir(), "a", "b", "out")
	if err := runPipeline(tarball.NewInput(inPath, stages.Env{}), NewOutput(dest, Options{}, stages.Env{})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "catalog.json")); err != nil {
		t.Error(err)
	}
	noStaging(t, filepath.Dir(dest))
}

func wantFile(t *testing.T, root, p, content string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	if string(b) != content {
		t.Errorf("%s = %q, want %q", p, b, content)
	}
}

func wantGone(t *testing.T, root string, ps ...string) {
	t.Helper()
	for _, p := range ps {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists (%v), want it whited out", p, err)
		}
	}
}

func checkSampleTree(t *testing.T, root string) {
	t.Helper()
	// Layer 2 whites out etc/hostname and the directory var/cache/app.
	wantGone(t, root, "etc/hostname", "var/cache/app", "var/cache/app/a.dat", "etc/.wh.hostname", "var/cache/.wh.app")
	wantFile(t, root, "var/cache/keep.dat", "kept\n")
	// Layer 2 replaces etc/passwd; layer 4 adds etc/motd.
	wantFile(t, root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\napp:x:1001:1001::/app:/bin/sh\n")
	wantFile(t, root, "etc/motd", "welcome to the sample image\n")
	wantFile(t, root, "etc/empty", "")
	// opt/app is opaque in layer 2: only that layer's new.txt remains.
	if got := listDir(t, filepath.Join(root, "opt/app")); !slices.Equal(got, []string{"new.txt"}) {
		t.Errorf("opt/app holds %q, want only new.txt", got)
	}
	wantFile(t, root, "opt/app/new.txt", "new content after opaque\n")
	wantFile(t, root, imagegen.SampleLongName, "long name\n")
	wantFile(t, root, imagegen.SampleDeepPath, "deep\n")
	wantFile(t, root, imagegen.SampleNonASCII, "bonjour 你好\n")
	wantFile(t, root, imagegen.SampleXattrFile, "remember the milk\n")
	wantFile(t, root, "app/config.json", `{"listen":":8080"}`+"\n")
	for p, target := range map[string]string{"usr/lib/libfoo.so": "libfoo.so.1", "usr/bin/tool": "/bin/tool", "app/lib": "../usr/lib"} {
		if got, err := os.Readlink(filepath.Join(root, p)); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want -> %q", p, got, err, target)
		}
	}
	a, errA := os.Stat(filepath.Join(root, "bin/tool"))
	b, errB := os.Stat(filepath.Join(root, "usr/bin/tool-hard"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("usr/bin/tool-hard is not a hard link of bin/tool (%v, %v)", errA, errB)
	}
	if fi, err := os.Stat(filepath.Join(root, "app/data/seed.bin")); err != nil || fi.Size() != 3000 {
		t.Errorf("app/data/seed.bin: %v, %v", fi, err)
	}
	for p, mode := range map[string]fs.FileMode{"bin/tool": 0o755, "bin/su-tool": 0o755 | fs.ModeSetuid, "tmp": 0o777 | fs.ModeSticky | fs.ModeDir, "home/user": 0o700 | fs.ModeDir} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s mode %v (%v), want %v", p, fi.Mode(), err, mode)
		}
	}
	if os.Geteuid() == 0 {
		fi, err := os.Lstat(filepath.Join(root, "home/user"))
		if err == nil {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
				t.Errorf("home/user owned by %d:%d, want 1000:1000", st.Uid, st.Gid)
			}
		}
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		name   string
		img    imagegen.Image
		format imagegen.Format
		opts   Options
		stem   string
	}{
		{"legacy", imagegen.Sample(), imagegen.Legacy, Options{Expand: true}, "manifest"},
		{"legacy unique", imagegen.Sample(), imagegen.Legacy, Options{Expand: true, UniqueNames: true}, "manifest-example.com_test_sample-v1"},
		{"oci zstd", imagegen.Sample().WithCompression("zstd"), imagegen.OCI, Options{Expand: true}, "manifest"},
		{"oci gzip unique", imagegen.Sample().WithCompression("gzip"), imagegen.OCI, Options{Expand: true, UniqueNames: true}, "manifest-example.com_test_sample-v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inPath, res := writeImage(t, tt.img, tt.format)
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			for round := 1; round <= 2; round++ {
				// The second round writes the same image over the first,
				// replacing its expanded tree.
				if err := runPipeline(tarball.NewInput(inPath, stages.Env{}), NewOutput(dest, tt.opts, stages.Env{})); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				checkSampleTree(t, filepath.Join(dest, tt.stem))
				for i, n := range layerNames(res, tt.format) {
					b, err := os.ReadFile(filepath.Join(dest, n, "layer.tar"))
					if err != nil || digest.FromBytes(b) != res.DiffIDs[i] {
						t.Errorf("round %d: layer %d file: %v", round, i, err)
					}
				}
				if _, err := os.Stat(filepath.Join(dest, tt.stem+".json")); err != nil {
					t.Errorf("round %d: manifest: %v", round, err)
				}
				want := wantCatalog([][3]string{{"example.com/test/sample", "v1", tt.stem + ".json"}})
				if got := readString(t, filepath.Join(dest, "catalog.json")); got != want {
					t.Errorf("round %d: catalog.json =\n%s\nwant\n%s", round, got, want)
				}
				noStaging(t, parent)
				noStaging(t, dest)
			}
		})
	}
}

// TestExpandSecondImage: expanding a second image into a unique_names
// directory adds its tree beside the first one's.
func TestExpandSecondImage(t *testing.T) {
	in1, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	in2, _ := writeImage(t, imagegen.Repeated(), imagegen.OCI)
	dest := filepath.Join(t.TempDir(), "out")
	opts := Options{Expand: true, UniqueNames: true}
	for _, in := range []string{in1, in2} {
		if err := runPipeline(tarball.NewInput(in, stages.Env{}), NewOutput(dest, opts, stages.Env{})); err != nil {
			t.Fatal(err)
		}
	}
	checkSampleTree(t, filepath.Join(dest, "manifest-example.com_test_sample-v1"))
	// Repeated: the marker of layer 1 is whited out by layer 2 and
	// written again by layer 3.
	wantFile(t, filepath.Join(dest, "manifest-repeated-latest"), "etc/marker", "same layer twice\n")
	noStaging(t, dest)
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{strings.Repeat("f", 64), true},
		{strings.Repeat("f", 64) + ".json", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{`a\b`, false},
		{"catalog.json", false},
		{"manifest.json", false},
		{"manifest-x-y", false},
		{".occystrap-x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkName(tt.name); (err == nil) != tt.ok {
				t.Errorf("checkName(%q) = %v, want ok %v", tt.name, err, tt.ok)
			}
		})
	}
}

func TestSplitRef(t *testing.T) {
	tests := []struct{ ref, image, tag string }{
		{"busybox:latest", "busybox", "latest"},
		{"busybox", "busybox", "latest"},
		{"docker.io/library/busybox:1.36", "busybox", "1.36"},
		{"ghcr.io/org/app:v1", "ghcr.io/org/app", "v1"},
		{"127.0.0.1:5000/x/y:z", "127.0.0.1:5000/x/y", "z"},
		{"app@sha256:" + strings.Repeat("a", 64), "app", "sha256:" + strings.Repeat("a", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			image, tag := splitRef(tt.ref)
			if image != tt.image || tag != tt.tag {
				t.Errorf("splitRef(%q) = %q, %q; want %q, %q", tt.ref, image, tag, tt.image, tt.tag)
			}
		})
	}
}
