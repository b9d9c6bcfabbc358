package peers

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultProxy is an HTTP reverse proxy on 127.0.0.1, put between a client
// and a real registry, that injects failures into the requests matching
// its faults and records every request. Without faults it forwards
// requests and responses faithfully: methods, headers (Range, Content-Range,
// Authorization, WWW-Authenticate...), streamed and chunked request bodies
// (blob upload PATCHes), and Location headers, which it rewrites to point
// at itself so that uploads keep going through it.
//
// It also runs a second listener, RedirectHost, reached by the name
// "localhost" rather than "127.0.0.1" (another host, as far as a client
// can tell), which serves the blobs that RedirectElsewhere faults send
// clients to, as a storage backend with pre-signed URLs would.
type FaultProxy struct {
	upstream  *url.URL
	ln        net.Listener
	srv       *http.Server
	redirLn   net.Listener
	redirSrv  *http.Server
	proxy     *httputil.ReverseProxy
	transport *http.Transport

	mu        sync.Mutex
	faults    []*InjectedFault
	log       []*logEntry
	presigned map[string]presignedBlob
}

// logEntry is a ProxyRecord, done once its request has been answered.
type logEntry struct {
	rec  ProxyRecord
	done bool
}

// presignedBlob is what a redirect key stands for: the upstream path and
// the credentials the original request carried.
type presignedBlob struct {
	path          string
	authorization string
}

// ProxyRecord is one request a FaultProxy (or its redirect host) served.
type ProxyRecord struct {
	// Time is when the request arrived.
	Time time.Time
	// Host is the listener that served it: the proxy's Host or its
	// RedirectHost.
	Host string
	// Method, Path and RawQuery are the request's.
	Method, Path, RawQuery string
	// Range is the request's Range header.
	Range string
	// Authorization is the request's Authorization header.
	Authorization string
	// ContentLength is the request body's declared length (-1 unknown).
	ContentLength int64
	// Chunked tells that the request body came with chunked transfer
	// encoding (a streamed upload).
	Chunked bool
	// Status is the status answered (0 if the connection was dropped
	// before a response started).
	Status int
	// BodyBytes is how many response body bytes were sent.
	BodyBytes int64
	// Fault describes the fault that fired on this request, if any.
	Fault string
}

// Forever makes a Fault fire on every matching request.
const Forever = -1

// Fault is a failure to inject into matching requests. A request matches
// when its method is Method (any if empty), its path contains
// PathContains (any if empty) and Match, if set, returns true.
type Fault struct {
	// Method is the HTTP method to match ("" for any).
	Method string
	// PathContains is a substring of the URL path to match, such as
	// "/blobs/sha256:" or "/manifests/" ("" for any).
	PathContains string
	// Match is an extra predicate (nil for none).
	Match func(*http.Request) bool
	// Skip is how many matching requests to let through unharmed before
	// the fault starts firing.
	Skip int
	// Times is how many times the fault fires: 0 means once, Forever
	// (or any negative number) means on every matching request.
	Times int
	// Action is what happens to the request.
	Action Action
}

// Action is what a Fault does to a request; make one with DropAfter,
// RespondStatus, TooManyRequests, CorruptByte or RedirectElsewhere.
type Action struct {
	kind   actionKind
	n      int64 // DropAfter: bytes; CorruptByte: offset
	status int   // RespondStatus
	retry  int   // TooManyRequests: Retry-After seconds
}

type actionKind int

const (
	actForward actionKind = iota
	actDrop
	actStatus
	actRetryAfter
	actCorrupt
	actRedirect
)

// DropAfter forwards the request, sends the response headers (with the
// full Content-Length) and the first n body bytes, then closes the
// connection: the client sees an unexpected EOF mid-body. A body of n
// bytes or fewer is delivered whole.
func DropAfter(n int64) Action { return Action{kind: actDrop, n: n} }

// RespondStatus answers the given status (such as 500 or 503) with a
// registry-style JSON error body, without forwarding the request.
func RespondStatus(code int) Action { return Action{kind: actStatus, status: code} }

// TooManyRequests answers 429 with "Retry-After: seconds", without
// forwarding the request.
func TooManyRequests(seconds int) Action { return Action{kind: actRetryAfter, retry: seconds} }

// CorruptByte forwards the request and flips every bit of one response
// body byte, keeping the length, so the body no longer matches its
// digest. offset counts from the start of the body, or from its end when
// negative (-1 is the last byte; this needs a Content-Length). Nothing is
// flipped if the body is shorter.
func CorruptByte(offset int64) Action { return Action{kind: actCorrupt, n: offset} }

// RedirectElsewhere answers 307 with a Location on the proxy's
// RedirectHost ("localhost:PORT", another host name than the proxy's
// "127.0.0.1:PORT"), carrying a one-off key in its query as a pre-signed
// URL would. The redirect host records the Authorization header it gets
// (a client must not send the registry's credentials to another host)
// and serves the request from upstream with the original request's
// credentials.
func RedirectElsewhere() Action { return Action{kind: actRedirect} }

// String describes the action, for example "drop after 100 bytes".
func (a Action) String() string {
	switch a.kind {
	case actDrop:
		return fmt.Sprintf("drop after %d bytes", a.n)
	case actStatus:
		return fmt.Sprintf("respond %d", a.status)
	case actRetryAfter:
		return fmt.Sprintf("respond 429 Retry-After %d", a.retry)
	case actCorrupt:
		return fmt.Sprintf("corrupt byte at %d", a.n)
	case actRedirect:
		return "redirect elsewhere"
	}
	return "forward"
}

// InjectedFault is a Fault added to a FaultProxy.
type InjectedFault struct {
	p     *FaultProxy
	f     Fault
	seen  int // matching requests
	fired int
}

// Fired returns how many times the fault has fired so far.
func (f *InjectedFault) Fired() int {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	return f.fired
}

// NewFaultProxy starts a proxy on 127.0.0.1 in front of upstream (a
// "HOST:PORT" or an "http://HOST:PORT" URL). It panics if it cannot
// listen, as httptest.NewServer does. Close it when done.
func NewFaultProxy(upstream string) *FaultProxy {
	if !strings.Contains(upstream, "://") {
		upstream = "http://" + upstream
	}
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		panic(fmt.Sprintf("peers: NewFaultProxy: bad upstream %q: %v", upstream, err))
	}
	p := &FaultProxy{
		upstream:  &url.URL{Scheme: u.Scheme, Host: u.Host},
		presigned: map[string]presignedBlob{},
		transport: &http.Transport{
			Proxy:               nil,
			DisableCompression:  true, // pass Accept-Encoding and bodies through untouched
			MaxIdleConnsPerHost: 16,
		},
	}
	if p.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		panic(fmt.Sprintf("peers: NewFaultProxy: %v", err))
	}
	if p.redirLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		p.ln.Close()
		panic(fmt.Sprintf("peers: NewFaultProxy: %v", err))
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.upstream)
			pr.Out.Host = pr.In.Host // the registry builds its URLs from Host
		},
		Transport:      p.transport,
		FlushInterval:  -1,
		ModifyResponse: p.rewriteLocation,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "fault proxy: upstream: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 30 * time.Second}
	p.redirSrv = &http.Server{Handler: http.HandlerFunc(p.serveRedirected), ReadHeaderTimeout: 30 * time.Second}
	go p.srv.Serve(p.ln)
	go p.redirSrv.Serve(p.redirLn)
	return p
}

// Host returns "127.0.0.1:PORT", the proxy's address: use it in image
// references instead of the registry's.
func (p *FaultProxy) Host() string { return p.ln.Addr().String() }

// URL returns "http://" + Host().
func (p *FaultProxy) URL() string { return "http://" + p.Host() }

// RedirectHost returns "localhost:PORT", the host RedirectElsewhere
// faults send clients to.
func (p *FaultProxy) RedirectHost() string {
	return "localhost:" + strconv.Itoa(p.redirLn.Addr().(*net.TCPAddr).Port)
}

// Close stops both listeners and closes their connections.
func (p *FaultProxy) Close() {
	p.srv.Close()
	p.redirSrv.Close()
	p.transport.CloseIdleConnections()
}

// Inject adds a fault. Faults are tried in the order they were added; the
// first one that matches a request and still has firings left acts on it
// (a matching fault in its Skip phase lets the request through untouched
// and counts it).
func (p *FaultProxy) Inject(f Fault) *InjectedFault {
	p.mu.Lock()
	defer p.mu.Unlock()
	inj := &InjectedFault{p: p, f: f}
	p.faults = append(p.faults, inj)
	return inj
}

// ClearFaults removes every fault.
func (p *FaultProxy) ClearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// Requests returns the record of every request received so far, in the
// order they arrived. The server finishes a request just after the client
// has read the response, so Requests first waits (up to 5s) for the
// requests still being answered; any still unfinished then have Status 0.
func (p *FaultProxy) Requests() []ProxyRecord {
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		pending := false
		for _, e := range p.log {
			pending = pending || !e.done
		}
		if !pending || time.Now().After(deadline) {
			out := make([]ProxyRecord, len(p.log))
			for i, e := range p.log {
				out[i] = e.rec
			}
			p.mu.Unlock()
			return out
		}
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

// ResetRequests forgets the requests recorded so far.
func (p *FaultProxy) ResetRequests() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = nil
}

// pick returns the action for r, counting the match.
func (p *FaultProxy) pick(r *http.Request) Action {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inj := range p.faults {
		f := inj.f
		if f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.PathContains != "" && !strings.Contains(r.URL.Path, f.PathContains) {
			continue
		}
		if f.Match != nil && !f.Match(r) {
			continue
		}
		times := f.Times
		if times == 0 {
			times = 1
		}
		if times > 0 && inj.fired >= times {
			continue
		}
		inj.seen++
		if inj.seen <= f.Skip {
			return Action{}
		}
		inj.fired++
		return f.Action
	}
	return Action{}
}

// begin logs a request on arrival; finish completes its record.
func (p *FaultProxy) begin(rec ProxyRecord) *logEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &logEntry{rec: rec}
	p.log = append(p.log, e)
	return e
}

func (p *FaultProxy) finish(e *logEntry, w *faultWriter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.rec.Status, e.rec.BodyBytes = w.status, w.written
	e.done = true
}

func newRecord(host string, r *http.Request) ProxyRecord {
	rec := ProxyRecord{
		Time: time.Now(), Host: host, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Range: r.Header.Get("Range"), Authorization: r.Header.Get("Authorization"),
		ContentLength: r.ContentLength,
	}
	for _, te := range r.TransferEncoding {
		if te == "chunked" {
			rec.Chunked = true
		}
	}
	return rec
}

// serve handles a request to the proxy.
func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	rec := newRecord(p.Host(), r)
	act := p.pick(r)
	if act.kind != actForward {
		rec.Fault = act.String()
	}
	rw := &faultWriter{ResponseWriter: w, act: act}
	defer p.finish(p.begin(rec), rw)
	if act.kind == actStatus || act.kind == actRetryAfter || act.kind == actRedirect {
		// Read the request body (an upload, say) before answering, so
		// the client gets the answer rather than a reset connection.
		io.Copy(io.Discard, r.Body)
	}
	switch act.kind {
	case actStatus, actRetryAfter:
		status := act.status
		if act.kind == actRetryAfter {
			status = http.StatusTooManyRequests
			rw.Header().Set("Retry-After", strconv.Itoa(act.retry))
		}
		code := "UNAVAILABLE"
		if status == http.StatusTooManyRequests {
			code = "TOOMANYREQUESTS"
		}
		rw.Header().Set("Content-Type", "application/json; charset=utf-8")
		rw.WriteHeader(status)
		fmt.Fprintf(rw, `{"errors":[{"code":%q,"message":"injected by the fault proxy","detail":null}]}`+"\n", code)
		return
	case actRedirect:
		key := make([]byte, 12)
		rand.Read(key)
		k := hex.EncodeToString(key)
		p.mu.Lock()
		p.presigned[k] = presignedBlob{path: r.URL.Path, authorization: r.Header.Get("Authorization")}
		p.mu.Unlock()
		loc := url.URL{Scheme: "http", Host: p.RedirectHost(), Path: r.URL.Path, RawQuery: "presigned=" + k}
		rw.Header().Set("Location", loc.String())
		rw.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	p.proxy.ServeHTTP(rw, r)
}

// serveRedirected handles a request to the redirect host: it records
// the request (with whatever Authorization the client sent) and serves
// it from upstream with the credentials of the request that was
// redirected.
func (p *FaultProxy) serveRedirected(w http.ResponseWriter, r *http.Request) {
	rec := newRecord(p.RedirectHost(), r)
	rw := &faultWriter{ResponseWriter: w}
	defer p.finish(p.begin(rec), rw)
	p.mu.Lock()
	blob, ok := p.presigned[r.URL.Query().Get("presigned")]
	p.mu.Unlock()
	if !ok || blob.path != r.URL.Path {
		http.Error(rw, "fault proxy redirect host: unknown or mismatched pre-signed key", http.StatusForbidden)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.upstream)
			pr.Out.URL.RawQuery = ""
			pr.Out.Header.Del("Authorization")
			if blob.authorization != "" {
				pr.Out.Header.Set("Authorization", blob.authorization)
			}
		},
		Transport:     p.transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "fault proxy redirect host: upstream: "+err.Error(), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(rw, r)
}

// rewriteLocation makes Location headers that point at the upstream
// point at the proxy instead.
func (p *FaultProxy) rewriteLocation(resp *http.Response) error {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host != p.upstream.Host {
		return nil
	}
	u.Scheme, u.Host = "http", p.Host()
	resp.Header.Set("Location", u.String())
	return nil
}

// errDropped is returned by faultWriter.Write after it dropped the
// connection.
var errDropped = errors.New("fault proxy: connection dropped")

// faultWriter records the status and body size of a response, and
// applies the drop and corrupt actions to the body on its way out.
type faultWriter struct {
	http.ResponseWriter
	act     Action
	status  int
	written int64
	length  int64 // Content-Length of the response, -1 if unknown
	dropped bool
}

func (w *faultWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.length = -1
		if cl := w.Header().Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
				w.length = n
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *faultWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.dropped {
		return 0, errDropped
	}
	switch w.act.kind {
	case actCorrupt:
		off := w.act.n
		if off < 0 && w.length >= 0 {
			off += w.length
		}
		if off >= w.written && off < w.written+int64(len(b)) {
			c := append([]byte(nil), b...)
			c[off-w.written] ^= 0xff
			b = c
		}
	case actDrop:
		if w.written+int64(len(b)) > w.act.n {
			keep := w.act.n - w.written
			n, _ := w.ResponseWriter.Write(b[:keep])
			w.written += int64(n)
			w.drop()
			return n, errDropped
		}
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// drop flushes what was written and closes the connection under the
// response.
func (w *faultWriter) drop() {
	w.dropped = true
	rc := http.NewResponseController(w.ResponseWriter)
	rc.Flush() // Hijack discards buffered bytes: send them first
	conn, _, err := rc.Hijack()
	if err == nil {
		conn.Close()
	}
}

// Flush sends buffered data to the client.
func (w *faultWriter) Flush() {
	if w.dropped {
		return
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the underlying ResponseWriter, for
// http.ResponseController.
func (w *faultWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
