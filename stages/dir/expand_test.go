package dir

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
)

// TestExpandPathsAgree expands an image of large files from a tarball of
// uncompressed layers (extracted straight from the input file, regular
// files copied in the kernel) and from one of gzip layers (extracted from
// the verified stream): the trees and layer files must be the same.
func TestExpandPathsAgree(t *testing.T) {
	img := imagegen.Big(24<<20, 3)
	var trees []map[string]string
	for _, c := range []struct {
		compression string
		format      imagegen.Format
	}{{"", imagegen.Legacy}, {"gzip", imagegen.Legacy}, {"", imagegen.OCI}} {
		im := img
		if c.compression != "" {
			im = img.WithCompression(c.compression)
		}
		in, _ := writeImage(t, im, c.format)
		dest := filepath.Join(t.TempDir(), "out")
		if err := runPipeline(tarball.NewInput(in, stages.Env{}), NewOutput(dest, Options{Expand: true}, stages.Env{})); err != nil {
			t.Fatalf("%s %v: %v", c.compression, c.format, err)
		}
		trees = append(trees, contents(t, filepath.Join(dest, "manifest")))
	}
	if len(trees[0]) < 8 {
		t.Fatalf("only %d paths in the tree", len(trees[0]))
	}
	for i := 1; i < len(trees); i++ {
		for p, want := range trees[0] {
			if got := trees[i][p]; got != want {
				t.Errorf("tree %d: %s = %q, want %q", i, p, got, want)
			}
		}
		if len(trees[i]) != len(trees[0]) {
			t.Errorf("tree %d has %d paths, want %d", i, len(trees[i]), len(trees[0]))
		}
	}
}

// corruptLayer flips a byte in the middle of layer i's blob in the
// tarball at path.
func corruptLayer(t *testing.T, path string, res imagegen.Result, i int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("layer %s not found: %v", res.LayerPaths[i], err)
		}
		if hdr.Name != res.LayerPaths[i] {
			continue
		}
		data, _ := io.ReadAll(tr)
		at := bytes.Index(b, data)
		if at < 0 || len(data) < 2 {
			t.Fatal("layer data not located")
		}
		b[at+len(data)/2] ^= 0xff
		break
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExpandCorruptLayer: whichever layer of an image of uncompressed
// layers is corrupt (they are written two at a time, in the background),
// the error is its digest mismatch, and nothing is left behind.
func TestExpandCorruptLayer(t *testing.T) {
	img := imagegen.Big(24<<20, 4)
	for i := range 4 {
		for _, expand := range []bool{true, false} {
			t.Run("layer "+strconv.Itoa(i)+" expand "+strconv.FormatBool(expand), func(t *testing.T) {
				in, res := writeImage(t, img, imagegen.Legacy)
				corruptLayer(t, in, res, i)
				parent := t.TempDir()
				dest := filepath.Join(parent, "out")
				err := runPipeline(tarball.NewInput(in, stages.Env{}), NewOutput(dest, Options{Expand: expand}, stages.Env{}))
				if err == nil {
					t.Fatal("pipeline succeeded, want an error")
				}
				if want := "layer " + strconv.Itoa(i) + " "; !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), want) {
					t.Errorf("error %q: want the digest mismatch of %q", err, want)
				}
				if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a destination was left behind (%v)", err)
				}
				noStaging(t, parent)
			})
		}
	}
}
