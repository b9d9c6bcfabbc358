package proxy

import (
	"strings"
	"testing"
)

func TestSplitRegistry(t *testing.T) {
	tests := []struct{ in, host, prefix, err string }{
		{"127.0.0.1:5000", "127.0.0.1:5000", "", ""},
		{"ghcr.io/myorg", "ghcr.io", "myorg", ""},
		{"ghcr.io/myorg/team/", "ghcr.io", "myorg/team", ""},
		{"https://ghcr.io", "", "", "without a scheme"},
		{"", "", "", "not a registry"},
		{"user@host", "", "", "not a registry"},
	}
	for _, tt := range tests {
		host, prefix, err := SplitRegistry(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("SplitRegistry(%q): %v, want an error with %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || host != tt.host || prefix != tt.prefix {
			t.Errorf("SplitRegistry(%q) = %q, %q, %v", tt.in, host, prefix, err)
		}
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct {
		path, name, kind, ref string
		ok                    bool
	}{
		{"/v2/app/manifests/v1", "app", "manifests", "v1", true},
		{"/v2/org/team/app/blobs/sha256:abc", "org/team/app", "blobs", "sha256:abc", true},
		{"/v2/app/blobs/uploads/", "", "", "", false},
		{"/v2/app/blobs/uploads/123", "", "", "", false},
		{"/v2/manifests/v1", "", "", "", false},
		{"/v2/", "", "", "", false},
		{"/v2/app/tags/list", "", "", "", false},
		{"/other/app/manifests/v1", "", "", "", false},
	}
	for _, tt := range tests {
		name, kind, ref, ok := splitPath(tt.path)
		if ok != tt.ok || name != tt.name || kind != tt.kind || ref != tt.ref {
			t.Errorf("splitPath(%q) = %q, %q, %q, %v", tt.path, name, kind, ref, ok)
		}
	}
}
