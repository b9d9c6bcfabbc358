package dir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
)

// TestSameNameDifferentLayers: two layers of one image with the same
// element name but different contents must not leave a manifest whose
// layer files do not match the layers it lists.
func TestSameNameDifferentLayers(t *testing.T) {
	var closed []*atomic.Int32
	l0 := mkLayerTar("zero", "0")
	l1 := mkLayerTar("one", "1")
	els := fakeImage("dup:1", &closed, nil, "", l0, l1)
	els[2].Name, els[3].Name = "l", "l"
	dest := filepath.Join(t.TempDir(), "out")
	if err := runPipeline(&fakeInput{els: els}, NewOutput(dest, Options{}, stages.Env{})); err != nil {
		return // refusing is acceptable
	}
	var m []struct{ Layers []string }
	if err := json.Unmarshal([]byte(readString(t, filepath.Join(dest, "manifest.json"))), &m); err != nil {
		t.Fatal(err)
	}
	for i, want := range []digest.Digest{digest.FromBytes(l0), digest.FromBytes(l1)} {
		b, err := os.ReadFile(filepath.Join(dest, m[0].Layers[i]))
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(b); got != want {
			t.Errorf("manifest layer %d (%s) holds %s, want %s", i, m[0].Layers[i], got, want)
		}
	}
}

// TestBadCatalog: an existing destination whose catalog.json is not JSON
// makes the write fail, and leaves the destination as it was.
func TestBadCatalog(t *testing.T) {
	inPath, _ := writeImage(t, imagegen.Repeated(), imagegen.OCI)
	dest := t.TempDir()
	if err := os.WriteFile(filepath.Join(dest, "catalog.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dest)
	err := runPipeline(tarball.NewInput(inPath, stages.Env{}), NewOutput(dest, Options{UniqueNames: true, Expand: true}, stages.Env{}))
	if err == nil || !strings.Contains(err.Error(), "catalog.json") {
		t.Fatalf("error %v, want one naming catalog.json", err)
	}
	after := snapshot(t, dest)
	if len(after) != len(before) {
		t.Errorf("destination changed: %v -> %v", before, after)
	}
	for p, d := range before {
		if after[p] != d {
			t.Errorf("%s changed", p)
		}
	}
}
