package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
)

func TestInfoTarText(t *testing.T) {
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(format.String(), func(t *testing.T) {
			in, res := writeImage(t, imagegen.Sample(), format)
			code, stdout, stderr := run(t, "info", "tar://"+in)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			want := []string{
				"Image:         example.com/test/sample:v1\n",
				"Platform:      linux/amd64\n",
				fmt.Sprintf("\nLayers: %d\n\n+---+--", len(res.DiffIDs)),
				"| # | DiffID                       | Created By",
				"Container Config:\n  Entrypoint: ['/app/run.sh']\n  Cmd:        ['--help']\n  WorkingDir: /app\n",
				"  Labels:\n    com.example.layers=4\n    org.opencontainers.image.title=imagegen sample\n",
			}
			for i, d := range res.DiffIDs {
				want = append(want, fmt.Sprintf("| %d | %s... |", i, d.String()[:25]))
			}
			for _, w := range want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			// A tarball has no manifest: no manifest lines (spec 11.1).
			for _, w := range []string{"Media type:", "Config digest:", "Total compressed size:", "Compression"} {
				if strings.Contains(stdout, w) {
					t.Errorf("stdout has %q, which only manifest sources show:\n%s", w, stdout)
				}
			}
			if strings.Contains(stderr, "Image:") {
				t.Errorf("results went to stderr:\n%s", stderr)
			}
		})
	}
}

func TestInfoTarJSON(t *testing.T) {
	img := imagegen.Sample().WithCompression("gzip")
	in, res := writeImage(t, img, imagegen.OCI)
	code, stdout, stderr := run(t, "-O", "json", "info", "tar://"+in)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var got struct {
		Image, Tag string
		OS         string          `json:"os"`
		DiffIDs    []digest.Digest `json:"diff_ids"`
		LayerCount int             `json:"layer_count"`
		Layers     []map[string]any
		Entrypoint []string
		Env        []string
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if got.Image != "example.com/test/sample" || got.Tag != "v1" || got.OS != "linux" {
		t.Errorf("image %q tag %q os %q", got.Image, got.Tag, got.OS)
	}
	if !slices.Equal(got.DiffIDs, res.DiffIDs) || got.LayerCount != len(res.DiffIDs) || len(got.Layers) != len(res.DiffIDs) {
		t.Errorf("diff_ids %v (layer_count %d, %d layers), want %v", got.DiffIDs, got.LayerCount, len(got.Layers), res.DiffIDs)
	}
	for i, l := range got.Layers {
		if l["index"] != float64(i) || l["diff_id"] != res.DiffIDs[i].String() || l["created_by"] == nil {
			t.Errorf("layer %d: %v", i, l)
		}
		if _, ok := l["digest"]; ok {
			t.Errorf("layer %d has a digest key, which only manifest sources give: %v", i, l)
		}
	}
	if !slices.Equal(got.Entrypoint, []string{"/app/run.sh"}) || len(got.Env) != 2 {
		t.Errorf("entrypoint %q env %q", got.Entrypoint, got.Env)
	}
	if strings.Contains(stdout, `"media_type"`) || strings.Contains(stdout, `"config_digest"`) {
		t.Errorf("JSON has manifest keys for a tarball:\n%s", stdout)
	}
	if !strings.HasPrefix(stdout, "{\n  \"image\": ") || !strings.HasSuffix(stdout, "\n}\n") {
		t.Errorf("not indented as json.dumps(indent=2):\n%s", stdout)
	}
}

func TestInfoErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.tar")
	if err := os.WriteFile(garbage, []byte("this is not a tarball at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing file", []string{"info", "tar://" + dir + "/none.tar"}, 1, dir + "/none.tar"},
		{"missing file json", []string{"-O", "json", "info", "tar://" + dir + "/none.tar"}, 1, "none.tar"},
		{"not a tarball", []string{"info", "tar://" + garbage}, 1, "garbage.tar"},
		{"missing argument", []string{"info"}, 2, "source"},
		{"unknown scheme", []string{"info", "ftp://x"}, 2, "ftp"},
		{"destination-only scheme", []string{"info", "mounts://" + dir}, 2, "valid source schemes"},
		{"missing scheme", []string{"info", "image.tar"}, 2, "scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, "Error: ") || !strings.Contains(strings.ToLower(stderr), strings.ToLower(tc.want)) {
				t.Errorf("stderr lacks an Error: line with %q:\n%s", tc.want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout not empty on error: %q", stdout)
			}
		})
	}
}

// TestInfoHostileInputs: info reads only manifest.json and the config, so
// broken layers do not concern it, but every broken piece of metadata is an
// error naming the problem.
func TestInfoHostileInputs(t *testing.T) {
	mustFail := map[string]bool{"config-digest-mismatch": true, "legacy-pre-1.10": true, "not-a-tar": true, "manifest-not-json": true}
	for _, hc := range imagegen.Hostile() {
		if hc.Stage != imagegen.StageInput {
			continue
		}
		t.Run(hc.Name, func(t *testing.T) {
			work, err := os.MkdirTemp("", "occy-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(work)
			in := filepath.Join(work, "in.tar")
			f, err := os.Create(in)
			if err != nil {
				t.Fatal(err)
			}
			if err := hc.Write(f); err != nil {
				t.Fatal(err)
			}
			f.Close()
			code, stdout, stderr := run(t, "info", "tar://"+in)
			switch {
			case code == 0 && !mustFail[hc.Name]:
				if !strings.HasPrefix(stdout, "Image:") {
					t.Errorf("exit 0 without a description:\n%s", stdout)
				}
			case code == 1:
				if !strings.Contains(strings.ToLower(stderr), hc.Want) || stdout != "" {
					t.Errorf("stderr lacks %q (stdout %q):\n%s", hc.Want, stdout, stderr)
				}
			default:
				t.Errorf("exit %d\n%s", code, stderr)
			}
		})
	}
}
