package cli

import (
	"path/filepath"
	"testing"

	"github.com/occystrap/occystrap/uri"
)

// TestFileURI: the URIs legacy commands build parse back to the path they
// were given (or the same path with ./ in front), for both roles.
func TestFileURI(t *testing.T) {
	for _, p := range []string{
		"/abs/out.tar", "rel.tar", "sub/dir", "./here", "../up/x", ".", "..",
		"localhost", "localhost/x", "a?b#c%d", "/a?b", "with space",
	} {
		for _, role := range []uri.Role{uri.Source, uri.Dest} {
			u, err := uri.Parse(fileURI("dir", p), role)
			if err != nil {
				t.Errorf("%q (%s): %v", p, role, err)
				continue
			}
			if filepath.Clean(u.Path) != filepath.Clean(p) {
				t.Errorf("%q (%s): %s parses to path %q", p, role, fileURI("dir", p), u.Path)
			}
		}
	}
}
