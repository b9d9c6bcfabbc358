package dir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/stagetest"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// otherImage is a second image for shared directories: two of the sample's
// layers, so the two images share them.
func otherImage() imagegen.Image {
	img := imagegen.Sample()
	img.RepoTag = "example.com/test/other:v2"
	img.Layers = img.Layers[:2]
	return img
}

// toDir writes img into the directory out through the tarball input and
// the dir output.
func toDir(t *testing.T, out string, img imagegen.Image, f imagegen.Format, unique bool) imagegen.Result {
	t.Helper()
	p, res := writeImage(t, img, f)
	if err := runPipeline(tarball.NewInput(p, stages.Env{}), NewOutput(out, Options{UniqueNames: unique}, stages.Env{})); err != nil {
		t.Fatal(err)
	}
	return res
}

// checkElements checks the elements an Input sent for the image res
// describes, reading every layer body to its end.
func checkElements(t *testing.T, els []elements.Element, ref string, res imagegen.Result) {
	t.Helper()
	if len(els) != 2+len(res.DiffIDs) {
		t.Fatalf("%d elements, want %d", len(els), 2+len(res.DiffIDs))
	}
	if els[0].Kind != elements.KindImage || els[0].Name != ref {
		t.Errorf("first element %v %q, want image %q", els[0].Kind, els[0].Name, ref)
	}
	cfg := els[1]
	if cfg.Kind != elements.KindConfig || cfg.Digest != res.ConfigDigest || cfg.Name != res.ConfigDigest.Encoded()+".json" || cfg.Size != int64(len(res.Config)) {
		t.Errorf("config element %v %s %s size %d, want %s", cfg.Kind, cfg.Name, cfg.Digest, cfg.Size, res.ConfigDigest)
	}
	if b, err := io.ReadAll(cfg.Body); err != nil || !bytes.Equal(b, res.Config) {
		t.Errorf("config body differs (%v)", err)
	}
	for i, el := range els[2:] {
		if el.Kind != elements.KindLayer || el.Index != i || el.DiffID != res.DiffIDs[i] || el.Digest != el.DiffID ||
			el.MediaType != ocispec.MediaTypeImageLayer || el.Source == nil {
			t.Errorf("layer element %d: %+v", i, el)
		}
		b, err := io.ReadAll(el.Body)
		if err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
		if got := digest.FromBytes(b); got != res.DiffIDs[i] || int64(len(b)) != el.Size {
			t.Errorf("layer %d: body %s (%d bytes), want %s (%d bytes)", i, got, len(b), res.DiffIDs[i], el.Size)
		}
	}
}

func TestInputRun(t *testing.T) {
	untagged := imagegen.Image{Layers: imagegen.Repeated().Layers[:1]}
	latest := imagegen.Sample()
	latest.RepoTag = "example.com/test/sample:latest"
	latest.Layers = latest.Layers[1:]
	tests := []struct {
		name   string
		images []imagegen.Image // written in this order into one directory
		unique bool
		sel    Selection
		want   int    // the image sel selects
		ref    string // its reference
		edit   func(t *testing.T, dir string)
	}{
		{name: "sample", images: []imagegen.Image{imagegen.Sample()}, ref: "example.com/test/sample:v1"},
		{name: "sample unique", images: []imagegen.Image{imagegen.Sample()}, unique: true, ref: "example.com/test/sample:v1"},
		{name: "gzip source", images: []imagegen.Image{imagegen.Sample().WithCompression("gzip")}, ref: "example.com/test/sample:v1"},
		{name: "repeated layer", images: []imagegen.Image{imagegen.Repeated()}, ref: imagegen.Repeated().RepoTag},
		{name: "untagged", images: []imagegen.Image{untagged}, ref: ""},
		{name: "selected by image and tag", images: []imagegen.Image{imagegen.Sample(), otherImage()}, unique: true,
			sel: Selection{Image: "example.com/test/sample", Tag: "v1"}, want: 0, ref: "example.com/test/sample:v1"},
		{name: "selected by image", images: []imagegen.Image{imagegen.Sample(), otherImage()}, unique: true,
			sel: Selection{Image: "example.com/test/other"}, want: 1, ref: "example.com/test/other:v2"},
		{name: "selected by tag", images: []imagegen.Image{imagegen.Sample(), otherImage()}, unique: true,
			sel: Selection{Tag: "v2"}, want: 1, ref: "example.com/test/other:v2"},
		{name: "plain, the later image", images: []imagegen.Image{imagegen.Sample(), otherImage()},
			sel: Selection{Image: "example.com/test/other", Tag: "v2"}, want: 1, ref: "example.com/test/other:v2"},
		{name: "no catalog", images: []imagegen.Image{imagegen.Sample()}, ref: "example.com/test/sample:v1",
			edit: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, "catalog.json")) }},
		{name: "no catalog, matching selection", images: []imagegen.Image{imagegen.Sample()}, ref: "example.com/test/sample:v1",
			sel:  Selection{Image: "example.com/test/sample", Tag: "v1"},
			edit: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, "catalog.json")) }},
		{name: "several tags, latest", images: []imagegen.Image{imagegen.Sample(), latest, otherImage()}, unique: true,
			sel: Selection{Image: "example.com/test/sample"}, want: 1, ref: "example.com/test/sample:latest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			var results []imagegen.Result
			for i, img := range tc.images {
				results = append(results, toDir(t, dir, img, imagegen.Format(i%2), tc.unique))
			}
			if tc.edit != nil {
				tc.edit(t, dir)
			}
			in := NewInput(dir, tc.sel, stages.Env{})
			els, err := stagetest.Collect(t, in)
			if err != nil {
				t.Fatal(err)
			}
			checkElements(t, els, tc.ref, results[tc.want])

			img, err := in.Describe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if img.Reference != tc.ref || !bytes.Equal(img.Config, results[tc.want].Config) || len(img.Layers) != len(results[tc.want].DiffIDs) {
				t.Errorf("Describe: %q, %d layers", img.Reference, len(img.Layers))
			}
		})
	}
}

// TestInputOriginalLayout reads a directory as the original tool wrote it:
// the config re-serialised (so its name is not its digest), RepoTags with
// only the name's last component.
func TestInputOriginalLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	res := toDir(t, dir, imagegen.Sample(), imagegen.Legacy, true)
	manifest := "manifest-example.com_test_sample-v1.json"
	var m []dirManifest
	readJSONFile(t, filepath.Join(dir, manifest), &m)
	var cfg bytes.Buffer
	if err := json.Indent(&cfg, res.Config, "", "    "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, m[0].Config), cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m[0].RepoTags = []string{"sample:v1"}
	writeJSONFile(t, filepath.Join(dir, manifest), m)

	els, err := stagetest.Collect(t, NewInput(dir, Selection{}, stages.Env{}))
	if err != nil {
		t.Fatal(err)
	}
	res.Config, res.ConfigDigest = cfg.Bytes(), digest.FromBytes(cfg.Bytes())
	checkElements(t, els, "example.com/test/sample:v1", res)
}

func TestPick(t *testing.T) {
	two := map[string]map[string]string{
		"example.com/a": {"v1": "ma1.json", "v2": "ma2.json"},
		"b":             {"latest": "mb.json", "v1": "mb1.json"},
	}
	tests := []struct {
		name    string
		catalog map[string]map[string]string
		sel     Selection
		image   string
		tag     string
		err     string
	}{
		{"only image", map[string]map[string]string{"x": {"t": "m.json"}}, Selection{}, "x", "t", ""},
		{"image and tag", two, Selection{Image: "example.com/a", Tag: "v2"}, "example.com/a", "v2", ""},
		{"image, latest among tags", two, Selection{Image: "b"}, "b", "latest", ""},
		{"tag shared by two images", two, Selection{Tag: "v1"}, "", "",
			"catalog.json lists several images (b:v1, example.com/a:v1): choose one with ?image=NAME&tag=TAG"},
		{"tag of one image", two, Selection{Tag: "v2"}, "example.com/a", "v2", ""},
		{"no selection", two, Selection{}, "", "",
			"catalog.json lists several images (b:latest, b:v1, example.com/a:v1, example.com/a:v2): choose one with ?image=NAME&tag=TAG"},
		{"several tags, no latest", two, Selection{Image: "example.com/a"}, "", "",
			`image "example.com/a" has several tags in catalog.json (example.com/a:v1, example.com/a:v2): choose one with ?tag=TAG`},
		{"unknown image", two, Selection{Image: "c", Tag: "v1"}, "", "",
			`image "c" is not in catalog.json, which lists b:latest, b:v1, example.com/a:v1, example.com/a:v2`},
		{"unknown tag", two, Selection{Image: "b", Tag: "v9"}, "", "",
			`image "b" has no tag "v9" in catalog.json, which lists b:latest, b:v1, example.com/a:v1, example.com/a:v2`},
		{"tag of no image", two, Selection{Tag: "v9"}, "", "",
			`no image has tag "v9" in catalog.json, which lists b:latest, b:v1, example.com/a:v1, example.com/a:v2`},
		{"empty", map[string]map[string]string{}, Selection{}, "", "", "catalog.json lists no image"},
		{"image without tags", map[string]map[string]string{"x": {}}, Selection{}, "", "", "catalog.json lists no image"},
		{"digest tag", map[string]map[string]string{"x": {"sha256:ab": "m.json"}}, Selection{}, "x", "sha256:ab", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			image, tag, err := pick(tc.catalog, tc.sel)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || image != tc.image || tag != tc.tag {
				t.Errorf("pick = %q, %q, %v; want %q, %q", image, tag, err, tc.image, tc.tag)
			}
		})
	}
}

func TestJoinRef(t *testing.T) {
	for _, tc := range []struct{ image, tag, want string }{
		{"busybox", "latest", "busybox:latest"},
		{"example.com:5000/a/b", "v1", "example.com:5000/a/b:v1"},
		{"a", "sha256:abcd", "a@sha256:abcd"},
	} {
		if got := joinRef(tc.image, tc.tag); got != tc.want {
			t.Errorf("joinRef(%q, %q) = %q, want %q", tc.image, tc.tag, got, tc.want)
		}
	}
}

func mustRemove(t *testing.T, p string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}

func readJSONFile(t *testing.T, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func writeJSONFile(t *testing.T, p string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editJSON rewrites the JSON file at p through edit.
func editJSON[T any](t *testing.T, p string, edit func(T)) {
	t.Helper()
	var v T
	readJSONFile(t, p, &v)
	edit(v)
	writeJSONFile(t, p, v)
}

// editManifest rewrites the manifest file of example.com/test/sample:v1
// in a unique_names directory.
func editManifest(t *testing.T, dir string, edit func(m *dirManifest)) {
	t.Helper()
	p := filepath.Join(dir, "manifest-example.com_test_sample-v1.json")
	var m []dirManifest
	readJSONFile(t, p, &m)
	edit(&m[0])
	writeJSONFile(t, p, m)
}

// sampleManifest returns the manifest of example.com/test/sample:v1 in a
// unique_names directory.
func sampleManifest(t *testing.T, dir string) dirManifest {
	t.Helper()
	var m []dirManifest
	readJSONFile(t, filepath.Join(dir, "manifest-example.com_test_sample-v1.json"), &m)
	return m[0]
}

// TestInputErrors: each broken or hostile directory fails before any
// element is sent, with a message naming the problem.
func TestInputErrors(t *testing.T) {
	sample := Selection{Image: "example.com/test/sample", Tag: "v1"}
	writeFile := func(t *testing.T, p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// outside makes a copy of the sample's first layer outside the
	// directory, at <parent>/outside/layer.tar, and returns its path.
	outside := func(t *testing.T, dir string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, sampleManifest(t, dir).Layers[0]))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(filepath.Dir(dir), "outside", "layer.tar")
		writeFile(t, p, string(b))
		return p
	}
	tests := []struct {
		name  string
		plain bool // a directory without unique_names
		sel   Selection
		edit  func(t *testing.T, dir string)
		want  string
	}{
		{name: "two images, no selection",
			want: "catalog.json lists several images (example.com/test/other:v2, example.com/test/sample:v1): choose one with ?image=NAME&tag=TAG"},
		{name: "unknown image", sel: Selection{Image: "example.com/test/nope"},
			want: `image "example.com/test/nope" is not in catalog.json, which lists example.com/test/other:v2, example.com/test/sample:v1`},
		{name: "unknown tag", sel: Selection{Image: "example.com/test/sample", Tag: "v9"}, want: `has no tag "v9" in catalog.json`},
		{name: "manifest replaced", plain: true, sel: sample,
			want: "catalog.json lists example.com/test/sample:v1 in manifest.json, but manifest.json now holds example.com/test/other:v2"},
		{name: "nothing there", edit: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, "catalog.json")) },
			want: "has neither catalog.json nor manifest.json"},
		{name: "no catalog, other selection", plain: true, sel: sample,
			edit: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, "catalog.json")) },
			want: "has no catalog.json, and its manifest.json holds example.com/test/other:v2, not the image selected (image=example.com/test/sample, tag=v1)"},
		{name: "catalog not JSON", edit: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "catalog.json"), "{") },
			want: "catalog.json is not valid JSON"},
		{name: "catalog a directory", edit: func(t *testing.T, dir string) {
			mustRemove(t, filepath.Join(dir, "catalog.json"))
			os.Mkdir(filepath.Join(dir, "catalog.json"), 0o755)
		}, want: "catalog.json is not a regular file"},
		{name: "catalog names an outside manifest", sel: sample, edit: func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "catalog.json"), func(c map[string]map[string]string) {
				c["example.com/test/sample"]["v1"] = "../m.json"
			})
		}, want: `the manifest catalog.json names for example.com/test/sample:v1 ("../m.json") leads outside the directory, which is refused`},
		{name: "manifest missing", sel: sample,
			edit: func(t *testing.T, dir string) {
				mustRemove(t, filepath.Join(dir, "manifest-example.com_test_sample-v1.json"))
			},
			want: "open manifest-example.com_test_sample-v1.json in "},
		{name: "manifest not JSON", sel: sample,
			edit: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "manifest-example.com_test_sample-v1.json"), "[{")
			},
			want: "manifest-example.com_test_sample-v1.json is not valid JSON"},
		{name: "manifest empty", sel: sample,
			edit: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "manifest-example.com_test_sample-v1.json"), "[]")
			},
			want: "manifest-example.com_test_sample-v1.json lists no image"},
		{name: "config missing", sel: sample,
			edit: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, sampleManifest(t, dir).Config)) },
			want: "no such file or directory"},
		{name: "config not JSON", sel: sample,
			edit: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, sampleManifest(t, dir).Config), "nope")
			},
			want: "is not valid JSON"},
		{name: "config outside", sel: sample, edit: func(t *testing.T, dir string) {
			editManifest(t, dir, func(m *dirManifest) { m.Config = "../outside/config.json" })
		}, want: `the config manifest-example.com_test_sample-v1.json names ("../outside/config.json") leads outside the directory, which is refused`},
		{name: "config symlink outside", sel: sample, edit: func(t *testing.T, dir string) {
			p := filepath.Join(dir, sampleManifest(t, dir).Config)
			b, _ := os.ReadFile(p)
			writeFile(t, filepath.Join(filepath.Dir(dir), "config.json"), string(b))
			mustRemove(t, p)
			if err := os.Symlink("../config.json", p); err != nil {
				t.Fatal(err)
			}
		}, want: "leads outside the directory (through .. or a symlink), which is refused"},
		{name: "layer count differs", sel: sample, edit: func(t *testing.T, dir string) {
			editManifest(t, dir, func(m *dirManifest) { m.Layers = m.Layers[:len(m.Layers)-1] })
		}, want: "manifest-example.com_test_sample-v1.json lists 3 layers but its config"},
		{name: "bad diff ID", sel: sample, edit: func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, sampleManifest(t, dir).Config), func(c map[string]any) {
				c["rootfs"].(map[string]any)["diff_ids"].([]any)[1] = "md5:abc"
			})
		}, want: `diff ID 1 ("md5:abc") is not a sha256 digest`},
		{name: "layer dot-dot", sel: sample, edit: func(t *testing.T, dir string) {
			outside(t, dir)
			editManifest(t, dir, func(m *dirManifest) { m.Layers[0] = "../outside/layer.tar" })
		}, want: `layer 0 of manifest-example.com_test_sample-v1.json ("../outside/layer.tar") leads outside the directory, which is refused`},
		{name: "layer absolute", sel: sample, edit: func(t *testing.T, dir string) {
			p := outside(t, dir)
			editManifest(t, dir, func(m *dirManifest) { m.Layers[0] = p })
		}, want: "layer 0 of manifest-example.com_test_sample-v1.json is an absolute path"},
		{name: "layer symlink outside", sel: sample, edit: func(t *testing.T, dir string) {
			p := outside(t, dir)
			l := filepath.Join(dir, sampleManifest(t, dir).Layers[0])
			mustRemove(t, l)
			if err := os.Symlink(p, l); err != nil {
				t.Fatal(err)
			}
		}, want: "/d: LAYER0 leads outside the directory (through .. or a symlink), which is refused"},
		{name: "layer directory symlink outside", sel: sample, edit: func(t *testing.T, dir string) {
			outside(t, dir)
			l := filepath.Join(dir, path.Dir(sampleManifest(t, dir).Layers[0]))
			mustRemove(t, l)
			if err := os.Symlink("../outside", l); err != nil {
				t.Fatal(err)
			}
		}, want: "LAYER0 leads outside the directory (through .. or a symlink), which is refused"},
		{name: "layer missing", sel: sample, edit: func(t *testing.T, dir string) {
			mustRemove(t, filepath.Join(dir, sampleManifest(t, dir).Layers[2]))
		}, want: "layer 2: open LAYER2 in "},
		{name: "layer a directory", sel: sample, edit: func(t *testing.T, dir string) {
			l := filepath.Join(dir, sampleManifest(t, dir).Layers[2])
			mustRemove(t, l)
			os.Mkdir(l, 0o755)
		}, want: "LAYER2 is not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			toDir(t, dir, imagegen.Sample(), imagegen.Legacy, !tc.plain)
			toDir(t, dir, otherImage(), imagegen.OCI, !tc.plain)
			want := tc.want
			if !tc.plain {
				m := sampleManifest(t, dir)
				for i, l := range m.Layers {
					want = strings.ReplaceAll(want, "LAYER"+string(rune('0'+i)), l)
				}
			}
			if tc.edit != nil {
				tc.edit(t, dir)
			}
			els, err := stagetest.Collect(t, NewInput(dir, tc.sel, stages.Env{}))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v\nwant it to contain %q", err, want)
			}
			if len(els) != 0 {
				t.Errorf("%d elements sent before the error", len(els))
			}
		})
	}
}

// TestInputCorruptLayer: a layer.tar whose bytes changed fails the read of
// its body with a digest error.
func TestInputCorruptLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	toDir(t, dir, imagegen.Sample(), imagegen.Legacy, false)
	var m []dirManifest
	readJSONFile(t, filepath.Join(dir, "manifest.json"), &m)
	p := filepath.Join(dir, m[0].Layers[1])
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	els, err := stagetest.Collect(t, NewInput(dir, Selection{}, stages.Env{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, el := range els[2:] {
		_, err := io.Copy(io.Discard, el.Body)
		if el.Index == 1 {
			if !errors.Is(err, elements.ErrDigestMismatch) || !strings.Contains(err.Error(), filepath.Join(dir, m[0].Layers[1])+": digest mismatch") {
				t.Errorf("corrupt layer read: %v", err)
			}
		} else if err != nil {
			t.Errorf("layer %d: %v", el.Index, err)
		}
	}
}

// failAfter is an output that reads the first layer's body to its end,
// closes it and fails, leaving the rest to the engine.
type failAfter struct{}

var errStop = errors.New("stop")

func (failAfter) Run(ctx context.Context, in <-chan elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil || !ok {
			return err
		}
		if el.Kind == elements.KindLayer {
			io.Copy(io.Discard, el.Body)
			el.Close()
			return errStop
		}
		el.Close()
	}
}

// drain is an output that reads every body to its end and closes it.
type drain struct{}

func (drain) Run(ctx context.Context, in <-chan elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil || !ok {
			return err
		}
		if el.Body != nil {
			if _, err := io.Copy(io.Discard, el.Body); err != nil {
				el.Close()
				return err
			}
		}
		el.Close()
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

// TestInputReleasesFiles: every file the input opens is closed, whether
// the output reads everything or fails after the first layer.
func TestInputReleasesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	toDir(t, dir, imagegen.Sample(), imagegen.Legacy, false)
	for _, tc := range []struct {
		name string
		out  stages.Output
		err  error
	}{
		{"all read", drain{}, nil},
		{"output fails", failAfter{}, errStop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := openFiles(t)
			p := engine.Pipeline{Input: NewInput(dir, Selection{}, stages.Env{}), Output: tc.out}
			if err := p.Run(context.Background()); !errors.Is(err, tc.err) {
				t.Fatalf("Run: %v, want %v", err, tc.err)
			}
			if after := openFiles(t); after != before {
				t.Errorf("%d files open before, %d after", before, after)
			}
		})
	}
}
