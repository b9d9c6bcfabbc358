package cli

import "testing"

// TestProxyArguments: --listen and --upstream are read as the original
// read them.
func TestProxyArguments(t *testing.T) {
	listens := []struct{ in, want, err string }{
		{"127.0.0.1:5050", "127.0.0.1:5050", ""},
		{"0.0.0.0", "0.0.0.0:5050", ""},
		{"localhost:8080", "localhost:8080", ""},
		{"[::1]:5000", "[::1]:5000", ""},
		{":6000", ":6000", ""},
		{"host:port", "", "invalid port: port"},
		{"host:99999", "", "invalid port: 99999"},
	}
	for _, tt := range listens {
		got, err := listenAddress(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("listenAddress(%q): %v, want error %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("listenAddress(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	upstreams := []struct{ in, host, user, pass string }{
		{"registry-1.docker.io", "registry-1.docker.io", "", ""},
		{"me:secret@quay.io", "quay.io", "me", "secret"},
		{"me:p@ss:w@rd@127.0.0.1:5000", "127.0.0.1:5000", "me", "p@ss:w@rd"},
		{"token@ghcr.io", "ghcr.io", "token", ""},
	}
	for _, tt := range upstreams {
		host, user, pass := splitUpstream(tt.in)
		if host != tt.host || user != tt.user || pass != tt.pass {
			t.Errorf("splitUpstream(%q) = %q, %q, %q; want %q, %q, %q", tt.in, host, user, pass, tt.host, tt.user, tt.pass)
		}
	}
}
