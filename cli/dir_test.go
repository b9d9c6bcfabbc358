package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
)

// sharedDir writes the sample image (example.com/test/sample:v1) and a
// second one sharing two of its layers (example.com/test/other:v2) into
// one new directory, with or without unique_names, and returns it.
func sharedDir(t *testing.T, unique bool) (string, imagegen.Result, imagegen.Result) {
	t.Helper()
	other := imagegen.Sample()
	other.RepoTag = "example.com/test/other:v2"
	other.Layers = other.Layers[:2]
	in1, res1 := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	in2, res2 := writeImage(t, other, imagegen.OCI)
	out := filepath.Join(t.TempDir(), "shared")
	opt := ""
	if unique {
		opt = "?unique_names=true"
	}
	mustRun(t, "process", "tar://"+in1, "dir://"+out+opt)
	mustRun(t, "process", "tar://"+in2, "dir://"+out+opt)
	return out, res1, res2
}

// TestDirSourceRoundTrip: tar:// -> dir:// -> dir:// source -> tar://
// keeps the config digest and diff IDs, for each image of a shared
// directory.
func TestDirSourceRoundTrip(t *testing.T) {
	for _, unique := range []bool{false, true} {
		name := "plain"
		if unique {
			name = "unique_names"
		}
		t.Run(name, func(t *testing.T) {
			dir, sample, other := sharedDir(t, unique)
			cases := []struct {
				query string
				res   imagegen.Result
				tag   string
			}{
				{"?image=example.com/test/other&tag=v2", other, "example.com/test/other:v2"},
				{"?image=example.com/test/sample&tag=v1", sample, "example.com/test/sample:v1"},
			}
			for _, c := range cases {
				out := filepath.Join(t.TempDir(), "out.tar")
				code, _, stderr := run(t, "process", "dir://"+dir+c.query, "tar://"+out)
				if !unique && c.res.ConfigDigest == sample.ConfigDigest {
					// Without unique_names the second image replaced
					// manifest.json: the first cannot be rebuilt.
					if code != 1 || !strings.Contains(stderr, "manifest is lost") {
						t.Errorf("%s: exit %d\n%s", c.query, code, stderr)
					}
					if _, err := os.Stat(out); err == nil {
						t.Errorf("%s: an output file was written", c.query)
					}
					continue
				}
				if code != 0 {
					t.Fatalf("%s: exit %d\n%s", c.query, code, stderr)
				}
				sameImage(t, out, c.res)
				var m dockerManifest
				for _, mb := range readTar(t, out) {
					if mb.name == "manifest.json" {
						json.Unmarshal(mb.data, &m)
					}
				}
				if len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != c.tag {
					t.Errorf("%s: manifest.json %+v, want RepoTags [%s]", c.query, m, c.tag)
				}
			}
		})
	}
}

// TestDirSourceToDir: a dir:// source into another dir:// directory
// writes the same files (the layers and the config keep their bytes).
func TestDirSourceToDir(t *testing.T) {
	dir, sample, _ := sharedDir(t, true)
	out := filepath.Join(t.TempDir(), "copy")
	mustRun(t, "process", "dir://"+dir+"?image=example.com/test/sample", "dir://"+out)
	var m []struct {
		Config string
		Layers []string
	}
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest.json %s: %v", b, err)
	}
	if cfg, err := os.ReadFile(filepath.Join(out, m[0].Config)); err != nil || digest.FromBytes(cfg) != sample.ConfigDigest {
		t.Errorf("config %s: %v", m[0].Config, err)
	}
	for i, l := range m[0].Layers {
		data, err := os.ReadFile(filepath.Join(out, l))
		if err != nil || digest.FromBytes(data) != sample.DiffIDs[i] {
			t.Errorf("layer %d (%s): %v", i, l, err)
		}
	}
}

// TestRecreateImage: the legacy recreate-image rebuilds a loadable tarball
// of one image of a shared directory, with normalised timestamps when
// asked.
func TestRecreateImage(t *testing.T) {
	dir, _, other := sharedDir(t, true)
	out := filepath.Join(t.TempDir(), "out.tar")
	code, _, stderr := run(t, "recreate-image", dir, "example.com/test/other", "v2", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	sameImage(t, out, other)
	if want := "recreate-image is deprecated; use: occystrap process dir://" + dir + "?image=example.com/test/other&tag=v2 tar://" + out; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	for _, m := range readTar(t, out) {
		if strings.HasSuffix(m.name, "/layer.tar/layer.tar") || strings.Count(m.name, "/") > 1 {
			t.Errorf("member %s: layers must be <name>/layer.tar", m.name)
		}
	}

	norm := filepath.Join(t.TempDir(), "norm.tar")
	mustRun(t, "recreate-image", dir, "example.com/test/other", "v2", norm, "--normalize-timestamps", "--timestamp", "12345")
	cd, diffIDs := tarImage(t, norm) // the config's diff IDs match the rewritten layers
	if cd == other.ConfigDigest || len(diffIDs) != len(other.DiffIDs) {
		t.Errorf("normalised image: config %s, %d layers", cd, len(diffIDs))
	}
	n := 0
	for l, hs := range layerEntries(t, norm) {
		for _, h := range hs {
			n++
			if h.ModTime.Unix() != 12345 {
				t.Errorf("%s: %s has mtime %d, want 12345", l, h.Name, h.ModTime.Unix())
			}
		}
	}
	if n == 0 {
		t.Error("no layer entries")
	}
}

// TestDirSourceErrors: selections that do not name one image, and
// directories whose manifests point outside or whose layers were changed,
// fail with a message naming the problem and write nothing.
func TestDirSourceErrors(t *testing.T) {
	sampleManifest := "manifest-example.com_test_sample-v1.json"
	layers := func(t *testing.T, dir string) []string {
		t.Helper()
		var m []struct{ Layers []string }
		b, err := os.ReadFile(filepath.Join(dir, sampleManifest))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m[0].Layers
	}
	// setLayer makes the sample's manifest list p as its first layer, and
	// puts a copy of that layer outside the directory, so that only the
	// refusal can make the run fail.
	setLayer := func(t *testing.T, dir, p string) {
		t.Helper()
		mp := filepath.Join(dir, sampleManifest)
		b, err := os.ReadFile(mp)
		if err != nil {
			t.Fatal(err)
		}
		first := layers(t, dir)[0]
		data, err := os.ReadFile(filepath.Join(dir, first))
		if err != nil {
			t.Fatal(err)
		}
		outside := filepath.Join(filepath.Dir(dir), "outside")
		os.MkdirAll(outside, 0o755)
		if err := os.WriteFile(filepath.Join(outside, "layer.tar"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.Replace(string(b), first, p, 1))
		if err := os.WriteFile(mp, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sample := "?image=example.com/test/sample&tag=v1"
	tests := []struct {
		name  string
		query string
		edit  func(t *testing.T, dir string)
		want  []string
	}{
		{name: "no selection", want: []string{"catalog.json lists several images (example.com/test/other:v2, example.com/test/sample:v1): choose one with ?image=NAME&tag=TAG"}},
		{name: "unknown image", query: "?image=example.com/test/nope",
			want: []string{`image "example.com/test/nope" is not in catalog.json, which lists example.com/test/other:v2, example.com/test/sample:v1`}},
		{name: "unknown tag", query: "?image=example.com/test/sample&tag=v9", want: []string{`image "example.com/test/sample" has no tag "v9"`}},
		{name: "layer dot-dot", query: sample,
			edit: func(t *testing.T, dir string) { setLayer(t, dir, "../outside/layer.tar") },
			want: []string{`layer 0 of ` + sampleManifest + ` ("../outside/layer.tar") leads outside the directory, which is refused`}},
		{name: "layer absolute", query: sample,
			edit: func(t *testing.T, dir string) {
				setLayer(t, dir, filepath.Join(filepath.Dir(dir), "outside", "layer.tar"))
			},
			want: []string{"layer 0 of " + sampleManifest + " is an absolute path", "which is refused"}},
		{name: "layer symlink outside", query: sample,
			edit: func(t *testing.T, dir string) {
				setLayer(t, dir, layers(t, dir)[0]) // only makes the copy outside
				l := filepath.Join(dir, layers(t, dir)[0])
				os.Remove(l)
				if err := os.Symlink("../../outside/layer.tar", l); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"leads outside the directory (through .. or a symlink), which is refused"}},
		{name: "corrupted layer", query: sample,
			edit: func(t *testing.T, dir string) {
				p := filepath.Join(dir, layers(t, dir)[2])
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0x01
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"layer 2 (", "/layer.tar: digest mismatch"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _, _ := sharedDir(t, true)
			if tc.edit != nil {
				tc.edit(t, dir)
			}
			outDir := t.TempDir()
			out := filepath.Join(outDir, "out.tar")
			code, _, stderr := run(t, "process", "dir://"+dir+tc.query, "tar://"+out)
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if left := listTree(t, outDir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestInfoDirSource: info describes an image of a dir:// directory from
// its manifest file and config.
func TestInfoDirSource(t *testing.T) {
	dir, _, other := sharedDir(t, true)
	stdout := mustRun(t, "-O", "json", "info", "dir://"+dir+"?image=example.com/test/other")
	var got struct {
		Image   string   `json:"image"`
		Tag     string   `json:"tag"`
		DiffIDs []string `json:"diff_ids"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if got.Image != "example.com/test/other" || got.Tag != "v2" || len(got.DiffIDs) != len(other.DiffIDs) || got.DiffIDs[0] != other.DiffIDs[0].String() {
		t.Errorf("info %+v\n%s", got, stdout)
	}
}
