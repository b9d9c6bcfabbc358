// Package regserver is a small in-process registry: the push half of the
// OCI distribution API (Docker Registry HTTP API V2), plus reads of what
// was pushed, served on a loopback port. occystrap starts one to receive an
// image that a Docker Engine pushes (the dockerpush:// source), and the
// proxy command builds on it.
//
// What it serves:
//
//	GET  /v2/                                  API check
//	POST /v2/<name>/blobs/uploads/             start an upload; ?digest= for a
//	                                           monolithic one; ?mount=&from= mounts
//	                                           a blob the server holds
//	PATCH, PUT, GET, DELETE
//	     /v2/<name>/blobs/uploads/<id>         append (Content-Range checked),
//	                                           finish (?digest= verified), status,
//	                                           cancel
//	HEAD, GET /v2/<name>/blobs/<digest>        blobs (Range requests too)
//	PUT, HEAD, GET /v2/<name>/manifests/<ref>  manifests by tag or digest
//	GET  /v2/<name>/tags/list                  tags (n, last)
//
// Blobs are kept in unlinked temporary files (package engine/spool), so
// nothing is left on disk whatever happens; memory use is a buffer per
// request. Everything the server holds is shared by all repositories (a
// blob pushed to one name can be read or mounted from any other) and
// lives until Close. There is no authentication: the server listens on
// loopback for the program that started it.
//
// Every header value the server sends that holds request data goes
// through a filter that removes control characters, so no client can
// inject a header or split a response.
package regserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// Options configure a Server. The zero value serves plain HTTP on a free
// port of 127.0.0.1.
type Options struct {
	// Addr is the address to listen on; "" means 127.0.0.1 on a free port.
	Addr string
	// TLS serves HTTPS with an ephemeral self-signed certificate for the
	// listening IP, made in memory when the server starts.
	TLS bool
	// TempDir is where blobs are kept ("" for the system default).
	TempDir string
	// Log gets a debug line per request and the server's warnings.
	Log zerolog.Logger
	// Progress, when set, tracks every upload's bytes.
	Progress stages.Progress
	// IdleTimeout closes connections idle this long (default 30 s).
	IdleTimeout time.Duration
	// Hooks let the program that runs the server take part.
	Hooks Hooks
	// Middleware, when set, wraps the server's handler, so that a
	// program can answer some requests itself (the proxy's pull-through
	// reads) and pass the rest on. The handler it wraps counts the
	// request as running (see Shutdown) only while it runs itself.
	Middleware func(next http.Handler) http.Handler
}

// Hooks are called from request handlers, concurrently; each must be safe
// for concurrent use. All are optional.
type Hooks struct {
	// BlobReceived is called once an upload is complete and its digest
	// checked, before the client is answered. It may keep b (b.Open reads
	// it) and must return quickly.
	BlobReceived func(repo string, b *Blob)
	// ManifestReceived is called when a client puts a manifest, before it
	// is stored and answered; the client waits for it, so it may run as
	// long as the work the manifest starts. An error refuses the manifest:
	// a *Error keeps its status and code, any other error is a 500.
	ManifestReceived func(ctx context.Context, m *Manifest) error
	// Exists answers HEAD for a blob the server does not hold: ok means
	// the client need not upload it (a layer some cache already has).
	Exists func(repo string, d digest.Digest) (size int64, ok bool)
}

// Server is a running registry; see the package documentation.
type Server struct {
	opts   Options
	log    zerolog.Logger
	ln     net.Listener
	srv    *http.Server
	cert   *x509.Certificate
	scheme string

	mu        sync.Mutex
	closed    bool
	active    sync.WaitGroup // running handlers
	blobs     map[digest.Digest]*Blob
	uploads   map[string]*upload
	manifests map[string]map[string]*Manifest // repo -> tag or digest -> manifest
	served    chan error
}

// Start listens and serves in the background until Close.
func Start(opts Options) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Second
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: listen on %s: %w", addr, err)
	}
	s := &Server{
		opts: opts, log: opts.Log, ln: ln, scheme: "http",
		blobs: map[digest.Digest]*Blob{}, uploads: map[string]*upload{}, manifests: map[string]map[string]*Manifest{},
		served: make(chan error, 1),
	}
	var h http.Handler = http.HandlerFunc(s.serveHTTP)
	if opts.Middleware != nil {
		h = opts.Middleware(h)
	}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: opts.IdleTimeout,
		IdleTimeout:       opts.IdleTimeout,
		ErrorLog:          nil,
	}
	if opts.TLS {
		ip := ln.Addr().(*net.TCPAddr).IP
		if ip.IsUnspecified() {
			ip = net.IPv4(127, 0, 0, 1)
		}
		cert, leaf, err := selfSigned(ip)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("embedded registry: %w", err)
		}
		s.cert, s.scheme = leaf, "https"
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, s.srv.TLSConfig)
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	s.log.Debug().Str("url", s.URL()).Msg("embedded registry listening")
	return s, nil
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the server's base URL (https://127.0.0.1:PORT). A server
// listening on every address (Addr ":PORT") is reached at 127.0.0.1, the
// address its certificate names.
func (s *Server) URL() string {
	a := s.ln.Addr().(*net.TCPAddr)
	ip := a.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return s.scheme + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

// Certificate returns the self-signed certificate of a TLS server (nil
// otherwise), for clients that verify.
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// Blob returns a blob the server holds.
func (s *Server) Blob(d digest.Digest) (*Blob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[d]
	return b, ok
}

// Manifest returns a manifest pushed to repo under ref (a tag or digest).
func (s *Server) Manifest(repo, ref string) (*Manifest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.manifests[repo][ref]
	return m, ok
}

// Close stops listening, closes every connection, waits for running
// handlers and lets go of every blob and upload (readers still open from
// Blob.Open keep theirs until they close). Requests still running after
// two seconds have their connections cut. It is safe to call more than
// once.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}

// Shutdown is Close with a caller's deadline: it stops listening at once
// and lets requests already running finish until ctx is done (a proxy
// waits for the images it is processing), then cuts what is left and
// lets go of everything the server holds. New requests on connections
// still open are refused with 503.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close() // cut connections still busy
	}
	if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Debug().Err(err).Msg("embedded registry stopped")
	}
	s.active.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, u := range s.uploads {
		u.discard()
		delete(s.uploads, id)
	}
	for d, b := range s.blobs {
		b.file.Release()
		delete(s.blobs, d)
	}
	s.manifests = map[string]map[string]*Manifest{}
	return nil
}

// enter counts a handler in; it fails once Close has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active.Add(1)
	return true
}

// serveHTTP routes a request (see the package documentation).
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeError(w, &Error{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE", Message: "the server is stopping"})
		return
	}
	defer s.active.Done()
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rw := &statusWriter{ResponseWriter: w}
	err := s.route(rw, r)
	if err != nil {
		writeError(rw, err)
	}
	ev := s.log.Debug()
	if err != nil && rw.status >= 500 {
		ev = s.log.Warn().Err(err)
	}
	ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", rw.status).Msg("embedded registry")
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if p == "/v2/" || p == "/v2" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return errMethod
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write([]byte("{}"))
		}
		return nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return &Error{Status: http.StatusNotFound, Code: "NOT_FOUND", Message: "not a registry API path"}
	}
	// Route on the path's last components: a repository name may itself
	// hold components such as "blobs", "uploads", "manifests" or "tags"
	// ("x/blobs/uploads" is a valid name), but a reference, digest or
	// upload id never holds a "/".
	seg := strings.Split(rest, "/")
	n := len(seg)
	name := func(k int) string { return strings.Join(seg[:n-k], "/") }
	switch {
	case n >= 3 && seg[n-2] == "tags" && seg[n-1] == "list":
		if err := checkName(name(2)); err != nil {
			return err
		}
		return s.tags(w, r, name(2))
	case n >= 4 && seg[n-3] == "blobs" && seg[n-2] == "uploads",
		n >= 3 && seg[n-2] == "blobs" && seg[n-1] == "uploads":
		k, id := 3, seg[n-1]
		if seg[n-1] == "uploads" && seg[n-2] == "blobs" {
			k, id = 2, ""
		}
		if err := checkName(name(k)); err != nil {
			return err
		}
		if id == "" {
			if r.Method != http.MethodPost {
				return errMethod
			}
			return s.startUpload(w, r, name(k))
		}
		return s.upload(w, r, name(k), id)
	case n >= 3 && seg[n-2] == "manifests":
		if err := checkName(name(2)); err != nil {
			return err
		}
		return s.manifest(w, r, name(2), seg[n-1])
	case n >= 3 && seg[n-2] == "blobs":
		if err := checkName(name(2)); err != nil {
			return err
		}
		ref := seg[n-1]
		d, err := digest.Parse(ref)
		if err != nil {
			return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf("%q is not a digest", ref)}
		}
		return s.blob(w, r, name(2), d)
	}
	return &Error{Status: http.StatusNotFound, Code: "NOT_FOUND", Message: "not a registry API path"}
}

// statusWriter remembers the status sent, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
