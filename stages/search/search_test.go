package search

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/stagetest"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// tarOf builds a layer tar from headers (regular files get size bytes of
// "x").
func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// layerEl makes a layer element of data stored with compression c.
func layerEl(t *testing.T, i int, name string, data []byte, c elements.Compression) elements.Element {
	t.Helper()
	var buf bytes.Buffer
	if c == elements.None {
		buf.Write(data)
	} else {
		zw, err := elements.NewCompressor(&buf, c)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		zw.Close()
	}
	return elements.Element{Kind: elements.KindLayer, Name: name, Index: i,
		MediaType: elements.LayerMediaType(c), Digest: digest.FromBytes(buf.Bytes()), DiffID: digest.FromBytes(data),
		Size: int64(buf.Len()), Body: io.NopCloser(bytes.NewReader(buf.Bytes()))}
}

// sliceInput sends its elements.
type sliceInput []elements.Element

func (s sliceInput) Run(ctx context.Context, out chan<- elements.Element) error {
	for i, el := range s {
		if err := flow.Send(ctx, out, el); err != nil {
			for _, rest := range s[i+1:] {
				rest.Close()
			}
			return err
		}
	}
	return nil
}

// funcOutput runs a function per element.
type funcOutput func(el elements.Element) error

func (f funcOutput) Run(ctx context.Context, in <-chan elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil || !ok {
			return err
		}
		if err := f(el); err != nil {
			return err
		}
	}
}

type result struct {
	stdout, log string
	err         error
	filter      *Filter
}

func runSearch(t *testing.T, opts Options, format string, out stages.Output, els ...elements.Element) result {
	t.Helper()
	var stdout bytes.Buffer
	var logs stagetest.LockedBuffer
	f, err := New(opts, stages.Env{Stdout: &stdout, OutputFormat: format, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if out == nil {
		out = Discard{}
	}
	p := &engine.Pipeline{Input: sliceInput(els), Filters: []stages.Filter{f}, Output: out}
	err = p.Run(context.Background())
	return result{stdout.String(), logs.String(), err, f}
}

func imageEl(name string) elements.Element {
	return elements.Element{Kind: elements.KindImage, Name: name, Index: -1, Size: -1}
}

func sampleLayers(t *testing.T) []elements.Element {
	l0 := tarOf(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 12},
		&tar.Header{Name: "./bin/bash", Typeflag: tar.TypeSymlink, Linkname: "sh", Mode: 0o777},
	)
	l1 := tarOf(t,
		&tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "usr/bin/bash", Typeflag: tar.TypeLink, Linkname: "bin/sh", Uid: 1000, Gid: 100},
		&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3},
		&tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock},
		&tar.Header{Name: "run/pipe", Typeflag: tar.TypeFifo},
	)
	return []elements.Element{
		imageEl("127.0.0.1:5000/app:v1"),
		{Kind: elements.KindConfig, Name: "c.json", Index: -1, Body: io.NopCloser(strings.NewReader("{}"))},
		layerEl(t, 0, "aaa", l0, elements.Gzip),
		layerEl(t, 1, "bbb", l1, elements.Zstd),
	}
}

func TestSearchFormats(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		format string
		want   string
	}{
		{"text", Options{Pattern: "*bash"}, "", "Layer: aaa\n  ./bin/bash -> sh (symlink)\n\nLayer: bbb\n  usr/bin/bash -> bin/sh (hardlink)\n\nFound 2 matches in 2 layers.\n"},
		{"one match", Options{Pattern: "sh"}, "text", "Layer: aaa\n  ./bin/sh (file, 12 bytes)\n\nFound 1 match in 1 layer.\n"},
		{"directory and root", Options{Pattern: "."}, "", "Layer: aaa\n  . (directory)\n\nFound 1 match in 1 layer.\n"},
		{"types", Options{Pattern: "[dr]*/*"}, "", "Layer: bbb\n  dev/null (character device)\n  dev/sda (block device)\n  run/pipe (fifo)\n\nFound 3 matches in 1 layer.\n"},
		{"dirs lose their slash", Options{Pattern: "*bin"}, "", "Layer: aaa\n  ./bin (directory)\n\nLayer: bbb\n  usr/bin (directory)\n\nFound 2 matches in 2 layers.\n"},
		{"none", Options{Pattern: "*.conf"}, "", "No matches found.\n"},
		{"script", Options{Pattern: "*bash", ScriptFriendly: true}, "", "127.0.0.1:5000/app:v1:aaa:./bin/bash\n127.0.0.1:5000/app:v1:bbb:usr/bin/bash\n"},
		{"script none", Options{Pattern: "*.conf", ScriptFriendly: true}, "", ""},
		{"regex", Options{Pattern: `^usr/.*sh$`, Regex: true}, "", "Layer: bbb\n  usr/bin/bash -> bin/sh (hardlink)\n\nFound 1 match in 1 layer.\n"},
		{"regex unanchored", Options{Pattern: `in/b`, Regex: true, ScriptFriendly: true}, "", "127.0.0.1:5000/app:v1:aaa:./bin/bash\n127.0.0.1:5000/app:v1:bbb:usr/bin/bash\n"},
		{"regex no basename", Options{Pattern: `^bash$`, Regex: true}, "", "No matches found.\n"},
		{"json none", Options{Pattern: "*.conf"}, "json", "{\n  \"image\": \"127.0.0.1:5000/app:v1\",\n  \"matches\": []\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runSearch(t, tc.opts, tc.format, nil, sampleLayers(t)...)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.stdout != tc.want {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
		})
	}
}

func TestSearchJSON(t *testing.T) {
	r := runSearch(t, Options{Pattern: "*bash"}, "json", nil, sampleLayers(t)...)
	if r.err != nil {
		t.Fatal(r.err)
	}
	var doc struct {
		Image   string
		Matches []map[string]any
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if doc.Image != "127.0.0.1:5000/app:v1" || len(doc.Matches) != 2 {
		t.Fatalf("%+v", doc)
	}
	m := doc.Matches[1]
	want := map[string]any{"layer": "bbb", "path": "usr/bin/bash", "type": "hardlink", "size": 0.0, "mode": 0.0,
		"uid": 1000.0, "gid": 100.0, "mtime": 1700000000.0, "linkname": "bin/sh"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("keys %v", m)
	}
}

func TestImageTag(t *testing.T) {
	for _, tc := range []struct{ ref, image, tag string }{
		{"busybox:latest", "busybox", "latest"},
		{"busybox", "busybox", "latest"},
		{"127.0.0.1:5000/app:v1", "127.0.0.1:5000/app", "v1"},
		{"127.0.0.1:5000/app", "127.0.0.1:5000/app", "latest"},
		{"ghcr.io/org/app@sha256:abc", "ghcr.io/org/app", "sha256:abc"},
		{"ghcr.io/org/app:v2@sha256:abc", "ghcr.io/org/app", "v2"},
		{"", "", ""},
	} {
		if i, tg := ImageTag(tc.ref); i != tc.image || tg != tc.tag {
			t.Errorf("ImageTag(%q) = %q, %q; want %q, %q", tc.ref, i, tg, tc.image, tc.tag)
		}
	}
}

func TestNewRejectsBadPatterns(t *testing.T) {
	for _, opts := range []Options{{Pattern: "(", Regex: true}, {Pattern: "a[", Regex: true}, {Pattern: `(?<x>a)\1`, Regex: true}, {}} {
		_, err := New(opts, stages.Env{})
		if err == nil {
			t.Errorf("%+v: no error", opts)
			continue
		}
		if opts.Pattern != "" && !errors.Is(err, uri.ErrInvalidValue) {
			t.Errorf("%+v: %v does not wrap ErrInvalidValue", opts, err)
		}
	}
	// Every glob compiles: Python's fnmatch accepts them.
	for _, p := range []string{"(", "[", "[]", "\\", "[z-a]", "*?[!]"} {
		if _, err := New(Options{Pattern: p}, stages.Env{}); err != nil {
			t.Errorf("glob %q: %v", p, err)
		}
	}
}

func TestFromSpec(t *testing.T) {
	spec, err := uri.ParseFilter("search:pattern=^bin/,use_regex=true,script-friendly=yes")
	if err != nil {
		t.Fatal(err)
	}
	f, err := FromSpec(spec, stages.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if !f.opts.Regex || !f.opts.ScriptFriendly || f.opts.Pattern != "^bin/" {
		t.Errorf("%+v", f.opts)
	}
}

// TestSearchPassesElementsUnchanged checks that what comes out of the
// filter is what went in, byte for byte.
func TestSearchPassesElementsUnchanged(t *testing.T) {
	els := sampleLayers(t)
	var want [][]byte
	for _, el := range els {
		if el.Body == nil {
			want = append(want, nil)
			continue
		}
		b, _ := io.ReadAll(el.Body)
		want = append(want, b)
	}
	els = sampleLayers(t)
	var got [][]byte
	var kinds []elements.Kind
	r := runSearch(t, Options{Pattern: "*"}, "", funcOutput(func(el elements.Element) error {
		kinds = append(kinds, el.Kind)
		if el.Body == nil {
			got = append(got, nil)
			return nil
		}
		b, err := io.ReadAll(el.Body)
		el.Close()
		got = append(got, b)
		return err
	}), els...)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !slices.Equal(kinds, []elements.Kind{elements.KindImage, elements.KindConfig, elements.KindLayer, elements.KindLayer}) {
		t.Errorf("kinds %v", kinds)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("element %d changed", i)
		}
	}
	if !strings.Contains(r.stdout, "Found 10 matches in 2 layers.") {
		t.Errorf("stdout %s", r.stdout)
	}
}

// TestSearchBodyClosedEarly: an output that closes bodies without reading
// them all (a registry that has the blob already) still gets every layer
// searched.
func TestSearchBodyClosedEarly(t *testing.T) {
	for _, readFirst := range []int64{0, 10, 5000} {
		t.Run(fmt.Sprint(readFirst), func(t *testing.T) {
			r := runSearch(t, Options{Pattern: "*", ScriptFriendly: true}, "", funcOutput(func(el elements.Element) error {
				if el.Body != nil {
					io.CopyN(io.Discard, el.Body, readFirst)
				}
				return el.Close()
			}), sampleLayers(t)...)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if n := strings.Count(r.stdout, "\n"); n != 10 {
				t.Errorf("%d matches, want 10:\n%s", n, r.stdout)
			}
		})
	}
}

func TestSearchInvalidLayerIsSkipped(t *testing.T) {
	good := tarOf(t, &tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Size: 3})
	truncated := tarOf(t, &tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Size: 3000},
		&tar.Header{Name: "etc/shadow", Typeflag: tar.TypeReg, Size: 3000})[:2048]
	garbage := bytes.Repeat([]byte("not a tar at all "), 100)
	notGzip := layerEl(t, 3, "notgzip", garbage, elements.None)
	notGzip.MediaType = elements.LayerMediaType(elements.Gzip)
	notGzip.DiffID = ""
	r := runSearch(t, Options{Pattern: "passwd"}, "", nil,
		imageEl("busybox:latest"),
		layerEl(t, 0, "garbage", garbage, elements.None),
		layerEl(t, 1, "truncated", truncated, elements.Gzip),
		layerEl(t, 2, "good", good, elements.None),
		notGzip,
	)
	if r.err != nil {
		t.Fatal(r.err)
	}
	// The truncated layer's first member was read before the tar broke:
	// as in the original, what was found is kept.
	want := "Layer: truncated\n  etc/passwd (file, 3000 bytes)\n\nLayer: good\n  etc/passwd (file, 3 bytes)\n\nFound 2 matches in 2 layers.\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	for _, name := range []string{"garbage", "truncated", "notgzip"} {
		if !strings.Contains(r.log, "Failed to read layer "+name) {
			t.Errorf("no error logged for %s:\n%s", name, r.log)
		}
	}
	if strings.Contains(r.log, "Failed to read layer good") {
		t.Errorf("good layer failed:\n%s", r.log)
	}
}

func TestSearchDiffIDMismatchFails(t *testing.T) {
	el := layerEl(t, 0, "bad", tarOf(t, &tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1}), elements.Gzip)
	el.DiffID = digest.FromString("something else")
	r := runSearch(t, Options{Pattern: "*"}, "", nil, imageEl("x:y"), el)
	if !errors.Is(r.err, elements.ErrDigestMismatch) {
		t.Fatalf("err %v, want a digest mismatch", r.err)
	}
	if r.stdout != "" {
		t.Errorf("printed %q after a failure", r.stdout)
	}
}

func TestSearchCancelledLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		boom := errors.New("output failed")
		n := 0
		r := runSearch(t, Options{Pattern: "*"}, "", funcOutput(func(el elements.Element) error {
			if el.Kind != elements.KindLayer {
				return el.Close()
			}
			n++
			io.CopyN(io.Discard, el.Body, 100)
			if n == 1 {
				// Half read, while the pipeline fails: the second layer
				// is left for the engine to close.
				el.Close()
				return boom
			}
			return el.Close()
		}), sampleLayers(t)...)
		if !errors.Is(r.err, boom) {
			t.Fatalf("err %v", r.err)
		}
		if r.stdout != "" {
			t.Errorf("printed %q after a failure", r.stdout)
		}
		r = runSearch(t, Options{Pattern: "*"}, "", nil, sampleLayers(t)...)
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left, %d before:\n%s", g, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestSearchLikeTarList searches the sample image's layers and compares
// the result with GNU tar's listing of the same layers filtered with
// Python's fnmatch, the original's semantics (directories lose their
// trailing slash, as Python's tarfile gives their names).
func TestSearchLikeTarList(t *testing.T) {
	gnuTar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("tar not installed")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	dir := t.TempDir()
	img := imagegen.Sample()
	imgPath := filepath.Join(dir, "image.tar")
	res, err := imagegen.WriteFile(imgPath, img, imagegen.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	// Every layer's listing, by layer name (the legacy v1 directory).
	listings := map[string][]string{}
	out, err := exec.Command(gnuTar, "-xf", imgPath, "-C", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	for _, p := range res.LayerPaths {
		out, err := exec.Command(gnuTar, "--quoting-style=literal", "-tf", filepath.Join(dir, p)).Output()
		if err != nil {
			t.Fatalf("tar -t %s: %v", p, err)
		}
		var names []string
		for _, n := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
			names = append(names, strings.TrimRight(n, "/"))
		}
		listings[filepath.Base(filepath.Dir(p))] = names
	}
	patterns := []string{"*", "etc", "*.txt", "./etc/*", "etc/*", "**/app/*", "[!a]*", "*/bin/*", "*.so*",
		"?tc", "usr/*/lib*", "données*", "*[0-9]*", "*.wh.*", "*/.wh..wh..opq", ".", "*deep*/*-file.txt", "[a-e]*"}
	type query struct {
		Pattern string
		Names   []string
	}
	var queries []query
	var order []string
	for _, p := range res.LayerPaths {
		order = append(order, filepath.Base(filepath.Dir(p)))
	}
	for _, pat := range patterns {
		for _, l := range order {
			queries = append(queries, query{pat, listings[l]})
		}
	}
	in, _ := json.Marshal(queries)
	script := `
import fnmatch, json, os, sys
print(json.dumps([[n for n in q["Names"] if fnmatch.fnmatch(n, q["Pattern"]) or fnmatch.fnmatch(os.path.basename(n), q["Pattern"])] for q in json.load(sys.stdin)]))`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	pyOut, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want [][]string
	if err := json.Unmarshal(pyOut, &want); err != nil {
		t.Fatal(err)
	}
	for pi, pat := range patterns {
		var stdout bytes.Buffer
		env := stages.Env{Stdout: &stdout, Log: zerolog.Nop()}
		f, err := New(Options{Pattern: pat}, env)
		if err != nil {
			t.Fatal(err)
		}
		p := &engine.Pipeline{Input: tarball.NewInput(imgPath, env), Filters: []stages.Filter{f}, Output: Discard{}}
		if err := p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, m := range f.Results() {
			got[m.Layer] = append(got[m.Layer], m.Path)
		}
		for li, l := range order {
			w := want[pi*len(order)+li]
			if !slices.Equal(got[l], w) && !(len(got[l]) == 0 && len(w) == 0) {
				t.Errorf("pattern %q, layer %d: search found %q, tar -t and fnmatch give %q", pat, li, got[l], w)
			}
		}
	}
	if _, err := os.Stat(imgPath); err != nil {
		t.Fatal(err)
	}
}
