package imagegen

import (
	"bytes"
	"strings"
	"testing"
)

func TestHostile(t *testing.T) {
	seen := map[string]bool{}
	required := []string{
		"path-traversal", "absolute-path", "symlink-escape", "symlink-escape-later-layer",
		"hardlink-escape", "truncated-tar", "missing-layer", "diffid-mismatch",
		"config-digest-mismatch", "legacy-pre-1.10", "not-a-tar", "manifest-not-json",
		"truncated-outer-tar",
	}
	for _, c := range Hostile() {
		t.Run(c.Name, func(t *testing.T) {
			if seen[c.Name] {
				t.Fatalf("duplicate case %q", c.Name)
			}
			seen[c.Name] = true
			if c.Want == "" || c.Want != strings.ToLower(c.Want) || c.Description == "" {
				t.Errorf("Want %q, Description %q", c.Want, c.Description)
			}
			var b1, b2 bytes.Buffer
			if err := c.Write(&b1); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if err := c.Write(&b2); err != nil || !bytes.Equal(b1.Bytes(), b2.Bytes()) {
				t.Errorf("second write differs (err %v)", err)
			}
			a, err := readImage(b1.Bytes())
			switch c.Stage {
			case StageInput:
				if c.MayConfine || len(c.Escapes) > 0 {
					t.Error("input case with extract-only fields")
				}
				if err == nil {
					t.Fatal("input case reads back as a valid image")
				}
				if !strings.Contains(strings.ToLower(err.Error()), c.Want) {
					t.Errorf("reference reader error %q lacks %q", err, c.Want)
				}
			case StageExtract:
				if err != nil {
					t.Fatalf("extract case is not a valid image tarball: %v", err)
				}
				checkHostileLayers(t, c, a)
			default:
				t.Errorf("stage %q", c.Stage)
			}
		})
	}
	for _, name := range required {
		if !seen[name] {
			t.Errorf("missing hostile case %q", name)
		}
	}
}

// checkHostileLayers checks that the hostile part really is in the layers.
func checkHostileLayers(t *testing.T, c HostileCase, a *archive) {
	t.Helper()
	if len(a.layers) < 2 {
		t.Fatalf("%d layers", len(a.layers))
	}
	var names []string
	var lastErr error
	for _, l := range a.layers[1:] {
		hs, err := layerEntries(l)
		if err != nil {
			lastErr = err
		}
		for _, h := range hs {
			names = append(names, h.Name+" -> "+h.Linkname)
		}
	}
	all := strings.Join(names, "\n")
	if c.Want == "truncated" {
		if lastErr == nil || !strings.Contains(lastErr.Error(), "truncated") {
			t.Errorf("layer error %v, want truncated", lastErr)
		}
		return
	}
	if lastErr != nil {
		t.Errorf("layer does not read back: %v", lastErr)
	}
	hostile := strings.Contains(all, "..") || strings.Contains(all, "\n/") || strings.HasPrefix(all, "/") || strings.Contains(all, "-> /")
	if !hostile {
		t.Errorf("no hostile entry in layers:\n%s", all)
	}
}
