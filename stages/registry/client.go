// Package registry reads images from and pushes images to registries that
// speak the OCI distribution API (Docker Registry HTTP API v2): Docker Hub,
// ghcr.io, quay.io, the reference distribution registry, and the like.
//
// Authentication, credential files and retries come from oras-go
// (oras.land/oras-go/v2/registry/remote/{auth,credentials,retry}): it is the
// CNCF ORAS project's client, small, with no dependencies beyond image-spec,
// go-digest and x/sync (which we use anyway), and it already does what a
// hand-written client would have to get right: the WWW-Authenticate
// challenge (Basic and Bearer, realm/service/scope), a token cache safe for
// many goroutines keyed by scope, refresh on 401, OAuth2 and distribution
// token endpoints, ~/.docker/config.json with credsStore and credHelpers,
// and a retrying transport that honours Retry-After. go-containerregistry
// does the same but pulls in docker/cli for credential files; containers/image
// pulls in far more. Everything about images (manifests, blobs, streaming,
// parallelism, verification, resuming) is ours.
package registry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/occystrap/occystrap/uri"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// Version is reported in the User-Agent header.
var Version = "dev"

// Options configure a Client.
type Options struct {
	Log      zerolog.Logger
	Username string // with Password: credentials for this registry
	Password string
	// Insecure allows plain HTTP and unverified TLS for this registry.
	// Loopback registries get the same treatment without it.
	Insecure bool
	Retries  int // retries of a request after a transient failure
	// Conns is how many connections to keep open to the registry (at
	// least the number of parallel transfers).
	Conns int
	// Limiter, when set, paces every request (retries included) of every
	// client that shares it (--rate-limit).
	Limiter *rate.Limiter
}

// Client talks to one repository of one registry. It is safe for
// concurrent use.
type Client struct {
	host string // host[:port] as used in URLs
	repo string
	log  zerolog.Logger
	http *auth.Client
	// scopes to ask tokens for, set per request in its context
	scopesMu sync.Mutex
	scopes   []string

	insecure  bool
	retries   int
	schemeMu  sync.Mutex
	baseURL   string // "https://host" or "http://host", decided by Ping
	pingError error
}

// NewClient returns a client for repository repo ("library/busybox") of
// registry host ("registry-1.docker.io", "127.0.0.1:5000"), asking for the
// given actions ("pull", or "pull", "push"). It does no I/O.
func NewClient(host, repo string, actions []string, opts Options) *Client {
	insecure := opts.Insecure || isLoopback(host)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = max(opts.Conns, 4) + 2
	transport.ResponseHeaderTimeout = 60 * time.Second
	if insecure {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure, or loopback
	}
	policy := &retry.GenericPolicy{
		Retryable: retryable,
		Backoff:   retry.ExponentialBackoff(250*time.Millisecond, 2, 0.1),
		MinWait:   200 * time.Millisecond,
		MaxWait:   60 * time.Second,
		MaxRetry:  max(opts.Retries, 0),
	}
	var base http.RoundTripper = transport
	if opts.Limiter != nil {
		base = &limitedTransport{base: transport, lim: opts.Limiter}
	}
	hc := &http.Client{
		Transport: &retry.Transport{Base: base, Policy: func() retry.Policy { return policy }},
		// Go drops Authorization when a redirect leaves the original
		// host (blob storage on another domain); we rely on that, and a
		// test checks it.
	}
	c := &Client{
		host:     host,
		repo:     repo,
		log:      opts.Log,
		insecure: insecure,
		retries:  max(opts.Retries, 0),
		scopes:   []string{auth.ScopeRepository(repo, actions...)},
		http: &auth.Client{
			Client:     hc,
			Cache:      auth.NewCache(),
			Credential: credentialFunc(host, opts),
		},
	}
	c.http.SetUserAgent("Mozilla/5.0 (Linux x86_64) occystrap/" + Version)
	return c
}

// limitedTransport waits for its limiter before each request. It is
// under the retry transport, so retries are paced too.
type limitedTransport struct {
	base http.RoundTripper
	lim  *rate.Limiter
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.lim.Wait(req.Context()); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return t.base.RoundTrip(req)
}

// Host returns the registry host the client talks to.
func (c *Client) Host() string { return c.host }

// Repository returns the repository the client talks to.
func (c *Client) Repository() string { return c.repo }

// AddScope asks future tokens to cover another repository too (for
// cross-repository mounts).
func (c *Client) AddScope(repo string, actions ...string) {
	scope := auth.ScopeRepository(repo, actions...)
	c.scopesMu.Lock()
	defer c.scopesMu.Unlock()
	for _, s := range c.scopes {
		if s == scope {
			return
		}
	}
	c.scopes = append(c.scopes, scope)
}

// credentialFunc picks credentials: --username/--password (or the URI's)
// when given, else the Docker CLI's config (~/.docker/config.json or
// $DOCKER_CONFIG, with its credsStore and credHelpers), else anonymous.
func credentialFunc(host string, opts Options) auth.CredentialFunc {
	if opts.Username != "" || opts.Password != "" {
		return auth.StaticCredential(host, auth.Credential{Username: opts.Username, Password: opts.Password})
	}
	var once sync.Once
	var fn auth.CredentialFunc
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		once.Do(func() {
			store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
			if err != nil {
				opts.Log.Warn().Err(err).Msg("cannot read the Docker credentials file; continuing without its credentials")
				return
			}
			fn = credentials.Credential(store)
		})
		if fn == nil {
			return auth.EmptyCredential, nil
		}
		cred, err := fn(ctx, hostport)
		if err != nil {
			opts.Log.Warn().Err(err).Str("registry", hostport).Msg("cannot get credentials from the Docker credentials store; continuing anonymously")
			return auth.EmptyCredential, nil
		}
		return cred, nil
	}
}

// retryable says which failures are worth another attempt: connection
// errors (refused, reset, EOF before a response, timeouts), 408, 429 and
// 5xx. The retry transport honours Retry-After on a 429.
func retryable(resp *http.Response, err error) (bool, error) {
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false, err
		}
		var tlsErr tls.RecordHeaderError
		if errors.As(err, &tlsErr) {
			return false, err // plain HTTP server answering TLS: no point retrying
		}
		var netErr net.Error
		if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
			return true, nil
		}
		return false, err
	}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return true, nil
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		return true, nil
	}
	return false, nil
}

// isLoopback reports whether host[:port] is a loopback address or name.
func isLoopback(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Ping checks that the registry answers the API (GET /v2/) and decides
// between HTTPS and plain HTTP: HTTPS always, plain HTTP only when the
// client is insecure (--insecure, or a loopback registry) and the HTTPS
// attempt fails. It is done once; later calls return the first outcome.
func (c *Client) Ping(ctx context.Context) error {
	c.schemeMu.Lock()
	defer c.schemeMu.Unlock()
	if c.baseURL != "" || c.pingError != nil {
		return c.pingError
	}
	schemes := []string{"https"}
	if c.insecure {
		schemes = append(schemes, "http")
	}
	var firstErr error
	for _, scheme := range schemes {
		base := scheme + "://" + c.host
		req, err := http.NewRequestWithContext(c.ctx(ctx), http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if !isTransportError(err) {
				c.pingError = authError(c.host, err)
				return c.pingError
			}
			if firstErr == nil {
				firstErr = err
			}
			c.log.Debug().Err(err).Str("url", base).Msg("registry ping failed")
			continue
		}
		drain(resp)
		switch resp.StatusCode {
		case http.StatusOK, http.StatusUnauthorized:
			// 401 here means our credentials were refused; requests
			// with a repository scope may still work (token realms often
			// grant nothing for the bare /v2/), so go on.
			c.baseURL = base
			c.log.Debug().Str("url", base).Int("status", resp.StatusCode).Msg("registry answers")
			return nil
		case http.StatusNotFound:
			c.pingError = fmt.Errorf("%s does not serve the registry API (GET /v2/ gave 404): is it a container registry?", c.host)
			return c.pingError
		default:
			if firstErr == nil {
				firstErr = fmt.Errorf("GET %s/v2/: %s", base, resp.Status)
			}
		}
	}
	hint := ""
	if !c.insecure {
		hint = " (for a registry without TLS, add --insecure)"
	}
	c.pingError = fmt.Errorf("cannot reach registry %s: %w%s", c.host, firstErr, hint)
	return c.pingError
}

// ctx attaches the client's token scopes to a request context.
func (c *Client) ctx(ctx context.Context) context.Context {
	c.scopesMu.Lock()
	defer c.scopesMu.Unlock()
	return auth.WithScopesForHost(ctx, c.host, c.scopes...)
}

// url returns the absolute URL of an API path ("/v2/<repo>/...").
func (c *Client) url(path string) string { return c.baseURL + path }

// repoPath returns "/v2/<repo>/<rest>".
func (c *Client) repoPath(rest string) string { return "/v2/" + c.repo + "/" + rest }

// do sends a request built by build, after a Ping. Statuses in ok are
// returned as a response; any other status becomes an *HTTPError (the body
// is read for the registry's error message and closed).
func (c *Client) do(ctx context.Context, method, target string, header http.Header, body io.Reader, size int64, ok ...int) (*http.Response, error) {
	if err := c.Ping(ctx); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
		target = c.url(target)
	}
	req, err := http.NewRequestWithContext(c.ctx(ctx), method, target, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
			req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if !isTransportError(err) {
			return nil, authError(c.host, err)
		}
		return nil, fmt.Errorf("%s %s: %w", method, redactURL(target), err)
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	return nil, newHTTPError(resp)
}

// isTransportError tells a failure to reach the server (which net/http
// reports as *url.Error) from a failure of the authentication flow (which
// the auth client reports as a plain error).
func isTransportError(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) && !errors.Is(err, auth.ErrBasicCredentialNotFound)
}

// authError explains a failed authentication.
func authError(host string, err error) error {
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		return fmt.Errorf("registry %s requires credentials: give --username and --password (or OCCYSTRAP_USERNAME and OCCYSTRAP_PASSWORD), or run `docker login %s`", host, host)
	}
	return fmt.Errorf("authenticating to registry %s: %w (check the credentials given with --username/--password or stored by `docker login`)", host, err)
}

// HTTPError is a registry answer with an unexpected status.
type HTTPError struct {
	Method  string
	URL     string // without query credentials
	Status  int
	Code    string // the registry's error code (MANIFEST_UNKNOWN, DENIED, ...) if it gave one
	Message string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	switch e.Status {
	case http.StatusUnauthorized:
		msg += " (check --username/--password, OCCYSTRAP_USERNAME/OCCYSTRAP_PASSWORD, or `docker login`)"
	case http.StatusForbidden:
		msg += " (the credentials lack permission for this repository)"
	}
	return msg
}

// newHTTPError reads the registry's error document from resp and closes it.
func newHTTPError(resp *http.Response) *HTTPError {
	defer resp.Body.Close()
	e := &HTTPError{Method: resp.Request.Method, URL: redactURL(resp.Request.URL.String()), Status: resp.StatusCode}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var doc struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(data, &doc) == nil && len(doc.Errors) > 0 {
		e.Code, e.Message = doc.Errors[0].Code, doc.Errors[0].Message
	} else if s := strings.TrimSpace(string(data)); s != "" && len(s) < 200 && !strings.Contains(s, "<") {
		e.Message = s
	}
	return e
}

// redactURL drops the query string (upload URLs carry state tokens) and
// user info.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

// drain reads a little of a response body and closes it, so that the
// connection can be reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// NewFromReference returns a client for a parsed registry:// reference,
// normalising Docker Hub names.
func NewFromReference(ref uri.Reference, actions []string, opts Options) (*Client, uri.Reference) {
	n := ref.Normalized()
	return NewClient(n.Registry, n.Repository, actions, opts), n
}
