package dir

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/stagetest"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/rs/zerolog"
)

// writeDir writes img (in format f) through the tarball input and the dir
// output into dest, and returns the output, whose log goes to log.
func writeDir(t *testing.T, dest string, img imagegen.Image, f imagegen.Format, opts Options, log io.Writer) (*Output, imagegen.Result) {
	t.Helper()
	p, res := writeImage(t, img, f)
	out := NewOutput(dest, opts, stages.Env{Log: zerolog.New(log)})
	if err := runPipeline(tarball.NewInput(p, stages.Env{}), out); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	return out, res
}

func verifiedIn(n int) stages.Verified {
	return stages.Verified{Layers: n, Message: fmt.Sprintf("All %d layers verified in directory", n)}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		img    imagegen.Image
		format imagegen.Format
		opts   Options
	}{
		{"sample legacy", imagegen.Sample(), imagegen.Legacy, Options{}},
		{"sample oci gzip", imagegen.Sample().WithCompression("gzip"), imagegen.OCI, Options{}},
		{"sample unique names", imagegen.Sample(), imagegen.OCI, Options{UniqueNames: true}},
		{"sample expand", imagegen.Sample(), imagegen.Legacy, Options{Expand: true}},
		{"repeated legacy", imagegen.Repeated(), imagegen.Legacy, Options{}},
		{"repeated oci zstd expand", imagegen.Repeated().WithCompression("zstd"), imagegen.OCI, Options{Expand: true, UniqueNames: true}},
		{"no layers", imagegen.Image{RepoTag: "empty:1"}, imagegen.OCI, Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log stagetest.LockedBuffer
			out, _ := writeDir(t, filepath.Join(t.TempDir(), "out"), tt.img, tt.format, tt.opts, &log)
			for _, full := range []bool{false, true} {
				got, err := out.Verify(context.Background(), full)
				if err != nil {
					t.Fatalf("Verify(full=%v): %v", full, err)
				}
				if want := verifiedIn(len(tt.img.Layers)); got != want {
					t.Errorf("Verify(full=%v) = %+v, want %+v", full, got, want)
				}
			}
			if strings.Contains(log.String(), "warn") {
				t.Errorf("warnings logged:\n%s", log.String())
			}
		})
	}
}

// TestVerifySharedDirectory: two images written into one directory with
// unique_names (sharing layers) each verify, the first one still after
// the second was written.
func TestVerifySharedDirectory(t *testing.T) {
	dest := t.TempDir()
	var log stagetest.LockedBuffer
	first, _ := writeDir(t, dest, imagegen.Sample(), imagegen.Legacy, Options{UniqueNames: true}, &log)
	second, _ := writeDir(t, dest, otherImage(), imagegen.Legacy, Options{UniqueNames: true}, &log)
	for _, c := range []struct {
		out *Output
		n   int
	}{{first, len(imagegen.Sample().Layers)}, {second, len(otherImage().Layers)}} {
		for _, full := range []bool{false, true} {
			got, err := c.out.Verify(context.Background(), full)
			if err != nil || got != verifiedIn(c.n) {
				t.Errorf("Verify(full=%v) of %s = %+v, %v; want %+v", full, c.out.manifest, got, err, verifiedIn(c.n))
			}
		}
	}
}

// tarEnd returns where the tar in b ends: after its end-of-archive marker.
func tarEnd(t *testing.T, b []byte) int {
	t.Helper()
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return len(b) - r.Len()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// corrupted is a written directory a test case breaks.
type corrupted struct {
	dir      string
	manifest []dirManifest // manifest.json as written
	layer0   []byte        // layer 0's layer.tar
}

func (c *corrupted) path(p string) string { return filepath.Join(c.dir, filepath.FromSlash(p)) }

func (c *corrupted) writeLayer0(t *testing.T, b []byte) {
	t.Helper()
	if err := os.WriteFile(c.path(c.manifest[0].Layers[0]), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// at returns where s first occurs in layer 0.
func (c *corrupted) at(t *testing.T, s string) int {
	t.Helper()
	i := bytes.Index(c.layer0, []byte(s))
	if i < 0 {
		t.Fatalf("layer 0 lacks %q", s)
	}
	return i
}

// TestVerifyCorrupt: each corruption of a written directory fails the
// verification with stages.ErrVerify and a message naming the problem;
// those only the layer data shows fail only with full.
func TestVerifyCorrupt(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		edit     func(t *testing.T, c *corrupted)
		fullOnly bool // the quick verification passes
		// want are in the message: {layer0}, {layer1} and {config} stand
		// for the paths of layers 0 and 1 and the config's; {n} for the
		// number of layers, {n-1} for one less.
		want []string
		warn string // logged by the quick verification
	}{
		{"layer deleted", Options{}, func(t *testing.T, c *corrupted) { mustRemove(t, c.path(c.manifest[0].Layers[1])) }, false,
			[]string{"layer 1 ({layer1}) is missing"}, ""},
		{"layer directory deleted", Options{}, func(t *testing.T, c *corrupted) {
			mustRemove(t, filepath.Dir(c.path(c.manifest[0].Layers[1])))
		}, false, []string{"layer 1 ({layer1}) is missing"}, ""},
		{"layer truncated", Options{}, func(t *testing.T, c *corrupted) {
			c.writeLayer0(t, c.layer0[:c.at(t, "echo tool")+4])
		}, false, []string{"layer 0 ({layer0}): the file is", "ends in or after member", "it is truncated"}, ""},
		{"layer's end-of-archive marker cut off", Options{}, func(t *testing.T, c *corrupted) {
			c.writeLayer0(t, c.layer0[:tarEnd(t, c.layer0)-1024])
		}, true, []string{"layer 0 ({layer0}): its content", "but the config's diff ID for it is"},
			"layer 0 ({layer0}): the file is"},
		{"layer byte changed", Options{}, func(t *testing.T, c *corrupted) {
			b := bytes.Clone(c.layer0)
			b[c.at(t, "echo tool")] ^= 0x20
			c.writeLayer0(t, b)
		}, true, []string{"layer 0 ({layer0}): its content", "has digest sha256:", "but the config's diff ID for it is"}, ""},
		{"layer compressed", Options{}, func(t *testing.T, c *corrupted) {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(c.layer0)
			zw.Close()
			c.writeLayer0(t, b.Bytes())
		}, false, []string{"layer 0 ({layer0}) is gzip-compressed"}, ""},
		{"layer a directory", Options{}, func(t *testing.T, c *corrupted) {
			p := c.path(c.manifest[0].Layers[0])
			mustRemove(t, p)
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"layer 0 ({layer0}) is not a regular file"}, ""},
		{"layer path outside", Options{}, func(t *testing.T, c *corrupted) {
			c.manifest[0].Layers[0] = "../outside/layer.tar"
			writeJSONFile(t, c.path("manifest.json"), c.manifest)
		}, false, []string{`layer 0 of manifest.json ("../outside/layer.tar") leads outside the directory`}, ""},
		{"layer a symlink outside", Options{}, func(t *testing.T, c *corrupted) {
			outside := filepath.Join(t.TempDir(), "layer.tar")
			if err := os.WriteFile(outside, c.layer0, 0o644); err != nil {
				t.Fatal(err)
			}
			p := c.path(c.manifest[0].Layers[0])
			mustRemove(t, p)
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"layer 0 ({layer0}) leads outside the directory (through .. or a symlink), which is refused"}, ""},
		{"config missing", Options{}, func(t *testing.T, c *corrupted) { mustRemove(t, c.path(c.manifest[0].Config)) }, false,
			[]string{"the config manifest.json names ({config}) is missing"}, ""},
		{"config changed", Options{}, func(t *testing.T, c *corrupted) {
			p := c.path(c.manifest[0].Config)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b[:len(b)-1], 0o644); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"config {config} (", "bytes) has digest sha256:", "not the sha256:"}, ""},
		{"manifest not JSON", Options{}, func(t *testing.T, c *corrupted) {
			if err := os.WriteFile(c.path("manifest.json"), []byte(`[{"Config": `), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"manifest.json: not a JSON list of images"}, ""},
		{"manifest missing", Options{}, func(t *testing.T, c *corrupted) { mustRemove(t, c.path("manifest.json")) }, false,
			[]string{"the manifest (manifest.json) is missing"}, ""},
		{"manifest lists fewer layers", Options{}, func(t *testing.T, c *corrupted) {
			c.manifest[0].Layers = c.manifest[0].Layers[1:]
			writeJSONFile(t, c.path("manifest.json"), c.manifest)
		}, false, []string{"manifest.json: config {config} has {n} diff IDs in rootfs.diff_ids, but the manifest lists {n-1} layers"}, ""},
		{"catalog lost the image", Options{}, func(t *testing.T, c *corrupted) {
			writeJSONFile(t, c.path("catalog.json"), map[string]map[string]string{"other": {"v1": "manifest-other-v1.json"}})
		}, false, []string{"catalog.json lists no image whose manifest is manifest.json"}, ""},
		{"catalog missing", Options{}, func(t *testing.T, c *corrupted) { mustRemove(t, c.path("catalog.json")) }, false,
			[]string{"the catalog (catalog.json) is missing"}, ""},
		{"expanded tree missing", Options{Expand: true}, func(t *testing.T, c *corrupted) { mustRemove(t, c.path("manifest")) }, false,
			[]string{"the expanded tree manifest/ is missing"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log stagetest.LockedBuffer
			dir := filepath.Join(t.TempDir(), "out")
			out, res := writeDir(t, dir, imagegen.Sample(), imagegen.Legacy, tt.opts, &log)
			c := &corrupted{dir: dir}
			readJSONFile(t, c.path("manifest.json"), &c.manifest)
			m := c.manifest[0]
			var err error
			if c.layer0, err = os.ReadFile(c.path(m.Layers[0])); err != nil {
				t.Fatal(err)
			}
			subst := strings.NewReplacer("{layer0}", m.Layers[0], "{layer1}", m.Layers[1], "{config}", m.Config,
				"{n}", strconv.Itoa(len(res.DiffIDs)), "{n-1}", strconv.Itoa(len(res.DiffIDs)-1))
			tt.edit(t, c)
			for _, full := range []bool{false, true} {
				got, err := out.Verify(context.Background(), full)
				if tt.fullOnly && !full {
					if err != nil {
						t.Errorf("Verify(full=false): %v, want success (only the layer data shows this)", err)
					}
					if want := subst.Replace(tt.warn); !strings.Contains(log.String(), want) {
						t.Errorf("Verify(full=false) logged\n%s\nwithout %q", log.String(), want)
					}
					continue
				}
				if err == nil {
					t.Fatalf("Verify(full=%v) = %+v, want an error", full, got)
				}
				t.Logf("full=%v: %v", full, err)
				if !errors.Is(err, stages.ErrVerify) {
					t.Errorf("Verify(full=%v): %v does not wrap ErrVerify", full, err)
				}
				for _, want := range tt.want {
					if want = subst.Replace(want); !strings.Contains(err.Error(), want) {
						t.Errorf("Verify(full=%v): %v\nlacks %q", full, err, want)
					}
				}
				if !strings.Contains(err.Error(), dir) {
					t.Errorf("Verify(full=%v): %v does not name the directory", full, err)
				}
			}
		})
	}
}

// TestVerifyNotRun: Verify fails before any successful Run, including
// after a failed one.
func TestVerifyNotRun(t *testing.T) {
	out := NewOutput(filepath.Join(t.TempDir(), "out"), Options{}, stages.Env{})
	if _, err := out.Verify(context.Background(), false); !errors.Is(err, stages.ErrVerify) || !strings.Contains(err.Error(), "not run successfully") {
		t.Errorf("Verify before Run: %v, want an ErrVerify saying nothing was written", err)
	}
	if err := runPipeline(tarball.NewInput(filepath.Join(t.TempDir(), "missing.tar"), stages.Env{}), out); err == nil {
		t.Fatal("a pipeline from a missing tarball succeeded")
	}
	if _, err := out.Verify(context.Background(), true); !errors.Is(err, stages.ErrVerify) || !strings.Contains(err.Error(), "not run successfully") {
		t.Errorf("Verify after a failed Run: %v, want an ErrVerify saying nothing was written", err)
	}
}

// TestVerifyCancelled: a cancelled verification says so, and is not a
// verification failure.
func TestVerifyCancelled(t *testing.T) {
	var log stagetest.LockedBuffer
	out, _ := writeDir(t, filepath.Join(t.TempDir(), "out"), imagegen.Sample(), imagegen.Legacy, Options{}, &log)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, full := range []bool{false, true} {
		if _, err := out.Verify(ctx, full); !errors.Is(err, context.Canceled) || errors.Is(err, stages.ErrVerify) {
			t.Errorf("Verify(full=%v) with a cancelled context: %v, want context.Canceled and not ErrVerify", full, err)
		}
	}
}
