package peers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobFixture is a token-auth registry holding imagegen's Sample as
// test/sample:v1, a fault proxy in front of it, and one layer blob.
type blobFixture struct {
	r     *Registry
	p     *FaultProxy
	auth  string // "Bearer ..." with pull on test/sample
	path  string // /v2/test/sample/blobs/sha256:...
	blob  []byte
	dgst  digest.Digest
	httpc *http.Client
}

func newBlobFixture(t *testing.T) *blobFixture {
	t.Helper()
	Need(t, "skopeo")
	ctx := ctxT(t)
	r := StartTestRegistry(t, RegistryOptions{Auth: AuthToken})
	tar, _ := writeSample(t)
	if err := r.SkopeoPush(ctx, "docker-archive:"+tar, "test/sample:v1", SkopeoOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := r.Token(ctx, "repository:test/sample:pull")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.SkopeoInspect(ctx, "test/sample:v1", SkopeoOptions{}, "--raw")
	if err != nil {
		t.Fatal(err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	// The largest layer (the one with a 3000-byte random file).
	big := man.Layers[0]
	for _, l := range man.Layers {
		if l.Size > big.Size {
			big = l
		}
	}
	p := NewFaultProxy(r.Host)
	t.Cleanup(p.Close)
	f := &blobFixture{
		r: r, p: p, auth: bearer(tok), dgst: big.Digest,
		path:  "/v2/test/sample/blobs/" + big.Digest.String(),
		httpc: &http.Client{Transport: &http.Transport{Proxy: nil}},
	}
	t.Cleanup(f.httpc.CloseIdleConnections)
	resp, body, err := f.get(p.URL()+f.path, nil)
	if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(body) != big.Digest {
		t.Fatalf("fetching %s through the proxy: %v %v", f.path, resp, err)
	}
	f.blob = body
	p.ResetRequests()
	return f
}

// get does an authorized GET (plus headers) and reads the whole body.
func (f *blobFixture) get(u string, hdr http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", f.auth)
	resp, err := f.httpc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestFaultProxyForwards(t *testing.T) {
	t.Parallel()
	f := newBlobFixture(t)
	// Challenges pass through untouched.
	status, challenge, _ := get(t, f.p.URL()+"/v2/", "")
	if status != http.StatusUnauthorized || !strings.Contains(challenge, f.r.Realm) {
		t.Errorf("anonymous GET /v2/ through the proxy: %d %q", status, challenge)
	}
	// Range requests are forwarded.
	resp, body, err := f.get(f.p.URL()+f.path, http.Header{"Range": {"bytes=10-19"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.blob[10:20]) || resp.Header.Get("Content-Range") == "" {
		t.Errorf("ranged GET: %s %q Content-Range %q", resp.Status, body, resp.Header.Get("Content-Range"))
	}
	if resp.Header.Get("Docker-Content-Digest") != f.dgst.String() {
		t.Errorf("Docker-Content-Digest %q, want %s", resp.Header.Get("Docker-Content-Digest"), f.dgst)
	}
	log := f.p.Requests()
	if len(log) != 2 {
		t.Fatalf("log has %d records, want 2: %+v", len(log), log)
	}
	if l := log[1]; l.Range != "bytes=10-19" || l.Status != http.StatusPartialContent || l.BodyBytes != 10 || l.Path != f.path || l.Method != "GET" || l.Authorization != f.auth || l.Fault != "" {
		t.Errorf("ranged GET recorded as %+v", l)
	}
}

func TestFaultProxyFaults(t *testing.T) {
	t.Parallel()
	f := newBlobFixture(t)
	n := int64(len(f.blob))
	type outcome struct {
		status  int
		errWant error // error reading the body
		length  int64 // body bytes received
		same    bool  // body equals the blob
		fault   string
		retry   string // Retry-After header
	}
	ok := outcome{status: 200, length: n, same: true}
	tests := []struct {
		name  string
		fault Fault
		want  []outcome // successive GETs of the blob
	}{
		{"drop", Fault{Method: "GET", PathContains: "/blobs/sha256:", Action: DropAfter(100)},
			[]outcome{{status: 200, errWant: io.ErrUnexpectedEOF, length: 100, fault: "drop after 100 bytes"}, ok}},
		{"drop-at-0", Fault{PathContains: "/blobs/", Action: DropAfter(0)},
			[]outcome{{status: 200, errWant: io.ErrUnexpectedEOF, length: 0, fault: "drop after 0 bytes"}, ok}},
		{"500-twice", Fault{PathContains: "/blobs/sha256:", Times: 2, Action: RespondStatus(500)},
			[]outcome{{status: 500, fault: "respond 500"}, {status: 500, fault: "respond 500"}, ok, ok}},
		{"503-after-one", Fault{Method: "GET", Skip: 1, Action: RespondStatus(503)},
			[]outcome{ok, {status: 503, fault: "respond 503"}, ok}},
		{"429", Fault{PathContains: "/blobs/", Action: TooManyRequests(7)},
			[]outcome{{status: 429, retry: "7", fault: "respond 429 Retry-After 7"}, ok}},
		{"corrupt-last", Fault{PathContains: "/blobs/", Action: CorruptByte(-1)},
			[]outcome{{status: 200, length: n, fault: "corrupt byte at -1"}, ok}},
		{"corrupt-middle", Fault{PathContains: "/blobs/", Action: CorruptByte(n / 2)},
			[]outcome{{status: 200, length: n, fault: "corrupt byte at " + itoa(n/2)}, ok}},
		{"forever", Fault{PathContains: "/blobs/", Times: Forever, Action: RespondStatus(502)},
			[]outcome{{status: 502, fault: "respond 502"}, {status: 502, fault: "respond 502"}, {status: 502, fault: "respond 502"}}},
		{"no-match", Fault{Method: "HEAD", Action: RespondStatus(500)},
			[]outcome{ok}},
		{"predicate", Fault{Match: func(r *http.Request) bool { return r.Header.Get("Range") != "" }, Action: RespondStatus(500)},
			[]outcome{ok}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.p.ClearFaults()
			f.p.ResetRequests()
			inj := f.p.Inject(tt.fault)
			fired := 0
			for i, want := range tt.want {
				resp, body, err := f.get(f.p.URL()+f.path, nil)
				if resp == nil {
					t.Fatalf("GET %d: %v", i, err)
				}
				if resp.StatusCode != want.status {
					t.Errorf("GET %d: status %d, want %d", i, resp.StatusCode, want.status)
				}
				if !errors.Is(err, want.errWant) {
					t.Errorf("GET %d: read error %v, want %v", i, err, want.errWant)
				}
				if want.status == 200 && int64(len(body)) != want.length {
					t.Errorf("GET %d: %d bytes, want %d", i, len(body), want.length)
				}
				if want.status == 200 && bytes.Equal(body, f.blob) != want.same {
					t.Errorf("GET %d: body equal to the blob = %v, want %v", i, !want.same, want.same)
				}
				if want.status == 200 && want.length == n && !want.same {
					if d := diffCount(body, f.blob); d != 1 || digest.FromBytes(body) == f.dgst {
						t.Errorf("GET %d: %d bytes differ, want exactly 1", i, d)
					}
				}
				if got := resp.Header.Get("Retry-After"); got != want.retry {
					t.Errorf("GET %d: Retry-After %q, want %q", i, got, want.retry)
				}
				if want.fault != "" {
					fired++
				}
			}
			if inj.Fired() != fired {
				t.Errorf("Fired() = %d, want %d", inj.Fired(), fired)
			}
			log := f.p.Requests()
			if len(log) != len(tt.want) {
				t.Fatalf("%d records, want %d", len(log), len(tt.want))
			}
			for i, want := range tt.want {
				if log[i].Fault != want.fault || log[i].Status != want.status {
					t.Errorf("record %d: fault %q status %d, want %q %d", i, log[i].Fault, log[i].Status, want.fault, want.status)
				}
			}
		})
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func diffCount(a, b []byte) int {
	d := 0
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			d++
		}
	}
	return d + max(len(a), len(b)) - min(len(a), len(b))
}

func TestFaultProxyRedirect(t *testing.T) {
	t.Parallel()
	f := newBlobFixture(t)
	inj := f.p.Inject(Fault{Method: "GET", PathContains: "/blobs/sha256:", Times: Forever, Action: RedirectElsewhere()})
	if !strings.HasPrefix(f.p.RedirectHost(), "localhost:") {
		t.Fatalf("RedirectHost %q", f.p.RedirectHost())
	}

	// Go's client drops Authorization on a redirect to another host.
	resp, body, err := f.get(f.p.URL()+f.path, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.blob) {
		t.Fatalf("redirected GET: %v %v, %d bytes", resp, err, len(body))
	}
	log := f.p.Requests()
	if len(log) != 2 || log[0].Status != http.StatusTemporaryRedirect || log[0].Fault != "redirect elsewhere" || log[1].Host != f.p.RedirectHost() {
		t.Fatalf("log %+v", log)
	}
	if log[1].Authorization != "" {
		t.Errorf("the redirect host got Authorization %q", log[1].Authorization)
	}

	// A leaky client that forwards the header is caught.
	f.p.ResetRequests()
	leaky := &http.Client{Transport: f.httpc.Transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		req.Header.Set("Authorization", via[0].Header.Get("Authorization"))
		return nil
	}}
	req, _ := http.NewRequest(http.MethodGet, f.p.URL()+f.path, nil)
	req.Header.Set("Authorization", f.auth)
	lresp, err := leaky.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, lresp.Body)
	lresp.Body.Close()
	log = f.p.Requests()
	if len(log) != 2 || log[1].Authorization != f.auth {
		t.Errorf("leaked Authorization not recorded: %+v", log)
	}
	if inj.Fired() != 2 {
		t.Errorf("Fired() = %d, want 2", inj.Fired())
	}

	// The redirect host refuses requests without a valid key.
	status, _, _ := get(t, "http://"+f.p.RedirectHost()+f.path+"?presigned=nope", "")
	if status != http.StatusForbidden {
		t.Errorf("bad key: %d, want 403", status)
	}
}

func TestFaultProxySkopeoThroughProxy(t *testing.T) {
	t.Parallel()
	Need(t, "skopeo", RegistryProgram)
	ctx := ctxT(t)
	r := StartTestRegistry(t, RegistryOptions{Auth: AuthToken})
	p := NewFaultProxy(r.Host)
	defer p.Close()
	tar, res := writeSample(t)
	if err := r.SkopeoPush(ctx, "docker-archive:"+tar, "test/sample:v1", SkopeoOptions{Host: p.Host()}); err != nil {
		t.Fatal(err)
	}
	var patches, chunked, puts int
	for _, rec := range p.Requests() {
		if rec.Host != p.Host() {
			t.Errorf("request to %s", rec.Host)
		}
		switch rec.Method {
		case "PATCH":
			patches++
			if rec.Chunked {
				chunked++
			}
			if rec.Status != http.StatusAccepted {
				t.Errorf("PATCH %s: %d", rec.Path, rec.Status)
			}
		case "PUT":
			puts++
			if rec.Status != http.StatusCreated {
				t.Errorf("PUT %s: %d", rec.Path, rec.Status)
			}
		}
	}
	if patches == 0 || chunked == 0 || puts == 0 {
		t.Errorf("uploads through the proxy: %d PATCH (%d chunked), %d PUT: %+v", patches, chunked, puts, p.Requests())
	}
	cfg, err := r.SkopeoInspect(ctx, "test/sample:v1", SkopeoOptions{}, "--config", "--raw")
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(cfg) != res.ConfigDigest {
		t.Errorf("config pushed through the proxy is %s, want %s", digest.FromBytes(cfg), res.ConfigDigest)
	}
}

func TestFaultProxyRewritesLocation(t *testing.T) {
	t.Parallel()
	var upstreamHost string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abs":
			w.Header().Set("Location", "http://"+upstreamHost+"/v2/x/blobs/uploads/1?_state=abc")
		case "/other":
			w.Header().Set("Location", "http://example.invalid/elsewhere")
		case "/rel":
			w.Header().Set("Location", "/v2/x/blobs/uploads/2")
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Got-Length", itoa(int64(len(body))))
			w.Header().Set("X-Got-Chunked", strings.Join(r.TransferEncoding, ","))
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer up.Close()
	upstreamHost = strings.TrimPrefix(up.URL, "http://")
	p := NewFaultProxy(up.URL)
	defer p.Close()
	tests := []struct{ path, want string }{
		{"/abs", "http://" + p.Host() + "/v2/x/blobs/uploads/1?_state=abc"},
		{"/other", "http://example.invalid/elsewhere"},
		{"/rel", "/v2/x/blobs/uploads/2"},
	}
	for _, tt := range tests {
		resp, err := http.Get(p.URL() + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Location"); got != tt.want {
			t.Errorf("%s: Location %q, want %q", tt.path, got, tt.want)
		}
	}
	// A streamed (chunked) request body arrives whole and still chunked.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 10; i++ {
			pw.Write(bytes.Repeat([]byte{'x'}, 1000))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPatch, p.URL()+"/echo", pr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Got-Length") != "10000" || resp.Header.Get("X-Got-Chunked") != "chunked" {
		t.Errorf("upstream got %s bytes, transfer encoding %q", resp.Header.Get("X-Got-Length"), resp.Header.Get("X-Got-Chunked"))
	}
	if rec := p.Requests()[3]; !rec.Chunked || rec.ContentLength != -1 || rec.Method != "PATCH" {
		t.Errorf("PATCH recorded as %+v", rec)
	}
}
