package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
)

// listTree returns every path under root, relative to it.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			paths = append(paths, rel)
		}
		return nil
	})
	slices.Sort(paths)
	return paths
}

// TestHostileInputs: every hostile tarball ends in a non-zero exit and a
// message naming the problem, nothing is written outside the destination,
// and no partial destination is left behind.
func TestHostileInputs(t *testing.T) {
	for _, hc := range imagegen.Hostile() {
		t.Run(hc.Name, func(t *testing.T) {
			for _, absolute := range hc.Escapes {
				if filepath.IsAbs(absolute) {
					if _, err := os.Lstat(absolute); err == nil {
						t.Fatalf("%s exists before the test", absolute)
					}
				}
			}
			// A neutral directory name: the message must name the problem
			// itself, not pass because the test's name is in a path.
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
			if err := os.Mkdir(filepath.Join(work, "a"), 0o755); err != nil {
				t.Fatal(err)
			}
			dests := []struct{ uri, path string }{
				{"dir://" + filepath.Join(work, "a", "out") + "?expand=true", filepath.Join(work, "a", "out")},
			}
			if hc.Stage == imagegen.StageInput {
				dests = append(dests,
					struct{ uri, path string }{"tar://" + filepath.Join(work, "a", "out.tar"), filepath.Join(work, "a", "out.tar")},
					struct{ uri, path string }{"dir://" + filepath.Join(work, "a", "plain"), filepath.Join(work, "a", "plain")},
				)
			}
			for _, d := range dests {
				code, _, stderr := run(t, "process", "tar://"+in, d.uri)
				msg := errorLine(stderr, work)
				switch {
				case code == 0 && hc.MayConfine:
					// Confined inside the destination: acceptable.
					os.RemoveAll(d.path)
				case code == 0:
					t.Errorf("%s: exit 0, want failure (%s)", d.uri, hc.Description)
				case !strings.Contains(strings.ToLower(msg), hc.Want):
					t.Errorf("%s: exit %d, but the message lacks %q:\n%s", d.uri, code, hc.Want, msg)
				}
				if _, err := os.Lstat(d.path); err == nil {
					t.Errorf("%s: a partial destination was left behind", d.uri)
				}
			}
			if got, want := listTree(t, work), []string{"a", "in.tar"}; !slices.Equal(got, want) {
				t.Errorf("files outside the destination changed: %q, want %q", got, want)
			}
			for _, absolute := range hc.Escapes {
				if filepath.IsAbs(absolute) {
					if _, err := os.Lstat(absolute); err == nil {
						os.RemoveAll(absolute)
						t.Errorf("%s was created outside the destination", absolute)
					}
				}
			}
		})
	}
}

// errorLine returns the "Error: ..." line of stderr with the work directory
// replaced, so that only what the message itself says is checked.
func errorLine(stderr, work string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "Error: ") {
			return strings.ReplaceAll(l, work, "WORK")
		}
	}
	return ""
}
