package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
)

// passwdSizes are the sizes of etc/passwd in the sample's first two layers.
func passwdSizes() (int, int) {
	img := imagegen.Sample()
	size := func(l imagegen.Layer) int {
		for _, e := range l.Entries {
			if e.Path == "etc/passwd" {
				return len(e.Data)
			}
		}
		return -1
	}
	return size(img.Layers[0]), size(img.Layers[1])
}

func TestSearchCommand(t *testing.T) {
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	s0, s1 := passwdSizes()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"glob", []string{"search", "tar://" + in, "passwd"},
			fmt.Sprintf("Layer: %s\n  ./etc/passwd (file, %d bytes)\n\nLayer: %s\n  etc/passwd (file, %d bytes)\n\nFound 2 matches in 2 layers.\n",
				res.V1IDs[0], s0, res.V1IDs[1], s1)},
		{"script friendly", []string{"search", "--script-friendly", "tar://" + in, "*passwd"},
			fmt.Sprintf("example.com/test/sample:v1:%s:./etc/passwd\nexample.com/test/sample:v1:%s:etc/passwd\n", res.V1IDs[0], res.V1IDs[1])},
		{"regex", []string{"search", "--regex", "tar://" + in, `^etc/pass`},
			fmt.Sprintf("Layer: %s\n  etc/passwd (file, %d bytes)\n\nFound 1 match in 1 layer.\n", res.V1IDs[1], s1)},
		{"symlink", []string{"search", "tar://" + in, "libfoo.so"},
			fmt.Sprintf("Layer: %s\n  ./usr/lib/libfoo.so -> libfoo.so.1 (symlink)\n\nFound 1 match in 1 layer.\n", res.V1IDs[0])},
		{"no match", []string{"search", "tar://" + in, "*.conf"}, "No matches found.\n"},
		{"no match script", []string{"search", "--script-friendly", "tar://" + in, "*.conf"}, ""},
		{"legacy", []string{"search-layers-tarfile", in, "passwd", "--script-friendly"},
			fmt.Sprintf("example.com/test/sample:v1:%s:./etc/passwd\nexample.com/test/sample:v1:%s:etc/passwd\n", res.V1IDs[0], res.V1IDs[1])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if stdout != tc.want {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tc.want)
			}
			if tc.name == "legacy" && !strings.Contains(stderr, "deprecated") {
				t.Errorf("no deprecation warning:\n%s", stderr)
			}
		})
	}
}

func TestSearchCommandCompressedLayers(t *testing.T) {
	for _, comp := range []string{"gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			in, res := writeImage(t, imagegen.Sample().WithCompression(comp), imagegen.OCI)
			stdout := mustRun(t, "search", "--script-friendly", "tar://"+in, "motd")
			want := fmt.Sprintf("example.com/test/sample:v1:%s:etc/motd\n", res.LayerDigests[3].Encoded())
			if stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
		})
	}
}

func TestSearchCommandJSON(t *testing.T) {
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	stdout := mustRun(t, "-O", "json", "search", "tar://"+in, "*tool*")
	var doc struct {
		Image   string
		Matches []struct {
			Layer, Path, Type, Linkname string
			Size, Mode, Mtime           int64
			UID, GID                    int
		}
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if doc.Image != "example.com/test/sample:v1" {
		t.Errorf("image %q", doc.Image)
	}
	var paths []string
	for _, m := range doc.Matches {
		paths = append(paths, m.Path)
		if m.Layer != res.V1IDs[0] {
			t.Errorf("%s in layer %s", m.Path, m.Layer)
		}
	}
	if got := strings.Join(paths, " "); got != "./bin/tool ./bin/su-tool ./usr/bin/tool ./usr/bin/tool-hard" {
		t.Errorf("paths %s", got)
	}
	su := doc.Matches[1]
	if su.Type != "file" || su.Mode != 0o4755 || su.Mtime != imagegen.DefaultModTime.Unix() {
		t.Errorf("su-tool %+v", su)
	}
	if l := doc.Matches[3]; l.Type != "hardlink" || l.Linkname != "./bin/tool" {
		t.Errorf("tool-hard %+v", l)
	}
}

func TestSearchCommandErrors(t *testing.T) {
	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad regex", []string{"search", "--regex", "tar://" + in, "("}, 2, "regular expression"},
		{"missing pattern", []string{"search", "tar://" + in}, 2, "pattern"},
		{"bad source", []string{"search", "image.tar", "x"}, 2, "scheme"},
		{"missing file", []string{"search", "tar://" + in + ".none", "x"}, 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d; stderr lacks %q?\n%s", code, tc.code, tc.want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}

func TestProcessSearchFilterPassesImageThrough(t *testing.T) {
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(format.String(), func(t *testing.T) {
			img := imagegen.Sample()
			if format == imagegen.OCI {
				img = img.WithCompression("gzip")
			}
			in, res := writeImage(t, img, format)
			dir := t.TempDir()
			plain, filtered := filepath.Join(dir, "plain.tar"), filepath.Join(dir, "filtered.tar")
			mustRun(t, "process", "tar://"+in, "tar://"+plain)
			stdout := mustRun(t, "process", "tar://"+in, "tar://"+filtered, "-f", "search:pattern=*motd,script-friendly=true")
			a, err := os.ReadFile(plain)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filtered)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Error("the search filter changed the output tarball")
			}
			layer := res.LayerDigests[3].Encoded()
			if format == imagegen.Legacy {
				layer = res.V1IDs[3]
			}
			if want := "example.com/test/sample:v1:" + layer + ":etc/motd\n"; stdout != want {
				t.Errorf("stdout %q, want %q", stdout, want)
			}
		})
	}
}

func TestProcessInspectFilterAppends(t *testing.T) {
	in, res := writeImage(t, imagegen.Sample(), imagegen.OCI)
	dir := t.TempDir()
	file := filepath.Join(dir, "inspect.jsonl")
	for i := range 2 {
		mustRun(t, "process", "tar://"+in, "tar://"+filepath.Join(dir, fmt.Sprintf("out%d.tar", i)), "-f", "inspect:file="+file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), data)
	}
	for _, line := range lines {
		var rec struct {
			Name   string `json:"name"`
			Layers []struct {
				ID        string   `json:"Id"`
				Size      int64    `json:"Size"`
				Created   int64    `json:"Created"`
				CreatedBy string   `json:"CreatedBy"`
				Tags      []string `json:"Tags"`
				DiffID    string   `json:"DiffID"`
			} `json:"layers"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if rec.Name != "example.com/test/sample:v1" || len(rec.Layers) != 4 {
			t.Fatalf("%s", line)
		}
		for i, l := range rec.Layers {
			n := 3 - i // newest first
			if l.ID != res.DiffIDs[n].String() || l.DiffID != res.DiffIDs[n].String() || l.Size != res.LayerSizes[n] ||
				l.CreatedBy != fmt.Sprintf("imagegen layer %d", n+1) || l.Created != imagegen.DefaultModTime.Unix() {
				t.Errorf("layer %d: %+v", i, l)
			}
			if (i == 0) != (l.Tags != nil) {
				t.Errorf("layer %d tags %v", i, l.Tags)
			}
		}
	}
	if !strings.HasPrefix(lines[0], `{"layers": [{"Comment": "", "Created": `) {
		t.Errorf("not in the original's format: %s", lines[0])
	}
}

func TestProcessFilterErrors(t *testing.T) {
	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	dir := t.TempDir()
	out := filepath.Join(dir, "o.tar")
	for _, tc := range []struct {
		name   string
		filter string
		want   string
	}{
		{"missing pattern", "search", "pattern"},
		{"bad regex", "search:pattern=(,regex=true", "regular expression"},
		{"bad boolean", "search:pattern=x,regex=maybe", "regex"},
		{"missing file", "inspect", "file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, "process", "tar://"+in, "tar://"+out, "-f", tc.filter)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want 2; stderr lacks %q?\n%s", code, tc.want, stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("an output was written")
			}
		})
	}
}

// TestSearchRegistry searches an image in a registry, and searches as a
// filter on a registry-to-registry copy, where the destination has every
// blob already (mounted or skipped, its bodies closed unread): every layer
// must still be searched.
func TestSearchRegistry(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, _ := writeImage(t, imagegen.Sample().WithCompression("gzip"), imagegen.OCI)
	src := "registry://" + r.Host + "/s/app:v1"
	mustRun(t, "process", "tar://"+in, src)

	stdout := mustRun(t, "search", "--script-friendly", src, "motd")
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(r.Host+"/s/app:v1:") + `[0-9a-f]{64}:etc/motd\n$`).MatchString(stdout) {
		t.Errorf("stdout %q", stdout)
	}
	all := mustRun(t, "search", "--script-friendly", src, "*")
	if n := strings.Count(all, "\n"); n < 40 {
		t.Fatalf("%d members found:\n%s", n, all)
	}
	for _, dst := range []string{"/s/app:v2", "/other/app:v1"} {
		code, got, stderr := run(t, "process", src, "registry://"+r.Host+dst, "-f", "search:pattern=*,script_friendly=true")
		if code != 0 {
			t.Fatal(stderr)
		}
		if got != all {
			t.Errorf("copy to %s: the filter found\n%s\nwant\n%s", dst, got, all)
		}
	}
}
