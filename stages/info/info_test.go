package info

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with testdata/name (or rewrites it with -update).
// The golden files were checked against the original's code (Python's
// json, textwrap and PrettyTable 3.6) with the keys this version adds
// taken out.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readTestdata(t, name)
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func render(t *testing.T, inf *Info) (text, js []byte) {
	t.Helper()
	var tb, jb bytes.Buffer
	if err := inf.WriteText(&tb); err != nil {
		t.Fatal(err)
	}
	if err := inf.WriteJSON(&jb); err != nil {
		t.Fatal(err)
	}
	return tb.Bytes(), jb.Bytes()
}

func TestGoldenManifestIndexConfig(t *testing.T) {
	src := Source{
		Reference:      "127.0.0.1:5000/app:v1",
		Manifest:       readTestdata(t, "full-manifest.json"),
		Index:          readTestdata(t, "full-index.json"),
		IndexMediaType: "ignored: the index says its own type",
		Config:         readTestdata(t, "full-config.json"),
	}
	inf, err := Build(src)
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(src.Manifest); inf.ManifestDigest != want {
		t.Errorf("manifest digest %s, want %s", inf.ManifestDigest, want)
	}
	text, js := render(t, inf)
	golden(t, "full.txt", text)
	golden(t, "full.json", js)
	checkKeyOrder(t, js, []string{"image", "tag", "schema_version", "media_type", "manifest_digest",
		"index_digest", "index_media_type", "platforms", "config_digest", "config_size", "layer_count",
		"total_compressed_size", "layers", "architecture", "os", "variant", "created", "diff_ids",
		"history_count", "empty_layer_count", "labels", "env", "entrypoint", "cmd", "working_dir",
		"exposed_ports", "volumes"})
}

func TestGoldenConfigOnly(t *testing.T) {
	inf, err := Build(Source{Reference: "busybox:latest", Config: readTestdata(t, "tar-config.json")})
	if err != nil {
		t.Fatal(err)
	}
	text, js := render(t, inf)
	golden(t, "tar.txt", text)
	golden(t, "tar.json", js)
	checkKeyOrder(t, js, []string{"image", "tag", "architecture", "os", "variant", "created", "diff_ids",
		"layer_count", "layers", "history_count", "empty_layer_count", "labels", "env", "entrypoint", "cmd",
		"working_dir", "exposed_ports", "volumes"})
}

func TestNothingKnown(t *testing.T) {
	inf, err := Build(Source{Reference: "dockerpush/img:v1"})
	if err != nil {
		t.Fatal(err)
	}
	text, js := render(t, inf)
	if want := "Image:         dockerpush/img:v1\n\nLayers: 0\n"; string(text) != want {
		t.Errorf("text %q, want %q", text, want)
	}
	if want := "{\n  \"image\": \"dockerpush/img\",\n  \"tag\": \"v1\"\n}\n"; string(js) != want {
		t.Errorf("json %q, want %q", js, want)
	}
}

// checkKeyOrder checks the top-level keys of a JSON object, in order.
func checkKeyOrder(t *testing.T, js []byte, want []string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(js))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(keys, want) {
		t.Errorf("keys\n%q\nwant\n%q", keys, want)
	}
}

func TestBuildDetails(t *testing.T) {
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	manifest := `{"schemaVersion":2,"config":{"digest":"` + d1 + `","size":7},"layers":[
		{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"` + d1 + `","size":10},
		{"mediaType":"application/vnd.example.weird","digest":"` + d1 + `","size":20}]}`
	// One diff ID for two layers; more non-empty history entries than
	// layers; created null; a label given twice keeps its first place and
	// its last value.
	config := `{"created":null,"rootfs":{"diff_ids":["` + d1 + `"]},"history":[{"created_by":"a"},{"created_by":"b"},{"created_by":"c"}],
		"config":{"Labels":{"z":"1","a":"2","z":"3"},"Entrypoint":[],"Cmd":null}}`
	inf, err := Build(Source{Reference: "r/x@sha256:abc", Manifest: []byte(manifest), ManifestMediaType: "application/vnd.docker.distribution.manifest.v2+json", Config: []byte(config)})
	if err != nil {
		t.Fatal(err)
	}
	if inf.Image != "r/x" || inf.Tag != "sha256:abc" {
		t.Errorf("image %q tag %q", inf.Image, inf.Tag)
	}
	if inf.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Errorf("media type %q: want the served type when the manifest has none", inf.MediaType)
	}
	if inf.TotalCompressedSize != 30 || inf.LayerCount != 2 {
		t.Errorf("total %d count %d", inf.TotalCompressedSize, inf.LayerCount)
	}
	l0, l1 := inf.Layers[0], inf.Layers[1]
	if l0.Compression != "gzip" || l1.Compression != "unknown" {
		t.Errorf("compression %q %q", l0.Compression, l1.Compression)
	}
	if !l0.HasDiffID || l1.HasDiffID {
		t.Errorf("diff IDs: layer 0 %v, layer 1 %v; want only layer 0", l0.HasDiffID, l1.HasDiffID)
	}
	if l0.CreatedBy != "a" || l1.CreatedBy != "b" {
		t.Errorf("created_by %q %q", l0.CreatedBy, l1.CreatedBy)
	}
	if inf.Created != nil {
		t.Errorf("created %q, want null", *inf.Created)
	}
	if want := []Label{{"z", "3"}, {"a", "2"}}; !slices.Equal(inf.Labels, want) {
		t.Errorf("labels %v, want %v", inf.Labels, want)
	}
	_, js := render(t, inf)
	for _, want := range []string{`"created": null`, `"entrypoint": []`, `"cmd": null`, `"env": []`, `"labels": {
    "z": "3",
    "a": "2"
  }`, `"layers": [
    {
      "index": 0,
      "digest": "` + d1 + `",
      "size": 10,
      "media_type": "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "compression": "gzip",
      "diff_id": "` + d1 + `",
      "created_by": "a"
    },`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js)
		}
	}

	// created absent is '' (the original's default); a config with no
	// container config has empty lists and no labels.
	inf, err = Build(Source{Config: []byte(`{"rootfs":{"diff_ids":[]}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if inf.Created == nil || *inf.Created != "" || inf.Image != "unknown" || inf.Tag != "unknown" {
		t.Errorf("created %v image %q tag %q", inf.Created, inf.Image, inf.Tag)
	}
	text, js := render(t, inf)
	if !strings.Contains(string(text), "Container Config:\n") || strings.Contains(string(text), "+---") {
		t.Errorf("text:\n%s", text)
	}
	if !strings.Contains(string(js), `"labels": {},`) || !strings.Contains(string(js), `"layers": [],`) {
		t.Errorf("json:\n%s", js)
	}
}

func TestBuildRejectsHostileInput(t *testing.T) {
	big := bytes.Repeat([]byte(" "), MaxConfigSize+1)
	big[0] = '{'
	for _, tc := range []struct {
		name string
		src  Source
		want string
	}{
		{"config not JSON", Source{Config: []byte(`{"os":`)}, "image config is not valid"},
		{"config not an object", Source{Config: []byte(`["x"]`)}, "image config is not a JSON object"},
		{"config null", Source{Config: []byte(`null`)}, "not a JSON object"},
		{"trailing garbage", Source{Config: []byte(`{} {}`)}, "image config is not valid"},
		{"config too large", Source{Config: big}, "image config is 16777217 bytes, more than the 16777216 bytes allowed"},
		{"manifest too large", Source{Manifest: big[:MaxManifestSize+1]}, "image manifest is 4194305 bytes"},
		{"manifest wrong types", Source{Manifest: []byte(`{"layers":"x"}`)}, "image manifest is not valid"},
		{"index not JSON", Source{Index: []byte(`<html>`)}, "image index is not a JSON object"},
		{"label not a string", Source{Config: []byte(`{"config":{"Labels":{"a":1}}}`)}, `Labels: value of "a" is not a string`},
		{"labels not an object", Source{Config: []byte(`{"config":{"Labels":[]}}`)}, "Labels: not a JSON object"},
		{"created not a string", Source{Config: []byte(`{"created":5}`)}, "created is not a string"},
		{"container config a list", Source{Config: []byte(`{"config":[]}`)}, "container config is not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSplitReference(t *testing.T) {
	for _, tc := range []struct{ ref, image, tag string }{
		{"busybox:latest", "busybox", "latest"},
		{"busybox", "busybox", "latest"},
		{"127.0.0.1:5000/app:v1", "127.0.0.1:5000/app", "v1"},
		{"127.0.0.1:5000/app", "127.0.0.1:5000/app", "latest"},
		{"example.com/test/sample:v1", "example.com/test/sample", "v1"},
		{"localhost:5000/a/b", "localhost:5000/a/b", "latest"},
		{"app@sha256:abcd", "app", "sha256:abcd"},
		{"host:5000/app:v1@sha256:abcd", "host:5000/app:v1", "sha256:abcd"},
		{"", "unknown", "unknown"},
	} {
		if image, tag := SplitReference(tc.ref); image != tc.image || tag != tc.tag {
			t.Errorf("SplitReference(%q) = %q, %q; want %q, %q", tc.ref, image, tag, tc.image, tc.tag)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {42, "42 B"}, {1023, "1023 B"}, {1024, "1.0 KB"}, {1536, "1.5 KB"}, {2048, "2.0 KB"},
		{1048575, "1024.0 KB"}, {1 << 20, "1.0 MB"}, {5 << 20, "5.0 MB"}, {3408729, "3.3 MB"},
		{1<<30 - 1, "1024.0 MB"}, {1 << 30, "1.0 GB"}, {2 << 30, "2.0 GB"}, {1 << 40, "1024.0 GB"},
		{1126, "1.1 KB"}, {1075, "1.0 KB"}, {-5, "-5 B"},
	} {
		if got := FormatSize(tc.n); got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestPyRepr(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{}, `[]`},
		{[]string{"/bin/sh", "-c"}, `['/bin/sh', '-c']`},
		{[]string{"it's"}, `["it's"]`},
		{[]string{`say "hi"`}, `['say "hi"']`},
		{[]string{`it's "both"`}, `['it\'s "both"']`},
		{[]string{`back\slash`}, `['back\\slash']`},
		{[]string{"tab\tnl\ncr\r"}, `['tab\tnl\ncr\r']`},
		{[]string{"\x00\x1b\x7f"}, `['\x00\x1b\x7f']`},
		{[]string{"café 你好"}, `['café 你好']`},
		{[]string{"\u0085\u00a0\u200b\u2028"}, `['\x85\xa0\u200b\u2028']`},
		{[]string{"\U000e0001"}, `['\U000e0001']`},
		{[]string{""}, `['']`},
	} {
		if got := PyRepr(tc.in); got != tc.want {
			t.Errorf("PyRepr(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestTextEscapesControlCharacters(t *testing.T) {
	inf, err := Build(Source{Reference: "evil\x1b[2J:v1", Config: []byte(`{"rootfs":{"diff_ids":["sha256:aa"]},
		"history":[{"created_by":"line one\nline\u001b]0;title\u0007 two"}],
		"config":{"Env":["A=\u001b[31mred"],"Labels":{"k\r":"v\u009b"}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := render(t, inf)
	if bytes.ContainsAny(text, "\x1b\r\x07\u009b") {
		t.Errorf("control characters reached the text output:\n%q", text)
	}
	for _, want := range []string{`Image:         evil\x1b[2J:v1`, "| 0 | sha256:aa | line one", `line\x1b]0;title\x07 two`, `A=\x1b[31mred`, `k\x0d=v\x9b`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

func TestJSONEscapesLikePython(t *testing.T) {
	inf, err := Build(Source{Reference: "a:b", Config: []byte(`{"config":{"Env":["é<>&\u007f😀\u2028\b\f\u0001"]}}`)})
	if err != nil {
		t.Fatal(err)
	}
	_, js := render(t, inf)
	// json.dumps(['é<>&\x7f😀\u2028\b\f\x01']) in Python.
	if want := `"env": [
    "\u00e9<>&\u007f\ud83d\ude00\u2028\b\f\u0001"
  ],`; !strings.Contains(string(js), want) {
		t.Errorf("JSON lacks %s:\n%s", want, js)
	}
}
