package tarball

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
)

// TestOutputSameNameDifferentLayers: two layers whose manifest paths end
// in the same directory name ("a/l/layer.tar" and "b/l/layer.tar") get
// the same element name "l". Their contents differ, so the output must
// either refuse them or keep both: it must not write an image whose
// second layer is the first one's bytes.
func TestOutputSameNameDifferentLayers(t *testing.T) {
	l0 := hostileTar(t, tarMember{name: "zero", data: []byte("0")})
	l1 := hostileTar(t, tarMember{name: "one", data: []byte("1")})
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest.FromBytes(l0).String(), digest.FromBytes(l1).String()}}})
	man, _ := json.Marshal([]manifestEntry{{Config: "c.json", RepoTags: []string{"dup:1"}, Layers: []string{"a/l/layer.tar", "b/l/layer.tar"}}})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.tar")
	if err := os.WriteFile(in, hostileTar(t,
		tarMember{name: "manifest.json", data: man},
		tarMember{name: "c.json", data: cfg},
		tarMember{name: "a/l/layer.tar", data: l0},
		tarMember{name: "b/l/layer.tar", data: l1}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runAll(t, in); err != nil {
		t.Fatalf("the input itself is valid, but reading it failed: %v", err)
	}
	out := filepath.Join(dir, "out.tar")
	if err := runPipeline(NewInput(in, stages.Env{}), NewOutput(out, stages.Env{})); err != nil {
		return // refusing the ambiguous names is acceptable
	}
	if err := runAll(t, out); err != nil {
		t.Errorf("the pipeline succeeded but its output is not a valid image: %v", err)
	}
}
