package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"github.com/opencontainers/go-digest"
)

// checkReport is the JSON document `check -O json` prints.
type checkReport struct {
	Image    string `json:"image"`
	Tag      string `json:"tag"`
	Mode     string `json:"mode"`
	Errors   int    `json:"errors"`
	Warnings int    `json:"warnings"`
	Results  []struct {
		Severity string `json:"severity"`
		Check    string `json:"check"`
		Message  string `json:"message"`
		Layer    *int   `json:"layer"`
	} `json:"results"`
}

func (r checkReport) has(check, severity string) bool {
	for _, res := range r.Results {
		if res.Check == check && res.Severity == severity {
			return true
		}
	}
	return false
}

func (r checkReport) String() string {
	var b strings.Builder
	for _, res := range r.Results {
		fmt.Fprintf(&b, "  %s [%s] %s\n", res.Severity, res.Check, res.Message)
	}
	return b.String()
}

// runCheck runs `-O json check [--fast] SOURCE` and parses the report.
func runCheck(t *testing.T, fast bool, source string, global ...string) (int, checkReport, string) {
	t.Helper()
	args := append(append([]string{}, global...), "-O", "json", "check")
	if fast {
		args = append(args, "--fast")
	}
	code, stdout, stderr := run(t, append(args, source)...)
	var rep checkReport
	if stdout != "" {
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s\nstderr:\n%s", err, stdout, stderr)
		}
	}
	return code, rep, stderr
}

// TestCheckCleanImages: the images the other tests produce pass, in both
// layouts and every layer compression, fast and full.
func TestCheckCleanImages(t *testing.T) {
	for _, name := range []string{"sample", "repeated"} {
		for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
			for _, comp := range []string{"", "gzip", "zstd"} {
				t.Run(fmt.Sprintf("%s/%s/%s", name, format, comp), func(t *testing.T) {
					img := imagegen.Sample()
					if name == "repeated" {
						img = imagegen.Repeated()
					}
					in, res := writeImage(t, img.WithCompression(comp), format)
					for _, fast := range []bool{true, false} {
						code, rep, stderr := runCheck(t, fast, "tar://"+in)
						if code != 0 || rep.Errors != 0 {
							t.Fatalf("fast=%v: exit %d, %d errors\n%s\n%s", fast, code, rep.Errors, rep, stderr)
						}
						wantMode := map[bool]string{true: "fast", false: "full"}[fast]
						if rep.Mode != wantMode || rep.Image == "" || rep.Tag == "" {
							t.Errorf("mode %q image %q tag %q", rep.Mode, rep.Image, rep.Tag)
						}
						if got := rep.has("zstd-compat", "warning"); got != (comp == "zstd") {
							t.Errorf("fast=%v: zstd-compat warning %v for compression %q\n%s", fast, got, comp, rep)
						}
						if !rep.has("layer-count", "info") || !rep.has("history-count", "info") {
							t.Errorf("fast=%v: no layer-count/history-count info\n%s", fast, rep)
						}
						if !fast {
							n := 0
							for _, r := range rep.Results {
								if r.Check == "diff-id" && r.Severity == "info" {
									n++
								}
							}
							if n != len(res.DiffIDs) {
								t.Errorf("%d diff-id verified results, want %d\n%s", n, len(res.DiffIDs), rep)
							}
						} else {
							for _, r := range rep.Results {
								if r.Check == "diff-id" {
									t.Errorf("--fast read layers: %s", r.Message)
								}
							}
						}
					}
				})
			}
		}
	}
}

// TestCheckText: the original's text layout.
func TestCheckText(t *testing.T) {
	in, _ := writeImage(t, imagegen.Sample().WithCompression("zstd"), imagegen.OCI)
	code, stdout, stderr := run(t, "check", "tar://"+in)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, w := range []string{
		"Warnings:\n  [zstd-compat] 4 layer(s) use zstd compression; Docker Engine < 20.10 and containerd < 1.5 cannot pull this image\n",
		"Info:\n  [schema-version] Manifest schemaVersion is 2\n  [rootfs-type] Config rootfs.type is \"layers\"\n",
		"  [diff-id] Layer 0 diff_id verified\n",
		"\nCheck complete (full): 0 error(s), ",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stdout, "Errors:") || strings.Contains(stderr, "Check complete") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	code, stdout, _ = run(t, "check", "--fast", "tar://"+in)
	if code != 0 || !strings.HasSuffix(stdout, "Check complete (fast (metadata only)): 0 error(s), 1 warning(s)\n") {
		t.Errorf("exit %d\n%s", code, stdout)
	}
}

// TestCheckHostile: every hostile image is reported with the right check
// id and exit 1; --fast catches the metadata ones; tarballs that cannot be
// read at all are input errors.
func TestCheckHostile(t *testing.T) {
	want := map[string]struct {
		check string
		fast  bool // --fast finds it too
	}{
		"path-traversal":             {"path-traversal", false},
		"path-traversal-inner":       {"path-traversal", false},
		"absolute-path":              {"absolute-path", false},
		"symlink-escape":             {"link-escape", false},
		"symlink-escape-later-layer": {"", false}, // a warning only (symlink-parent)
		"hardlink-escape":            {"link-escape", false},
		"whiteout-traversal":         {"path-traversal", false},
		"truncated-layer":            {"tar-format", false},
		"missing-layer":              {"blob-missing", true},
		"diffid-mismatch":            {"diff-id", false},
		"config-digest-mismatch":     {"config-digest", true},
	}
	for _, c := range imagegen.Hostile() {
		t.Run(c.Name, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "in.tar")
			f, err := os.Create(in)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Write(f); err != nil {
				t.Fatal(err)
			}
			f.Close()
			w, ok := want[c.Name]
			if !ok {
				// Not a tarball we can read: an input error.
				code, stdout, stderr := run(t, "check", "tar://"+in)
				if code != 1 || stdout != "" || !strings.Contains(strings.ToLower(stderr), "error: ") || !strings.Contains(strings.ToLower(stderr), c.Want) {
					t.Errorf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
				}
				return
			}
			code, rep, stderr := runCheck(t, false, "tar://"+in)
			if w.check == "" {
				if code != 0 || !rep.has("symlink-parent", "warning") {
					t.Errorf("exit %d\n%s\n%s", code, rep, stderr)
				}
				return
			}
			if code != 1 || !rep.has(w.check, "error") {
				t.Errorf("exit %d, want 1 with a %s error\n%s\n%s", code, w.check, rep, stderr)
			}
			code, rep, stderr = runCheck(t, true, "tar://"+in)
			if w.fast && (code != 1 || !rep.has(w.check, "error")) {
				t.Errorf("--fast: exit %d, want 1 with a %s error\n%s\n%s", code, w.check, rep, stderr)
			}
			if !w.fast && code != 0 {
				t.Errorf("--fast: exit %d for a layer problem\n%s\n%s", code, rep, stderr)
			}
		})
	}
}

// rewriteMembers rewrites the tarball at p, passing every member through fn.
func rewriteMembers(t *testing.T, p string, fn func(name string, data []byte) (string, []byte)) {
	t.Helper()
	ms := readTar(t, p)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		name, data := fn(m.name, m.data)
		h := *m.hdr
		h.Name = name
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editConfig replaces a legacy tarball's config with edit(config), under
// its new digest name, so that only what edit broke is wrong.
func editConfig(t *testing.T, p string, res imagegen.Result, edit func(map[string]any)) {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(res.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	newName := digest.FromBytes(b).Encoded() + ".json"
	rewriteMembers(t, p, func(name string, data []byte) (string, []byte) {
		switch name {
		case res.ConfigPath:
			return newName, b
		case "manifest.json":
			return name, bytes.ReplaceAll(data, []byte(res.ConfigPath), []byte(newName))
		}
		return name, data
	})
}

// rawLayer returns a layer tar made of headers (regular files get data
// "x").
func rawLayer(t *testing.T, hdrs ...*tar.Header) imagegen.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, "x")
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return imagegen.Layer{Raw: b.Bytes()}
}

// TestCheckBuiltProblems: problems imagegen has no case for, built here.
func TestCheckBuiltProblems(t *testing.T) {
	base := imagegen.Layer{Entries: []imagegen.Entry{{Path: "etc", Type: imagegen.Dir}, {Path: "etc/a", Data: []byte("a\n")}}}
	image := func(layers ...imagegen.Layer) imagegen.Image {
		return imagegen.Image{RepoTag: "built:v1", Layers: append([]imagegen.Layer{base}, layers...)}
	}
	cases := []struct {
		name     string
		build    func(t *testing.T) string
		check    string
		severity string
		fast     bool
	}{
		{"bad-history-count", func(t *testing.T) string {
			in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
			editConfig(t, in, res, func(c map[string]any) {
				h := c["history"].([]any)
				c["history"] = h[:len(h)-1]
			})
			return in
		}, "history-count", "error", true},
		{"layer-count", func(t *testing.T) string {
			in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
			editConfig(t, in, res, func(c map[string]any) {
				r := c["rootfs"].(map[string]any)
				ids := r["diff_ids"].([]any)
				r["diff_ids"] = ids[:len(ids)-1]
			})
			return in
		}, "layer-count", "error", true},
		{"rootfs-type", func(t *testing.T) string {
			in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
			editConfig(t, in, res, func(c map[string]any) { c["rootfs"].(map[string]any)["type"] = "other" })
			return in
		}, "rootfs-type", "error", true},
		{"args-escaped", func(t *testing.T) string {
			in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
			editConfig(t, in, res, func(c map[string]any) { c["config"].(map[string]any)["ArgsEscaped"] = true })
			return in
		}, "args-escaped", "warning", true},
		{"wrong-media-type", func(t *testing.T) string {
			in, res := writeImage(t, imagegen.Sample(), imagegen.OCI)
			name := "blobs/sha256/" + res.ManifestDigest.Encoded()
			rewriteMembers(t, in, func(n string, data []byte) (string, []byte) {
				if n == name {
					data = bytes.Replace(data, []byte(`layer.v1.tar"`), []byte(`layer.v1.tar+gzip"`), 1)
				}
				return n, data
			})
			return in
		}, "compression-mismatch", "error", true},
		{"empty-whiteout", func(t *testing.T) string {
			in, _ := writeImage(t, image(rawLayer(t, &tar.Header{Name: "etc/.wh.", Typeflag: tar.TypeReg})), imagegen.Legacy)
			return in
		}, "whiteout", "error", false},
		{"whiteout-same-layer", func(t *testing.T) string {
			in, _ := writeImage(t, image(rawLayer(t,
				&tar.Header{Name: "etc/b", Typeflag: tar.TypeReg},
				&tar.Header{Name: "etc/.wh.b", Typeflag: tar.TypeReg})), imagegen.Legacy)
			return in
		}, "whiteout-same-layer", "error", false},
		{"negative-mtime", func(t *testing.T) string {
			in, _ := writeImage(t, image(rawLayer(t, &tar.Header{Name: "old", Typeflag: tar.TypeReg, ModTime: time.Unix(-3600, 0), Format: tar.FormatPAX})), imagegen.Legacy)
			return in
		}, "tar-timestamp", "error", false},
		{"setuid-world-writable", func(t *testing.T) string {
			in, _ := writeImage(t, image(rawLayer(t, &tar.Header{Name: "bad", Typeflag: tar.TypeReg, Mode: 0o4777})), imagegen.Legacy)
			return in
		}, "tar-permissions", "warning", false},
		{"duplicate-entry", func(t *testing.T) string {
			in, _ := writeImage(t, image(rawLayer(t,
				&tar.Header{Name: "twice", Typeflag: tar.TypeReg},
				&tar.Header{Name: "./twice", Typeflag: tar.TypeReg})), imagegen.Legacy)
			return in
		}, "duplicate-entry", "warning", false},
		{"duplicate-file", func(t *testing.T) string {
			in, _ := writeImage(t, image(rawLayer(t, &tar.Header{Name: "etc/a", Typeflag: tar.TypeReg})), imagegen.Legacy)
			return in
		}, "duplicate-file", "warning", false},
		{"zstd-in-oci", func(t *testing.T) string {
			in, _ := writeImage(t, image().WithCompression("zstd"), imagegen.Legacy)
			return in
		}, "zstd-compat", "warning", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.build(t)
			wantCode := 0
			if c.severity == "error" {
				wantCode = 1
			}
			for _, fast := range []bool{false, true} {
				if fast && !c.fast {
					continue
				}
				code, rep, stderr := runCheck(t, fast, "tar://"+in)
				if code != wantCode || !rep.has(c.check, c.severity) {
					t.Errorf("fast=%v: exit %d, want %d with a %s %s\n%s\n%s", fast, code, wantCode, c.check, c.severity, rep, stderr)
				}
				if c.severity == "warning" && rep.Errors != 0 {
					t.Errorf("fast=%v: unexpected errors\n%s", fast, rep)
				}
			}
		})
	}
}

// TestCheckRegistry: an image pushed with our own CLI passes check from
// the registry, fast and full; a zstd push gets the zstd-compat warning.
func TestCheckRegistry(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, res := writeImage(t, imagegen.Sample(), imagegen.OCI)
	for _, comp := range []string{"gzip", "zstd"} {
		dest := fmt.Sprintf("registry://%s/check/%s:v1", r.Host, comp)
		mustRun(t, "--compression", comp, "process", "tar://"+in, dest)
		for _, fast := range []bool{true, false} {
			code, rep, stderr := runCheck(t, fast, dest)
			if code != 0 || rep.Errors != 0 {
				t.Fatalf("%s fast=%v: exit %d\n%s\n%s", comp, fast, code, rep, stderr)
			}
			for _, id := range []string{"schema-version", "layer-count", "config-descriptor", "history-count"} {
				if !rep.has(id, "info") {
					t.Errorf("%s fast=%v: no %s info\n%s", comp, fast, id, rep)
				}
			}
			if !rep.has("oci-media-type", "info") && !rep.has("docker-media-type", "info") {
				t.Errorf("%s fast=%v: no media type info\n%s", comp, fast, rep)
			}
			if got := rep.has("zstd-compat", "warning"); got != (comp == "zstd") {
				t.Errorf("%s fast=%v: zstd-compat %v\n%s", comp, fast, got, rep)
			}
			if !fast {
				for _, id := range []string{"config-digest", "config-size", "diff-id"} {
					if !rep.has(id, "info") {
						t.Errorf("%s: no %s info\n%s", comp, id, rep)
					}
				}
				n := 0
				for _, r := range rep.Results {
					if r.Check == "diff-id" {
						n++
					}
				}
				if n != len(res.DiffIDs) {
					t.Errorf("%s: %d diff-id results for %d layers\n%s", comp, n, len(res.DiffIDs), rep)
				}
			}
		}
	}
}

// TestCheckDocker: an image loaded into a Docker Engine passes check from
// docker://, fast and full.
func TestCheckDocker(t *testing.T) {
	d := startEngine(t)
	img := imagegen.Sample()
	img.RepoTag = "example.com/test/check:v1"
	in, res := writeImage(t, img, imagegen.Legacy)
	if _, err := d.Docker(ctxMinutes(t, 3), "load", "-i", in); err != nil {
		t.Fatal(err)
	}
	src := dockerURI(d, img.RepoTag)
	for _, fast := range []bool{true, false} {
		code, rep, stderr := runCheck(t, fast, src)
		if code != 0 || rep.Errors != 0 {
			t.Fatalf("fast=%v: exit %d\n%s\n%s", fast, code, rep, stderr)
		}
		if !rep.has("history-count", "info") {
			t.Errorf("fast=%v: no history-count info\n%s", fast, rep)
		}
		if !fast {
			n := 0
			for _, r := range rep.Results {
				if r.Check == "diff-id" && r.Severity == "info" {
					n++
				}
			}
			if n != len(res.DiffIDs) {
				t.Errorf("%d diff-id verified for %d layers\n%s", n, len(res.DiffIDs), rep)
			}
		}
	}
}

// TestCheckRegistryBrokenBlobs: a layer blob corrupted in the registry's
// storage is a layer-digest error; a deleted one is blob-missing, which
// --fast finds too (a HEAD per blob).
func TestCheckRegistryBrokenBlobs(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, _ := writeImage(t, imagegen.Sample(), imagegen.OCI)
	for _, tc := range []struct{ name, check string }{{"corrupt", "layer-digest"}, {"deleted", "blob-missing"}} {
		t.Run(tc.name, func(t *testing.T) {
			dest := fmt.Sprintf("registry://%s/broken/%s:v1", r.Host, tc.name)
			mustRun(t, "process", "tar://"+in, dest)
			// The manifest's second layer, in the registry's storage.
			code, rep, stderr := runCheck(t, true, dest)
			if code != 0 {
				t.Fatalf("--fast before: exit %d\n%s\n%s", code, rep, stderr)
			}
			out := mustRun(t, "-O", "json", "info", dest)
			var inf struct {
				Layers []struct{ Digest digest.Digest }
			}
			if err := json.Unmarshal([]byte(out), &inf); err != nil || len(inf.Layers) < 2 {
				t.Fatalf("info: %v\n%s", err, out)
			}
			d := inf.Layers[1].Digest
			layer := filepath.Join(r.Dir, "storage", "docker", "registry", "v2", "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data")
			if tc.name == "corrupt" {
				b, err := os.ReadFile(layer)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				if err := os.WriteFile(layer, b, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(layer); err != nil {
				t.Fatal(err)
			}
			if tc.name == "deleted" {
				code, rep, stderr = runCheck(t, true, dest)
				if code != 1 || !rep.has(tc.check, "error") {
					t.Errorf("--fast: exit %d, want 1 with a %s error\n%s\n%s", code, tc.check, rep, stderr)
				}
			}
			code, rep, stderr = runCheck(t, false, dest)
			if code != 1 || !rep.has(tc.check, "error") {
				t.Errorf("exit %d, want 1 with a %s error\n%s\n%s", code, tc.check, rep, stderr)
			}
			if rep.has("tar-format", "error") {
				t.Errorf("a corrupt blob is reported as a bad tar too\n%s", rep)
			}
		})
	}
}

// TestCheckRegistryWrongMediaType: a manifest that calls a gzip layer an
// uncompressed tar is a compression-mismatch error in a full check, and
// the layer's other checks still run.
func TestCheckRegistryWrongMediaType(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, res := writeImage(t, imagegen.Sample(), imagegen.OCI)
	mustRun(t, "--compression", "gzip", "process", "tar://"+in, fmt.Sprintf("registry://%s/mt/app:v1", r.Host))
	const oci = "application/vnd.oci.image.manifest.v1+json"
	const docker = "application/vnd.docker.distribution.manifest.v2+json"
	req, _ := http.NewRequest(http.MethodGet, r.URL()+"/v2/mt/app/manifests/v1", nil)
	req.Header.Set("Accept", oci+", "+docker)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mt := resp.Header.Get("Content-Type")
	var man map[string]any
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	layers := man["layers"].([]any)
	l0 := layers[0].(map[string]any)
	if strings.HasPrefix(mt, docker) {
		l0["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar"
	} else {
		l0["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
	}
	edited, _ := json.Marshal(man)
	req, _ = http.NewRequest(http.MethodPut, r.URL()+"/v2/mt/app/manifests/bad", bytes.NewReader(edited))
	req.Header.Set("Content-Type", mt)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest: %s", resp.Status)
	}
	code, rep, stderr := runCheck(t, false, fmt.Sprintf("registry://%s/mt/app:bad", r.Host))
	if code != 1 || !rep.has("compression-mismatch", "error") {
		t.Fatalf("exit %d, want 1 with compression-mismatch\n%s\n%s", code, rep, stderr)
	}
	n := 0
	for _, res := range rep.Results {
		if res.Check == "diff-id" && res.Severity == "info" {
			n++
		}
	}
	if n != len(res.DiffIDs) {
		t.Errorf("%d layers verified, want %d\n%s", n, len(res.DiffIDs), rep)
	}
}

// TestCheckOutputsOfProcess: what process writes in each image format we
// can read back (tarball, OCI layout, OCI archive, after filters) passes
// check with no errors, fast and full.
func TestCheckOutputsOfProcess(t *testing.T) {
	in, _ := writeImage(t, filterImage(time.Unix(1_600_000_000, 0)).WithCompression("gzip"), imagegen.OCI)
	work := t.TempDir()
	for _, tc := range []struct {
		dest    string
		filters []string
	}{
		{"tar://" + filepath.Join(work, "plain.tar"), nil},
		{"tar://" + filepath.Join(work, "norm.tar"), []string{"-f", "normalize-timestamps", "-f", "exclude:pattern=usr/share"}},
		{"oci-layout://" + filepath.Join(work, "layout") + "?tag=v1", nil},
		{"oci-archive://" + filepath.Join(work, "archive.tar") + "?tag=v1", nil},
	} {
		t.Run(tc.dest[:strings.Index(tc.dest, ":")], func(t *testing.T) {
			mustRun(t, append([]string{"process", "tar://" + in, tc.dest}, tc.filters...)...)
			for _, fast := range []bool{true, false} {
				code, rep, stderr := runCheck(t, fast, tc.dest)
				if code != 0 || rep.Errors != 0 {
					t.Errorf("check (fast=%v) of %s: exit %d, %d errors\n%s%s", fast, tc.dest, code, rep.Errors, rep, stderr)
				}
			}
		})
	}
}
