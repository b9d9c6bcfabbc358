package peers

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// get does GET url with the given Authorization header (none if empty)
// and returns the status, the WWW-Authenticate header and the body.
func get(t *testing.T, u, authorization string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body
}

func bearer(tok string) string { return "Bearer " + tok }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestRegistryAuthModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		opts          RegistryOptions
		anonStatus    int
		challengeWant string // prefix of WWW-Authenticate for anonymous requests
	}{
		{"none", RegistryOptions{}, http.StatusOK, ""},
		{"htpasswd", RegistryOptions{Auth: AuthHtpasswd}, http.StatusUnauthorized, `Basic realm="occystrap-test"`},
		{"token-x5c", RegistryOptions{Auth: AuthToken}, http.StatusUnauthorized, `Bearer realm="`},
		{"token-kid", RegistryOptions{Auth: AuthToken, TokenKeyID: true}, http.StatusUnauthorized, `Bearer realm="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			r := StartTestRegistry(t, tt.opts)
			if !strings.HasPrefix(r.Host, "127.0.0.1:") {
				t.Errorf("Host = %q, want 127.0.0.1:PORT", r.Host)
			}
			status, challenge, _ := get(t, r.URL()+"/v2/", "")
			if status != tt.anonStatus || !strings.HasPrefix(challenge, tt.challengeWant) {
				t.Errorf("anonymous GET /v2/: %d %q, want %d %q...", status, challenge, tt.anonStatus, tt.challengeWant)
			}
			if r.Auth == AuthToken {
				want := `Bearer realm="` + r.Realm + `",service="` + TokenService + `"`
				if challenge != want {
					t.Errorf("challenge %q, want %q", challenge, want)
				}
			}
			for _, path := range []string{"/v2/", "/v2/_catalog"} {
				req, _ := http.NewRequest(http.MethodGet, r.URL()+path, nil)
				if err := r.Authorize(ctx, req, "registry:catalog:*"); err != nil {
					t.Fatal(err)
				}
				status, _, body := get(t, req.URL.String(), req.Header.Get("Authorization"))
				if status != http.StatusOK {
					t.Errorf("authorized GET %s: %d %s", path, status, body)
				}
			}
			if r.Auth == AuthHtpasswd {
				status, _, _ := get(t, r.URL()+"/v2/", "Basic b2NjeTp3cm9uZw==") // occy:wrong
				if status != http.StatusUnauthorized {
					t.Errorf("wrong password: %d, want 401", status)
				}
			}
		})
	}
}

func TestTokenIssuer(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	r := StartTestRegistry(t, RegistryOptions{Auth: AuthToken})

	// Wrong credentials are refused by the issuer.
	if _, err := FetchToken(ctx, r.Realm, TokenService, r.Username, "wrong", "registry:catalog:*"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong password: err = %v, want a 401", err)
	}
	// An unknown service is refused.
	if _, err := FetchToken(ctx, r.Realm, "other", r.Username, r.Password); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("unknown service: err = %v, want a 400", err)
	}
	// An anonymous token is valid but grants nothing.
	anon, err := FetchToken(ctx, r.Realm, TokenService, "", "", "registry:catalog:*", "repository:app:pull")
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := get(t, r.URL()+"/v2/", bearer(anon)); status != http.StatusOK {
		t.Errorf("anonymous token on /v2/: %d %s", status, body)
	}
	if status, challenge, _ := get(t, r.URL()+"/v2/_catalog", bearer(anon)); status != http.StatusUnauthorized || !strings.Contains(challenge, `error="insufficient_scope"`) {
		t.Errorf("anonymous token on /v2/_catalog: %d %q, want 401 insufficient_scope", status, challenge)
	}
	// A token for the wrong scope does not open the catalog; the right one does.
	pull, err := r.Token(ctx, "repository:app:pull")
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _ := get(t, r.URL()+"/v2/_catalog", bearer(pull)); status != http.StatusUnauthorized {
		t.Errorf("repository token on /v2/_catalog: %d, want 401", status)
	}
	cat, err := r.Token(ctx, "registry:catalog:*")
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := get(t, r.URL()+"/v2/_catalog", bearer(cat)); status != http.StatusOK || !strings.Contains(string(body), "repositories") {
		t.Errorf("catalog token on /v2/_catalog: %d %s", status, body)
	}
	// A forged token (signature of another token) is refused.
	parts := strings.Split(cat, ".")
	forged := parts[0] + "." + strings.Split(anon, ".")[1] + "." + parts[2]
	if status, _, _ := get(t, r.URL()+"/v2/", bearer(forged)); status != http.StatusUnauthorized {
		t.Errorf("forged token: %d, want 401", status)
	}

	if n := r.TokensIssued(); n != 3 {
		t.Errorf("TokensIssued = %d, want 3", n)
	}
	reqs := r.TokenRequests()
	if len(reqs) != 5 {
		t.Fatalf("TokenRequests: %d, want 5: %+v", len(reqs), reqs)
	}
	if reqs[2].User != "" || len(reqs[2].Granted) != 0 || len(reqs[2].Scopes) != 2 {
		t.Errorf("anonymous request recorded as %+v", reqs[2])
	}
	if reqs[4].User != r.Username || len(reqs[4].Granted) != 1 || reqs[4].Granted[0] != "registry:catalog:*" {
		t.Errorf("catalog request recorded as %+v", reqs[4])
	}
}

func TestTokenOAuthPasswordGrant(t *testing.T) {
	t.Parallel()
	r := StartTestRegistry(t, RegistryOptions{Auth: AuthToken})
	form := url.Values{"grant_type": {"password"}, "username": {r.Username}, "password": {r.Password},
		"service": {TokenService}, "scope": {"registry:catalog:* repository:app:pull"}, "client_id": {"test"}}
	resp, err := http.PostForm(r.Realm, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST token: %s %v", resp.Status, err)
	}
	if tr.AccessToken == "" || tr.AccessToken != tr.Token || tr.ExpiresIn != int(DefaultTokenTTL/time.Second) {
		t.Errorf("token response %+v", tr)
	}
	if status, _, body := get(t, r.URL()+"/v2/_catalog", bearer(tr.AccessToken)); status != http.StatusOK {
		t.Errorf("catalog with OAuth token: %d %s", status, body)
	}
	if got := r.TokenRequests()[0].Granted; len(got) != 2 {
		t.Errorf("granted %v, want both scopes", got)
	}
}

func TestTokenAnonymousPull(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	r := StartTestRegistry(t, RegistryOptions{Auth: AuthToken, AnonymousPull: true})
	if _, err := FetchToken(ctx, r.Realm, TokenService, "", "", "repository:app:pull,push", "registry:catalog:*"); err != nil {
		t.Fatal(err)
	}
	got := r.TokenRequests()[0].Granted
	if len(got) != 1 || got[0] != "repository:app:pull" {
		t.Errorf("anonymous grant %v, want [repository:app:pull]", got)
	}
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	r := StartTestRegistry(t, RegistryOptions{Auth: AuthToken, TokenTTL: 2 * time.Second})
	start := time.Now()
	short, err := r.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.SetTokenTTL(time.Hour)
	long, err := r.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _ := get(t, r.URL()+"/v2/", bearer(short)); status != http.StatusOK {
		t.Errorf("fresh short token: %d, want 200", status)
	}
	// The token is refused less than a second after its TTL.
	time.Sleep(time.Until(start.Add(3100 * time.Millisecond)))
	if status, _, _ := get(t, r.URL()+"/v2/", bearer(short)); status != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", status)
	}
	if status, _, _ := get(t, r.URL()+"/v2/", bearer(long)); status != http.StatusOK {
		t.Errorf("long token: %d, want 200", status)
	}
}

func TestStartRegistryErrors(t *testing.T) {
	t.Parallel()
	Need(t, RegistryProgram)
	if _, err := StartRegistry(filepath.Join(t.TempDir(), "missing", "dir"), RegistryOptions{Auth: AuthHtpasswd}); err == nil {
		t.Error("StartRegistry in a missing directory succeeded")
	}
	if _, err := StartRegistry(t.TempDir(), RegistryOptions{Auth: AuthMode(9)}); err == nil || !strings.Contains(err.Error(), "unknown auth mode") {
		t.Errorf("bad auth mode: %v", err)
	}
}

// TestStartRegistryPortRace is not parallel: it replaces pickPort.
func TestStartRegistryPortRace(t *testing.T) {
	Need(t, RegistryProgram)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	defer func() { pickPort = freePort }()

	// Losing the race once: StartRegistry tries another port.
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return busyPort, nil
		}
		return freePort()
	}
	r, err := StartRegistry(t.TempDir(), RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if calls != 2 || r.Host == busy.Addr().String() {
		t.Errorf("%d ports tried, registry on %s (busy: %s)", calls, r.Host, busy.Addr())
	}

	// Always losing: the error says why and shows the log.
	pickPort = func() (int, error) { return busyPort, nil }
	_, err = StartRegistry(t.TempDir(), RegistryOptions{Auth: AuthHtpasswd})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "registry.log (tail)") {
		t.Errorf("start on a busy port: %v", err)
	}
}

// writeSample writes imagegen's Sample as a docker-archive and returns its
// path and description.
func writeSample(t *testing.T) (string, imagegen.Result) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sample.tar")
	res, err := imagegen.WriteFile(p, imagegen.Sample(), imagegen.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	return p, res
}

func TestSkopeoPushPull(t *testing.T) {
	t.Parallel()
	Need(t, "skopeo")
	tar, res := writeSample(t)
	tests := []struct {
		name     string
		opts     RegistryOptions
		compress string
		wantMT   string // layer media type in the registry
	}{
		{"none", RegistryOptions{}, "", "application/vnd.docker.image.rootfs.diff.tar.gzip"},
		{"htpasswd", RegistryOptions{Auth: AuthHtpasswd}, "", "application/vnd.docker.image.rootfs.diff.tar.gzip"},
		{"token", RegistryOptions{Auth: AuthToken}, "", "application/vnd.docker.image.rootfs.diff.tar.gzip"},
		{"token-zstd", RegistryOptions{Auth: AuthToken}, "zstd", ocispec.MediaTypeImageLayerZstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			r := StartTestRegistry(t, tt.opts)
			if err := r.SkopeoPush(ctx, "docker-archive:"+tar, "test/sample:v1", SkopeoOptions{CompressFormat: tt.compress}); err != nil {
				t.Fatal(err)
			}
			cfg, err := r.SkopeoInspect(ctx, "test/sample:v1", SkopeoOptions{}, "--config", "--raw")
			if err != nil {
				t.Fatal(err)
			}
			if digest.FromBytes(cfg) != res.ConfigDigest {
				t.Errorf("config in registry is %s, want %s", digest.FromBytes(cfg), res.ConfigDigest)
			}
			raw, err := r.SkopeoInspect(ctx, "test/sample:v1", SkopeoOptions{}, "--raw")
			if err != nil {
				t.Fatal(err)
			}
			var man ocispec.Manifest
			if err := json.Unmarshal(raw, &man); err != nil {
				t.Fatal(err)
			}
			if len(man.Layers) != len(res.DiffIDs) {
				t.Fatalf("manifest has %d layers, want %d", len(man.Layers), len(res.DiffIDs))
			}
			for _, l := range man.Layers {
				if l.MediaType != tt.wantMT {
					t.Errorf("layer %s has media type %s, want %s", l.Digest, l.MediaType, tt.wantMT)
				}
			}
			out := t.TempDir()
			if err := r.SkopeoPull(ctx, "test/sample:v1", "oci:"+filepath.Join(out, "layout")+":v1", SkopeoOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(out, "layout", "blobs", "sha256", res.ConfigDigest.Encoded())); err != nil {
				t.Errorf("pulled OCI layout lacks the config: %v", err)
			}
			if tt.compress == "zstd" {
				return // skopeo 1.9 cannot turn zstd layers back into a docker-archive
			}
			if err := r.SkopeoPull(ctx, "test/sample:v1", "docker-archive:"+filepath.Join(out, "pulled.tar")+":test/sample:v1", SkopeoOptions{}); err != nil {
				t.Fatal(err)
			}
			got, err := Run(ctx, "skopeo", "inspect", "--config", "--raw", "docker-archive:"+filepath.Join(out, "pulled.tar"))
			if err != nil {
				t.Fatal(err)
			}
			if digest.FromString(got) != res.ConfigDigest {
				t.Errorf("pulled docker-archive config is %s, want %s", digest.FromString(got), res.ConfigDigest)
			}
		})
	}
}

func TestMultiPlatformLayout(t *testing.T) {
	t.Parallel()
	Need(t, "skopeo")
	ctx := ctxT(t)
	platforms := []ocispec.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
		{OS: "linux", Architecture: "s390x"},
	}
	dir := filepath.Join(t.TempDir(), "layout")
	l, err := BuildMultiPlatformLayout(dir, platforms)
	if err != nil {
		t.Fatal(err)
	}
	again, err := BuildMultiPlatformLayout(filepath.Join(t.TempDir(), "again"), platforms)
	if err != nil {
		t.Fatal(err)
	}
	if again.IndexDigest != l.IndexDigest {
		t.Errorf("layout is not deterministic: %s then %s", l.IndexDigest, again.IndexDigest)
	}
	if l.Images[0].LayerDigests[0] != l.Images[1].LayerDigests[0] || l.Images[0].DiffIDs[1] == l.Images[1].DiffIDs[1] {
		t.Error("the first layer should be shared and the second differ")
	}
	r := StartTestRegistry(t, RegistryOptions{Auth: AuthToken})
	if err := r.SkopeoPush(ctx, "oci:"+dir, "test/multi:v1", SkopeoOptions{All: true, PreserveDigests: true}); err != nil {
		t.Fatal(err)
	}
	raw, err := r.SkopeoInspect(ctx, "test/multi:v1", SkopeoOptions{}, "--raw")
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(raw) != l.IndexDigest {
		t.Errorf("index in registry is %s, want %s:\n%s", digest.FromBytes(raw), l.IndexDigest, raw)
	}
	for _, p := range platforms {
		want, ok := l.Image(p)
		if !ok {
			t.Fatalf("no image for %v", p)
		}
		flags := []string{"--config", "--raw", "--override-os", p.OS, "--override-arch", p.Architecture}
		if p.Variant != "" {
			flags = append(flags, "--override-variant", p.Variant)
		}
		cfg, err := r.SkopeoInspect(ctx, "test/multi:v1", SkopeoOptions{}, flags...)
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(cfg) != want.ConfigDigest {
			t.Errorf("%s: selected config %s, want %s", platformString(p), digest.FromBytes(cfg), want.ConfigDigest)
		}
		var img ocispec.Image
		if err := json.Unmarshal(cfg, &img); err != nil {
			t.Fatal(err)
		}
		if img.Architecture != p.Architecture || img.Variant != p.Variant || len(img.RootFS.DiffIDs) != 2 || img.RootFS.DiffIDs[1] != want.DiffIDs[1] {
			t.Errorf("%s: config %s", platformString(p), cfg)
		}
	}
	if _, err := BuildMultiPlatformLayout(t.TempDir(), []ocispec.Platform{{OS: "linux"}}); err == nil {
		t.Error("a platform without architecture was accepted")
	}
	if _, err := BuildMultiPlatformLayout(t.TempDir(), []ocispec.Platform{platforms[0], platforms[0]}); err == nil {
		t.Error("a repeated platform was accepted")
	}
}
