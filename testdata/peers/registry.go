package peers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryProgram is the distribution registry binary StartRegistry runs
// (Debian's docker-registry package, distribution 2.8.x).
const RegistryProgram = "docker-registry"

// AuthMode selects how a Registry authenticates its clients.
type AuthMode int

const (
	// AuthNone lets anyone pull and push.
	AuthNone AuthMode = iota
	// AuthHtpasswd asks for HTTP Basic credentials (an htpasswd file
	// with one bcrypt entry) on every request.
	AuthHtpasswd
	// AuthToken answers 401 with a Bearer challenge naming an in-process
	// token issuer (see RegistryOptions and Registry.Token): the OAuth2
	// bearer-token flow of Docker Hub and most hosted registries.
	AuthToken
)

// String returns "none", "htpasswd" or "token".
func (m AuthMode) String() string {
	switch m {
	case AuthNone:
		return "none"
	case AuthHtpasswd:
		return "htpasswd"
	case AuthToken:
		return "token"
	}
	return fmt.Sprintf("AuthMode(%d)", int(m))
}

// Defaults for RegistryOptions.
const (
	// DefaultUsername is the user a registry with authentication accepts
	// when RegistryOptions.Username is empty.
	DefaultUsername = "occy"
	// DefaultPassword is the password of DefaultUsername.
	DefaultPassword = "strap-s3cret"
	// DefaultTokenTTL is the token lifetime when RegistryOptions.TokenTTL
	// is zero.
	DefaultTokenTTL = 5 * time.Minute
	// TokenService is the service name in the registry's Bearer challenge
	// and the audience of its tokens.
	TokenService = "occystrap-test-registry"
	// TokenIssuerName is the issuer claim of the tokens.
	TokenIssuerName = "occystrap-test-issuer"
)

// RegistryOptions configures StartRegistry. The zero value is a registry
// without authentication.
type RegistryOptions struct {
	// Auth selects the authentication mode.
	Auth AuthMode
	// Username and Password are the only credentials accepted, in the
	// htpasswd and token modes; empty means DefaultUsername and
	// DefaultPassword.
	Username, Password string
	// TokenTTL is how long a token stays valid (AuthToken): the issuer
	// answers expires_in = TokenTTL (in whole seconds, at least 1) and
	// the registry accepts the token for TokenTTL, refusing it less than
	// a second later (exp is rounded up to a whole second and set 60s
	// early, to cancel distribution's 60s clock-skew leeway). Zero means
	// DefaultTokenTTL; a negative TTL makes tokens the registry refuses
	// at once (with expires_in 1).
	// Registry.SetTokenTTL changes it later.
	TokenTTL time.Duration
	// AnonymousPull makes the token issuer grant "pull" on every
	// repository to requests without credentials. Without it, anonymous
	// requests still get a token, but one granting nothing, as Docker Hub
	// does for private repositories (the registry then answers 401
	// insufficient_scope). Only AuthToken uses it.
	AnonymousPull bool
	// TokenKeyID signs tokens with a "kid" header holding the libtrust
	// key ID of the signing key instead of an "x5c" certificate chain
	// (distribution accepts both; this exercises the second way).
	TokenKeyID bool
	// AccessLog keeps the registry's per-request access log in its log
	// file (off by default: the log holds warnings and errors only).
	AccessLog bool
}

// Registry is a running distribution registry on 127.0.0.1, storing its
// blobs under a directory, speaking plain HTTP. Stop it when done.
type Registry struct {
	// Host is "127.0.0.1:PORT", what image references name.
	Host string
	// Auth is the authentication mode.
	Auth AuthMode
	// Username and Password are the accepted credentials (htpasswd and
	// token modes; empty for AuthNone).
	Username, Password string
	// Dir is the directory holding the configuration, storage and log.
	Dir string
	// LogPath is the registry's log file (its standard output and error).
	LogPath string
	// ConfigPath is the registry's configuration file.
	ConfigPath string
	// Realm is the token issuer's URL, as in the Bearer challenge
	// (AuthToken only).
	Realm string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	log      *os.File
	issuer   *tokenIssuer
	stopOnce sync.Once
}

// StartRegistry starts the distribution registry with filesystem storage
// under dir (which must exist and should be empty), listening on a free
// port of 127.0.0.1, and waits until GET /v2/ answers. The caller must call
// Stop. Errors name the cause and end with the tail of the registry's log.
func StartRegistry(dir string, opts RegistryOptions) (*Registry, error) {
	prog, err := exec.LookPath(RegistryProgram)
	if err != nil {
		return nil, fmt.Errorf("%s is not installed: run `go tool task deps`", RegistryProgram)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		Auth:       opts.Auth,
		Dir:        dir,
		LogPath:    filepath.Join(dir, "registry.log"),
		ConfigPath: filepath.Join(dir, "config.yml"),
	}
	if opts.Auth != AuthNone {
		r.Username, r.Password = opts.Username, opts.Password
		if r.Username == "" {
			r.Username = DefaultUsername
		}
		if r.Password == "" {
			r.Password = DefaultPassword
		}
	}
	var authYAML string
	switch opts.Auth {
	case AuthNone:
	case AuthHtpasswd:
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("htpasswd: %w", err)
		}
		path := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(path, []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		authYAML = fmt.Sprintf("auth:\n  htpasswd:\n    realm: %s\n    path: %s\n", yq("occystrap-test"), yq(path))
	case AuthToken:
		ttl := opts.TokenTTL
		if ttl == 0 {
			ttl = DefaultTokenTTL
		}
		iss, err := startTokenIssuer(r.Username, r.Password, ttl, opts.AnonymousPull, opts.TokenKeyID)
		if err != nil {
			return nil, fmt.Errorf("token issuer: %w", err)
		}
		r.issuer = iss
		r.Realm = iss.realm()
		bundle := filepath.Join(dir, "token-ca.pem")
		if err := os.WriteFile(bundle, iss.certPEM(), 0o644); err != nil {
			iss.close()
			return nil, err
		}
		authYAML = fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			yq(r.Realm), yq(TokenService), yq(TokenIssuerName), yq(bundle))
	default:
		return nil, fmt.Errorf("unknown auth mode %v", opts.Auth)
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		r.Stop()
		return nil, err
	}

	// Pick a free port, then let the registry bind it; another process
	// may take it in between, so retry on "address already in use".
	var lastErr error
	attempts := 0
	for attempts < 5 {
		attempts++
		port, err := pickPort()
		if err != nil {
			r.Stop()
			return nil, err
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := registryConfig(dir, r.Host, authYAML, opts.AccessLog)
		if err := os.WriteFile(r.ConfigPath, []byte(cfg), 0o644); err != nil {
			r.Stop()
			return nil, err
		}
		lastErr = r.startProcess(prog)
		if lastErr == nil {
			return r, nil
		}
		logText := r.logTail(4000)
		r.killProcess()
		if !strings.Contains(logText, "address already in use") {
			break
		}
	}
	r.Stop()
	return nil, fmt.Errorf("start %s (config %s, %d attempt(s)): %w\n--- %s (tail):\n%s", RegistryProgram, r.ConfigPath, attempts, lastErr, r.LogPath, r.logTail(4000))
}

// StartTestRegistry starts a registry for a test: it skips (or fails,
// when Required) if the registry is not installed, stores it under a
// t.TempDir(), fails the test if it cannot start, and stops it when the
// test ends, logging the tail of its log if the test failed.
func StartTestRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	Need(t, RegistryProgram)
	r, err := StartRegistry(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", RegistryProgram, r.LogTail(3000))
		}
		r.Stop()
	})
	return r
}

// registryConfig is the registry's YAML configuration.
func registryConfig(dir, addr, authYAML string, accessLog bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 0.1\n")
	fmt.Fprintf(&b, "log:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: %t\n", !accessLog)
	fmt.Fprintf(&b, "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n", yq(filepath.Join(dir, "storage")))
	fmt.Fprintf(&b, "  maintenance:\n    uploadpurging:\n      enabled: false\n")
	fmt.Fprintf(&b, "http:\n  addr: %s\n  secret: %s\n  headers:\n    X-Content-Type-Options: [nosniff]\n", yq(addr), yq("occystrap-test-upload-secret"))
	b.WriteString(authYAML)
	return b.String()
}

// yq quotes s as a YAML double-quoted scalar (JSON strings are valid ones).
func yq(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// pickPort chooses the registry's port (a variable so that tests can
// simulate losing the race for it).
var pickPort = freePort

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// registryEnv is the environment without REGISTRY_* variables, which the
// registry would take as configuration overrides.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// startProcess starts the registry on r.Host and waits until it answers.
func (r *Registry) startProcess(prog string) error {
	log, err := os.Create(r.LogPath)
	if err != nil {
		return err
	}
	r.log = log
	r.cmd = exec.Command(prog, "serve", r.ConfigPath)
	r.cmd.Dir = r.Dir
	r.cmd.Env = registryEnv()
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	r.exited = exited
	cmd := r.cmd
	go func() { cmd.Wait(); close(exited) }()

	// Poll GET /v2/ until the registry answers it, giving up at once if
	// the process exits (say, because it lost the race for the port,
	// whose new owner may never answer).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s exited: %v", RegistryProgram, cmd.ProcessState)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// The API version header tells the registry from whatever
			// else might hold the port.
			if (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) &&
				resp.Header.Get("Docker-Distribution-Api-Version") == "registry/2.0" {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s (Docker-Distribution-Api-Version %q)", resp.Status, resp.Header.Get("Docker-Distribution-Api-Version"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry did not answer within 20s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killProcess kills the registry process, if any, and waits for it.
func (r *Registry) killProcess() {
	if r.cmd != nil && r.cmd.Process != nil {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
	}
	r.cmd = nil
	if r.log != nil {
		r.log.Close()
		r.log = nil
	}
}

// logTail returns the last n bytes of the registry log.
func (r *Registry) logTail(n int) string {
	b, err := os.ReadFile(r.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(string(b), n)
}

// LogTail returns the last n bytes of the registry's log, for test
// failure messages.
func (r *Registry) LogTail(n int) string { return r.logTail(n) }

// Stop kills the registry and its token issuer and waits for them. It may
// be called more than once. The storage directory is left in place.
func (r *Registry) Stop() {
	r.stopOnce.Do(func() {
		r.killProcess()
		if r.issuer != nil {
			r.issuer.close()
		}
	})
}

// URL returns "http://HOST", the registry's base URL.
func (r *Registry) URL() string { return "http://" + r.Host }

// Ref returns the skopeo/containers reference "docker://HOST/name" of an
// image ("repo:tag" or "repo@digest") in this registry.
func (r *Registry) Ref(name string) string { return "docker://" + r.Host + "/" + name }

// TokensIssued returns how many tokens the issuer has handed out (zero
// unless AuthToken), so tests can check that clients cache and refresh
// their tokens.
func (r *Registry) TokensIssued() int {
	if r.issuer == nil {
		return 0
	}
	return int(r.issuer.issued.Load())
}

// TokenRequests returns every request the token issuer answered, in
// order (nil unless AuthToken).
func (r *Registry) TokenRequests() []TokenRequest {
	if r.issuer == nil {
		return nil
	}
	r.issuer.mu.Lock()
	defer r.issuer.mu.Unlock()
	return append([]TokenRequest(nil), r.issuer.requests...)
}

// SetTokenTTL changes the lifetime of the tokens issued from now on (see
// RegistryOptions.TokenTTL). It does nothing unless AuthToken.
func (r *Registry) SetTokenTTL(d time.Duration) {
	if r.issuer != nil {
		r.issuer.ttl.Store(int64(d))
	}
}

// Token asks the token issuer, with the registry's credentials, for a
// token granting scopes (such as "repository:library/app:pull,push" or
// "registry:catalog:*"), as a client answering the Bearer challenge
// would. It fails unless the mode is AuthToken.
func (r *Registry) Token(ctx context.Context, scopes ...string) (string, error) {
	if r.Auth != AuthToken {
		return "", fmt.Errorf("registry %s has auth %v, not token", r.Host, r.Auth)
	}
	return FetchToken(ctx, r.Realm, TokenService, r.Username, r.Password, scopes...)
}

// FetchToken does the token request of the Docker registry token
// protocol: GET realm?service=...&scope=... with HTTP Basic credentials
// (none when username is empty), returning the "token" of the answer.
func FetchToken(ctx context.Context, realm, service, username, password string, scopes ...string) (string, error) {
	q := url.Values{"service": {service}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm+"?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	if username != "" {
		req.SetBasicAuth(username, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token request %s: %s: %s", req.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	if tr.Token == "" {
		return "", errors.New("token response has no token")
	}
	return tr.Token, nil
}

// Authorize adds to req the Authorization header this registry wants:
// nothing for AuthNone, Basic credentials for AuthHtpasswd, and for
// AuthToken a Bearer token for scopes fetched from the issuer.
func (r *Registry) Authorize(ctx context.Context, req *http.Request, scopes ...string) error {
	switch r.Auth {
	case AuthHtpasswd:
		req.SetBasicAuth(r.Username, r.Password)
	case AuthToken:
		tok, err := r.Token(ctx, scopes...)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

// TokenResponse is the token issuer's answer.
type TokenResponse struct {
	// Token is the JWT to send as "Authorization: Bearer TOKEN".
	Token string `json:"token"`
	// AccessToken is the same JWT, under its OAuth2 name.
	AccessToken string `json:"access_token"`
	// ExpiresIn is the token's lifetime in seconds.
	ExpiresIn int `json:"expires_in"`
	// IssuedAt is when the token was made (RFC 3339).
	IssuedAt string `json:"issued_at"`
}

// TokenRequest is one request the token issuer answered.
type TokenRequest struct {
	// Time is when the request arrived.
	Time time.Time
	// Method is GET (Docker token protocol) or POST (OAuth2 password
	// grant).
	Method string
	// User is the authenticated user name, empty for anonymous requests.
	User string
	// Service is the service asked for.
	Service string
	// Scopes are the scopes asked for, one per element.
	Scopes []string
	// Granted are the scopes granted, as "type:name:action,action".
	Granted []string
	// Status is the HTTP status answered.
	Status int
}

// tokenIssuer is an in-process token server for AuthToken registries.
type tokenIssuer struct {
	ln       net.Listener
	srv      *http.Server
	signer   *jwtSigner
	user     string
	password string
	anonPull bool
	ttl      atomic.Int64 // time.Duration
	issued   atomic.Int64
	mu       sync.Mutex
	requests []TokenRequest
}

func startTokenIssuer(user, password string, ttl time.Duration, anonPull, useKID bool) (*tokenIssuer, error) {
	signer, err := newJWTSigner(useKID)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tokenIssuer{ln: ln, signer: signer, user: user, password: password, anonPull: anonPull}
	t.ttl.Store(int64(ttl))
	mux := http.NewServeMux()
	mux.HandleFunc("/token", t.serveToken)
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go t.srv.Serve(ln)
	return t, nil
}

func (t *tokenIssuer) realm() string { return "http://" + t.ln.Addr().String() + "/token" }

func (t *tokenIssuer) certPEM() []byte { return t.signer.certPEM }

func (t *tokenIssuer) close() { t.srv.Close() }

// serveToken answers GET /token?service=S&scope=A&scope=B (Docker token
// protocol, optional Basic credentials) and POST /token with an OAuth2
// password grant form (grant_type=password, username, password, service,
// scope space-separated).
func (t *tokenIssuer) serveToken(w http.ResponseWriter, req *http.Request) {
	rec := TokenRequest{Time: time.Now(), Method: req.Method}
	defer func() {
		t.mu.Lock()
		t.requests = append(t.requests, rec)
		t.mu.Unlock()
	}()
	fail := func(status int, msg string) {
		rec.Status = status
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="occystrap-test-issuer"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": msg, "details": msg})
	}
	var user, pass string
	var hasCreds bool
	switch req.Method {
	case http.MethodGet:
		user, pass, hasCreds = req.BasicAuth()
		rec.Service = req.URL.Query().Get("service")
		for _, s := range req.URL.Query()["scope"] {
			rec.Scopes = append(rec.Scopes, strings.Fields(s)...)
		}
	case http.MethodPost:
		if err := req.ParseForm(); err != nil {
			fail(http.StatusBadRequest, "bad form: "+err.Error())
			return
		}
		if gt := req.PostForm.Get("grant_type"); gt != "password" {
			fail(http.StatusBadRequest, fmt.Sprintf("unsupported grant_type %q (only password)", gt))
			return
		}
		user, pass, hasCreds = req.PostForm.Get("username"), req.PostForm.Get("password"), true
		rec.Service = req.PostForm.Get("service")
		rec.Scopes = strings.Fields(req.PostForm.Get("scope"))
	default:
		fail(http.StatusMethodNotAllowed, "use GET or POST")
		return
	}
	if rec.Service != TokenService {
		fail(http.StatusBadRequest, fmt.Sprintf("unknown service %q (want %q)", rec.Service, TokenService))
		return
	}
	if hasCreds {
		if user != t.user || pass != t.password {
			fail(http.StatusUnauthorized, "incorrect username or password")
			return
		}
		rec.User = user
	}
	var access []resourceActions
	for _, s := range rec.Scopes {
		ra, ok := parseScope(s)
		if !ok {
			fail(http.StatusBadRequest, fmt.Sprintf("malformed scope %q (want type:name:actions)", s))
			return
		}
		if !hasCreds {
			if !t.anonPull || ra.Type != "repository" || !contains(ra.Actions, "pull") {
				continue
			}
			ra.Actions = []string{"pull"}
		}
		access = append(access, ra)
		rec.Granted = append(rec.Granted, ra.Type+":"+ra.Name+":"+strings.Join(ra.Actions, ","))
	}
	ttl := time.Duration(t.ttl.Load())
	now := time.Now()
	tok, err := t.signer.sign(jwtClaims{
		Issuer:   TokenIssuerName,
		Subject:  rec.User,
		Audience: TokenService,
		// distribution accepts a token until exp + 60s: set exp 60s
		// early so that the registry refuses it after ttl (rounded up to
		// a whole second, so that it is never refused earlier).
		Expiration: ceilUnix(now.Add(ttl)) - int64(tokenLeeway/time.Second),
		NotBefore:  now.Add(-time.Second).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      fmt.Sprintf("occystrap-%d-%d", now.UnixNano(), t.issued.Load()+1),
		Access:     access,
	})
	if err != nil {
		fail(http.StatusInternalServerError, err.Error())
		return
	}
	t.issued.Add(1)
	rec.Status = http.StatusOK
	secs := int((ttl + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(TokenResponse{Token: tok, AccessToken: tok, ExpiresIn: secs, IssuedAt: now.UTC().Format(time.RFC3339)})
}

// ceilUnix is t in Unix seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// parseScope parses "type:name:action,action"; the name may hold colons
// (a registry host with a port).
func parseScope(s string) (resourceActions, bool) {
	first := strings.Index(s, ":")
	last := strings.LastIndex(s, ":")
	if first < 0 || first == last {
		return resourceActions{}, false
	}
	ra := resourceActions{Type: s[:first], Name: s[first+1 : last]}
	for _, a := range strings.Split(s[last+1:], ",") {
		if a != "" {
			ra.Actions = append(ra.Actions, a)
		}
	}
	return ra, ra.Type != "" && ra.Name != ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tokenLeeway is the clock-skew allowance distribution 2.8 adds to a
// token's exp and nbf claims (registry/auth/token.Leeway).
const tokenLeeway = 60 * time.Second

// resourceActions is one element of a token's "access" claim.
type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// jwtClaims are the claims distribution checks: iss and aud must be the
// configured issuer and service, exp/nbf bound the validity, and access
// lists what the bearer may do.
type jwtClaims struct {
	Issuer     string            `json:"iss"`
	Subject    string            `json:"sub"`
	Audience   string            `json:"aud"`
	Expiration int64             `json:"exp"`
	NotBefore  int64             `json:"nbf"`
	IssuedAt   int64             `json:"iat"`
	JWTID      string            `json:"jti"`
	Access     []resourceActions `json:"access"`
}

// jwtSigner signs ES256 JWTs with a P-256 key whose self-signed
// certificate is the registry's root certificate bundle.
type jwtSigner struct {
	key     *ecdsa.PrivateKey
	certDER []byte
	certPEM []byte
	keyID   string // libtrust key ID of the public key
	useKID  bool
}

func newJWTSigner(useKID bool) (*jwtSigner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: TokenIssuerName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kid, err := libtrustKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &jwtSigner{
		key:     key,
		certDER: der,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyID:   kid,
		useKID:  useKID,
	}, nil
}

// sign returns the compact serialisation header.claims.signature.
func (s *jwtSigner) sign(claims jwtClaims) (string, error) {
	header := map[string]any{"typ": "JWT", "alg": "ES256"}
	if s.useKID {
		header["kid"] = s.keyID
	} else {
		header["x5c"] = []string{base64.StdEncoding.EncodeToString(s.certDER)}
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(hj) + "." + enc.EncodeToString(cj)
	sum := sha256.Sum256([]byte(signed))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		return "", err
	}
	// JWS ES256 signatures are R and S as 32-byte big-endian integers.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signed + "." + enc.EncodeToString(sig), nil
}

// libtrustKeyID is the key ID github.com/docker/libtrust gives a public
// key: the SHA-256 of its DER SubjectPublicKeyInfo, truncated to 240 bits,
// base32-encoded, in 12 groups of 4 characters joined by ':'.
func libtrustKeyID(pub *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	s := base32.StdEncoding.EncodeToString(sum[:30]) // 48 characters, no padding
	groups := make([]string, 0, 12)
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, ":"), nil
}
