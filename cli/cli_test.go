package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
)

// run runs the command line in-process and returns its exit code and
// output streams.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs the command line and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := run(t, args...)
	if code != 0 {
		t.Fatalf("occystrap %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// member is one entry of a tarball read back whole (test images are small).
type member struct {
	name string
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, path string) []member {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []member
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, member{hdr.Name, hdr, data})
	}
}

type dockerManifest []struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func writeImage(t *testing.T, img imagegen.Image, f imagegen.Format) (string, imagegen.Result) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.tar")
	res, err := imagegen.WriteFile(path, img, f)
	if err != nil {
		t.Fatal(err)
	}
	return path, res
}

func TestProcessTarToTarKeepsConfigAndDiffIDs(t *testing.T) {
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		for _, comp := range []string{"", "gzip", "zstd"} {
			if format == imagegen.Legacy && comp != "" {
				continue // docker save's legacy layout stores plain tars
			}
			t.Run(fmt.Sprintf("%s/%s", format, comp), func(t *testing.T) {
				img := imagegen.Sample()
				for i := range img.Layers {
					img.Layers[i].Compression = comp
				}
				in, res := writeImage(t, img, format)
				out := filepath.Join(t.TempDir(), "out.tar")
				mustRun(t, "process", "tar://"+in, "tar://"+out)

				ms := readTar(t, out)
				var names []string
				files := map[string][]byte{}
				for _, m := range ms {
					names = append(names, m.name)
					files[m.name] = m.data
					if m.hdr.Mode != 0o644 || m.hdr.Uid != 0 || m.hdr.Uname != "" || !m.hdr.ModTime.Equal(m.hdr.ModTime.Truncate(0)) || m.hdr.ModTime.Unix() != 0 {
						t.Errorf("%s: header mode %o uid %d uname %q mtime %v, want neutral", m.name, m.hdr.Mode, m.hdr.Uid, m.hdr.Uname, m.hdr.ModTime)
					}
				}
				// Config first, layers in image order, manifest.json last.
				wantNames := []string{res.ConfigDigest.Encoded() + ".json"}
				var m dockerManifest
				if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
					t.Fatalf("manifest.json %q: %v", files["manifest.json"], err)
				}
				wantNames = append(wantNames, m[0].Layers...)
				wantNames = append(wantNames, "manifest.json")
				if !slices.Equal(names, wantNames) {
					t.Errorf("members %q, want %q", names, wantNames)
				}
				if got := digest.FromBytes(files[m[0].Config]); got != res.ConfigDigest {
					t.Errorf("config digest %s, want %s", got, res.ConfigDigest)
				}
				if len(m[0].Layers) != len(res.DiffIDs) {
					t.Fatalf("%d layers, want %d", len(m[0].Layers), len(res.DiffIDs))
				}
				for i, l := range m[0].Layers {
					if got := digest.FromBytes(files[l]); got != res.DiffIDs[i] {
						t.Errorf("layer %d (%s) has diff ID %s, want %s", i, l, got, res.DiffIDs[i])
					}
				}
				if want := []string{"example.com/test/sample:v1"}; !slices.Equal(m[0].RepoTags, want) {
					t.Errorf("RepoTags %q, want %q", m[0].RepoTags, want)
				}
				if !strings.HasPrefix(string(files["manifest.json"]), `[{"Layers": ["`) {
					t.Errorf("manifest.json is not in the original's format: %s", files["manifest.json"])
				}
			})
		}
	}
}

func TestProcessTarToTarIsReproducible(t *testing.T) {
	in, _ := writeImage(t, imagegen.Sample(), imagegen.OCI)
	dir := t.TempDir()
	var sums [][32]byte
	for i := range 2 {
		out := filepath.Join(dir, fmt.Sprintf("out%d.tar", i))
		mustRun(t, "process", "tar://"+in, "tar://"+out)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(b)%10240 != 0 {
			t.Errorf("output is %d bytes, not a whole number of 10240-byte records", len(b))
		}
		sums = append(sums, sha256.Sum256(b))
	}
	if sums[0] != sums[1] {
		t.Fatal("two runs over the same input wrote different bytes")
	}
}

func TestProcessJSONResultOnStdout(t *testing.T) {
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	out := filepath.Join(t.TempDir(), "out.tar")
	stdout := mustRun(t, "-O", "json", "process", "tar://"+in, "tar://"+out)
	var got struct {
		Image  string
		Bytes  int64
		Layers int
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if got.Layers != len(res.DiffIDs) || got.Bytes <= 0 || got.Image != "example.com/test/sample:v1" {
		t.Errorf("result %+v", got)
	}
}

func TestProcessSummaryLine(t *testing.T) {
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	out := filepath.Join(t.TempDir(), "out.tar")
	code, stdout, stderr := run(t, "process", "tar://"+in, "tar://"+out)
	if code != 0 {
		t.Fatal(stderr)
	}
	if stdout != "" {
		t.Errorf("text mode printed results on stdout: %q", stdout)
	}
	if want := fmt.Sprintf(" bytes in %d layers in ", len(res.DiffIDs)); !strings.Contains(stderr, "Processed ") || !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks the summary line %q:\n%s", want, stderr)
	}
}

func TestCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"bogus"}, 2, "bogus"},
		{"missing argument", []string{"process", "tar://x.tar"}, 2, "destination"},
		{"unknown source scheme", []string{"process", "mounts://x", "tar://" + dir + "/o.tar"}, 2, "valid source schemes"},
		{"unknown destination scheme", []string{"process", "tar://x", "ftp://x"}, 2, "ftp"},
		{"missing scheme", []string{"process", "image.tar", "tar://o.tar"}, 2, "scheme"},
		{"unknown option", []string{"process", "tar://x.tar", "dir://" + dir + "/d?bogus=1"}, 2, "unique_names"},
		{"bad boolean", []string{"process", "tar://x.tar", "dir://" + dir + "/d?expand=perhaps"}, 2, "expand"},
		{"unknown filter", []string{"process", "tar://x.tar", "tar://" + dir + "/o.tar", "-f", "frobnicate"}, 2, "normalize-timestamps"},
		{"missing input file", []string{"process", "tar://" + dir + "/none.tar", "tar://" + dir + "/o.tar"}, 1, "no such file"},
		{"oci:// is not a source", []string{"process", "oci://some/dir", "tar://" + dir + "/o.tar"}, 2, "oci-layout://PATH"},
		{"check of a missing file", []string{"check", "tar://" + dir + "/none.tar"}, 1, "no such file"},
		{"bad compression flag", []string{"--compression", "lz4", "process", "tar://x", "tar://y"}, 2, "compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(strings.ToLower(stderr), strings.ToLower(tc.want)) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "o.tar")); err == nil {
				t.Error("an output file was written")
			}
		})
	}
}

func TestHelpListsSchemesAndExitsZero(t *testing.T) {
	code, stdout, _ := run(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"process", "registry://", "dir://", "normalize-timestamps", "unique_names", "fetch-to-tarfile"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestEnvironmentBindsGlobals(t *testing.T) {
	t.Setenv("OCCYSTRAP_PARALLEL", "notanumber")
	code, _, stderr := run(t, "version")
	if code != 2 || !strings.Contains(stderr, "OCCYSTRAP_PARALLEL") && !strings.Contains(stderr, "parallel") {
		t.Fatalf("a bad OCCYSTRAP_PARALLEL gave exit %d: %s", code, stderr)
	}
}

func TestDirUniqueNamesSharesLayers(t *testing.T) {
	one := imagegen.Sample()
	two := imagegen.Sample()
	two.RepoTag = "example.com/test/other:v2"
	two.Layers = two.Layers[:2]
	in1, res1 := writeImage(t, one, imagegen.Legacy)
	in2, res2 := writeImage(t, two, imagegen.OCI)
	out := filepath.Join(t.TempDir(), "shared")
	mustRun(t, "process", "tar://"+in1, "dir://"+out+"?unique_names=true")
	mustRun(t, "process", "tar://"+in2, "dir://"+out+"?unique_names=true&expand=true")

	var catalog map[string]map[string]string
	b, err := os.ReadFile(filepath.Join(out, "catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &catalog); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"example.com/test/sample": {"v1": "manifest-example.com_test_sample-v1.json"},
		"example.com/test/other":  {"v2": "manifest-example.com_test_other-v2.json"},
	}
	if fmt.Sprint(catalog) != fmt.Sprint(want) {
		t.Errorf("catalog.json %v, want %v", catalog, want)
	}
	if strings.HasSuffix(string(b), "\n") || !strings.Contains(string(b), "\n    \"") {
		t.Errorf("catalog.json is not in the original's format (4-space indent, no final newline): %q", b)
	}
	for _, c := range []struct {
		manifest string
		res      imagegen.Result
	}{{"manifest-example.com_test_sample-v1.json", res1}, {"manifest-example.com_test_other-v2.json", res2}} {
		var m []struct {
			Config    string
			ImageName string
			Layers    []string
		}
		b, err := os.ReadFile(filepath.Join(out, c.manifest))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
			t.Fatalf("%s: %v", c.manifest, err)
		}
		for i, l := range m[0].Layers {
			data, err := os.ReadFile(filepath.Join(out, l))
			if err != nil {
				t.Fatalf("%s names %s: %v", c.manifest, l, err)
			}
			if got := digest.FromBytes(data); got != c.res.DiffIDs[i] {
				t.Errorf("%s layer %d: diff ID %s, want %s", c.manifest, i, got, c.res.DiffIDs[i])
			}
		}
		if cfg, err := os.ReadFile(filepath.Join(out, m[0].Config)); err != nil || digest.FromBytes(cfg) != c.res.ConfigDigest {
			t.Errorf("%s: config %s missing or changed (%v)", c.manifest, m[0].Config, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "manifest-example.com_test_other-v2", "etc")); err != nil {
		t.Errorf("expanded tree of the second image missing: %v", err)
	}
	for _, e := range listTree(t, out) {
		if strings.HasPrefix(filepath.Base(e), ".occystrap-") {
			t.Errorf("staging left behind: %s", e)
		}
	}
}
