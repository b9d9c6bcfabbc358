package regserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/regserver"
	"github.com/opencontainers/go-digest"
)

// start starts a server for the test (closed at its end) with a
// temporary directory of the test's own, and returns it with a client that
// trusts it.
func start(t *testing.T, opts regserver.Options) (*regserver.Server, *http.Client) {
	t.Helper()
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	srv, err := regserver.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tr := &http.Transport{DisableCompression: true}
	if opts.TLS {
		if srv.Certificate() == nil {
			t.Fatal("a TLS server has no certificate")
		}
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		if !strings.HasPrefix(srv.URL(), "https://") {
			t.Fatalf("URL %s is not https", srv.URL())
		}
	} else if srv.Certificate() != nil || !strings.HasPrefix(srv.URL(), "http://") {
		t.Fatalf("plain server: certificate %v, URL %s", srv.Certificate(), srv.URL())
	}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{
		Transport:     tr,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return srv, c
}

// reply is a response with its body read.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// code returns the first error code of a distribution API error body.
func (r reply) code() string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.Body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// client sends requests to one server.
type client struct {
	t    *testing.T
	c    *http.Client
	base string
}

// do sends a request; target is a path (with query) or an absolute URL;
// hdr alternates header names and values.
func (c client) do(method, target string, body []byte, hdr ...string) reply {
	c.t.Helper()
	u := target
	if !strings.HasPrefix(u, "http") {
		u = c.base + target
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the body: %v", method, target, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// want fails the test unless r has the status (and, if code is not
// empty, the error code).
func (c client) want(r reply, status int, code string, what string) {
	c.t.Helper()
	if r.Status != status || (code != "" && r.code() != code) {
		c.t.Fatalf("%s: got %d %s (%s), want %d %s", what, r.Status, r.code(), bytes.TrimSpace(r.Body), status, code)
	}
}

// location resolves a Location header against the server.
func (c client) location(r reply) string {
	c.t.Helper()
	loc := r.Header.Get("Location")
	if loc == "" {
		c.t.Fatalf("no Location in a %d reply", r.Status)
	}
	base, _ := url.Parse(c.base)
	u, err := base.Parse(loc)
	if err != nil {
		c.t.Fatal(err)
	}
	return u.String()
}

// withQuery adds a query parameter to a URL.
func withQuery(u, k, v string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + url.QueryEscape(k) + "=" + url.QueryEscape(v)
}

// push uploads data monolithically to repo and returns its digest.
func (c client) push(repo string, data []byte) digest.Digest {
	c.t.Helper()
	d := digest.FromBytes(data)
	r := c.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), data)
	c.want(r, 201, "", "monolithic push")
	return d
}

// putManifest puts raw under ref.
func (c client) putManifest(repo, ref string, raw []byte, mediaType string) reply {
	c.t.Helper()
	var hdr []string
	if mediaType != "" {
		hdr = []string{"Content-Type", mediaType}
	}
	return c.do("PUT", "/v2/"+repo+"/manifests/"+ref, raw, hdr...)
}

func testData(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// manifestFor builds an OCI image manifest naming config and layers.
func manifestFor(config []byte, layers ...[]byte) []byte {
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": digest.FromBytes(b).String(), "size": len(b)}
	}
	var ls []map[string]any
	for _, l := range layers {
		ls = append(ls, desc("application/vnd.oci.image.layer.v1.tar", l))
	}
	raw, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        ls,
	})
	return raw
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// TestAPI exercises every endpoint over plain HTTP and over TLS.
func TestAPI(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			t.Parallel()
			srv, hc := start(t, regserver.Options{TLS: useTLS})
			c := client{t: t, c: hc, base: srv.URL()}
			testAPI(t, srv, c)
		})
	}
}

func testAPI(t *testing.T, srv *regserver.Server, c client) {
	t.Run("ping", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		for _, p := range []string{"/v2/", "/v2"} {
			r := c.do("GET", p, nil)
			c.want(r, 200, "", "GET "+p)
			if got := r.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
				t.Errorf("Docker-Distribution-API-Version %q", got)
			}
			if string(r.Body) != "{}" {
				t.Errorf("body %q", r.Body)
			}
		}
		c.want(c.do("HEAD", "/v2/", nil), 200, "", "HEAD /v2/")
		c.want(c.do("POST", "/v2/", nil), 405, "UNSUPPORTED", "POST /v2/")
		c.want(c.do("GET", "/v1/", nil), 404, "NOT_FOUND", "GET /v1/")
		c.want(c.do("GET", "/v2/foo/bar", nil), 404, "NOT_FOUND", "GET /v2/foo/bar")
	})

	t.Run("chunked", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		data := testData(100_000, 1)
		d := digest.FromBytes(data)
		r := c.do("POST", "/v2/chunked/app/blobs/uploads/", nil)
		c.want(r, 202, "", "POST")
		if r.Header.Get("Docker-Upload-UUID") == "" || r.Header.Get("Range") != "0-0" {
			t.Fatalf("POST headers %v", r.Header)
		}
		loc := c.location(r)
		if !strings.Contains(loc, "/v2/chunked/app/blobs/uploads/") {
			t.Fatalf("Location %s", loc)
		}
		// Three chunks, each where the last ended.
		cuts := []int{0, 30_000, 70_001, len(data)}
		for i := 0; i+1 < len(cuts); i++ {
			chunk := data[cuts[i]:cuts[i+1]]
			r = c.do("PATCH", loc, chunk, "Content-Type", "application/octet-stream",
				"Content-Range", fmt.Sprintf("%d-%d", cuts[i], cuts[i+1]-1))
			c.want(r, 202, "", fmt.Sprintf("PATCH %d", i))
			if want := fmt.Sprintf("0-%d", cuts[i+1]-1); r.Header.Get("Range") != want {
				t.Fatalf("PATCH %d: Range %q, want %q", i, r.Header.Get("Range"), want)
			}
			loc = c.location(r)
		}
		// Status.
		r = c.do("GET", loc, nil)
		c.want(r, 204, "", "upload status")
		if want := fmt.Sprintf("0-%d", len(data)-1); r.Header.Get("Range") != want {
			t.Fatalf("status Range %q, want %q", r.Header.Get("Range"), want)
		}
		// Out of order: a chunk that does not start where the upload ends.
		r = c.do("PATCH", loc, []byte("xx"), "Content-Range", "5-6")
		c.want(r, 416, "", "out-of-order PATCH")
		if want := fmt.Sprintf("0-%d", len(data)-1); r.Header.Get("Range") != want {
			t.Errorf("416 Range %q, want %q", r.Header.Get("Range"), want)
		}
		if c.location(r) != loc {
			t.Errorf("416 Location %q, want %q", c.location(r), loc)
		}
		// A range that does not match the body.
		r = c.do("PATCH", loc, []byte("xyz"), "Content-Range", fmt.Sprintf("%d-%d", len(data), len(data)+9))
		c.want(r, 416, "", "PATCH with a short body")
		r = c.do("PATCH", loc, []byte("xyz"), "Content-Range", "bogus")
		c.want(r, 400, "BLOB_UPLOAD_INVALID", "PATCH with a bad Content-Range")
		// None of the refused chunks were kept.
		r = c.do("GET", loc, nil)
		if want := fmt.Sprintf("0-%d", len(data)-1); r.Header.Get("Range") != want {
			t.Fatalf("status after refused chunks: Range %q, want %q", r.Header.Get("Range"), want)
		}
		c.want(c.do("PUT", loc, nil), 400, "DIGEST_INVALID", "PUT without digest")
		r = c.do("PUT", withQuery(loc, "digest", d.String()), nil)
		c.want(r, 201, "", "PUT")
		if r.Header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("Docker-Content-Digest %q", r.Header.Get("Docker-Content-Digest"))
		}
		if got := r.Header.Get("Location"); got != "/v2/chunked/app/blobs/"+d.String() {
			t.Fatalf("Location %q", got)
		}
		// The session is over.
		c.want(c.do("GET", loc, nil), 404, "BLOB_UPLOAD_UNKNOWN", "status after PUT")
		c.want(c.do("PATCH", loc, []byte("x")), 404, "BLOB_UPLOAD_UNKNOWN", "PATCH after PUT")

		b, ok := srv.Blob(d)
		if !ok || b.Size != int64(len(data)) || b.Digest != d || b.Repo != "chunked/app" {
			t.Fatalf("Blob(%s) = %+v, %v", d, b, ok)
		}
		rd := b.Open()
		got, _ := io.ReadAll(rd)
		rd.Close()
		if !bytes.Equal(got, data) {
			t.Fatal("the blob's bytes differ")
		}
		// Read back, from any repository.
		for _, repo := range []string{"chunked/app", "other"} {
			r = c.do("HEAD", "/v2/"+repo+"/blobs/"+d.String(), nil)
			c.want(r, 200, "", "HEAD blob")
			if r.Header.Get("Content-Length") != strconv.Itoa(len(data)) || r.Header.Get("Docker-Content-Digest") != d.String() || len(r.Body) != 0 {
				t.Fatalf("HEAD blob: %v, %d body bytes", r.Header, len(r.Body))
			}
			r = c.do("GET", "/v2/"+repo+"/blobs/"+d.String(), nil)
			c.want(r, 200, "", "GET blob")
			if !bytes.Equal(r.Body, data) {
				t.Fatal("GET blob: bytes differ")
			}
		}
		r = c.do("GET", "/v2/chunked/app/blobs/"+d.String(), nil, "Range", "bytes=10-19")
		c.want(r, 206, "", "GET blob range")
		if !bytes.Equal(r.Body, data[10:20]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(data)) {
			t.Fatalf("range: %q %v", r.Body, r.Header)
		}
		r = c.do("GET", "/v2/chunked/app/blobs/"+d.String(), nil, "Range", fmt.Sprintf("bytes=%d-", len(data)+5))
		c.want(r, 416, "", "GET blob unsatisfiable range")
	})

	t.Run("monolithic", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		data := testData(5000, 2)
		d := digest.FromBytes(data)
		r := c.do("POST", "/v2/mono/blobs/uploads/?digest="+d.String(), data)
		c.want(r, 201, "", "monolithic POST")
		if r.Header.Get("Docker-Content-Digest") != d.String() || r.Header.Get("Location") != "/v2/mono/blobs/"+d.String() {
			t.Fatalf("headers %v", r.Header)
		}
		r = c.do("GET", "/v2/mono/blobs/"+d.String(), nil)
		if r.Status != 200 || !bytes.Equal(r.Body, data) {
			t.Fatalf("GET: %d", r.Status)
		}
		// The same bytes again are fine.
		c.want(c.do("POST", "/v2/mono/blobs/uploads/?digest="+d.String(), data), 201, "", "second monolithic POST")
		// An empty blob.
		empty := digest.FromBytes(nil)
		c.want(c.do("POST", "/v2/mono/blobs/uploads/?digest="+empty.String(), []byte{}), 201, "", "empty blob")
		r = c.do("GET", "/v2/mono/blobs/"+empty.String(), nil)
		if r.Status != 200 || len(r.Body) != 0 || r.Header.Get("Content-Length") != "0" {
			t.Fatalf("GET empty: %d %v", r.Status, r.Header)
		}
		// sha512.
		d512 := digest.NewDigestFromBytes(digest.SHA512, func() []byte { s := sha512.Sum512(data); return s[:] }())
		c.want(c.do("POST", "/v2/mono/blobs/uploads/?digest="+d512.String(), data), 201, "", "sha512 blob")
		c.want(c.do("HEAD", "/v2/mono/blobs/"+d512.String(), nil), 200, "", "HEAD sha512 blob")
	})

	t.Run("put-with-body", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		data := testData(3000, 3)
		d := digest.FromBytes(data)
		r := c.do("POST", "/v2/putbody/blobs/uploads/", nil)
		c.want(r, 202, "", "POST")
		r = c.do("PUT", withQuery(c.location(r), "digest", d.String()), data, "Content-Type", "application/octet-stream")
		c.want(r, 201, "", "PUT with body")
		// A PATCH, then the rest with the PUT.
		r = c.do("POST", "/v2/putbody/blobs/uploads/", nil)
		r = c.do("PATCH", c.location(r), data[:1000])
		c.want(r, 202, "", "PATCH")
		r = c.do("PUT", withQuery(c.location(r), "digest", d.String()), data[1000:], "Content-Range", fmt.Sprintf("1000-%d", len(data)-1))
		c.want(r, 201, "", "PUT with the last chunk")
		r = c.do("GET", "/v2/putbody/blobs/"+d.String(), nil)
		if !bytes.Equal(r.Body, data) {
			t.Fatal("bytes differ")
		}
	})

	t.Run("wrong-digest", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		data := testData(4000, 4)
		claimed := digest.FromBytes([]byte("something else"))
		r := c.do("POST", "/v2/wrong/blobs/uploads/?digest="+claimed.String(), data)
		c.want(r, 400, "DIGEST_INVALID", "monolithic POST, wrong digest")
		if r.Header.Get("Location") != "" || r.Header.Get("Docker-Content-Digest") != "" {
			t.Errorf("an error carries %v", r.Header)
		}
		r = c.do("POST", "/v2/wrong/blobs/uploads/", nil)
		loc := c.location(r)
		c.want(c.do("PATCH", loc, data), 202, "", "PATCH")
		r = c.do("PUT", withQuery(loc, "digest", claimed.String()), nil)
		c.want(r, 400, "DIGEST_INVALID", "PUT, wrong digest")
		c.want(c.do("PUT", withQuery(c.location(c.do("POST", "/v2/wrong/blobs/uploads/", nil)), "digest", "sha256:nothex"), data), 400, "DIGEST_INVALID", "PUT, malformed digest")
		c.want(c.do("POST", "/v2/wrong/blobs/uploads/?digest=md5:abc", data), 400, "DIGEST_INVALID", "POST, unsupported algorithm")
		for _, d := range []digest.Digest{claimed, digest.FromBytes(data)} {
			if _, ok := srv.Blob(d); ok {
				t.Errorf("blob %s stored", d)
			}
			c.want(c.do("HEAD", "/v2/wrong/blobs/"+d.String(), nil), 404, "", "HEAD refused blob")
			c.want(c.do("GET", "/v2/wrong/blobs/"+d.String(), nil), 404, "BLOB_UNKNOWN", "GET refused blob")
		}
		c.want(c.do("GET", "/v2/wrong/blobs/sha256:1234", nil), 400, "DIGEST_INVALID", "GET malformed digest")
		c.want(c.do("DELETE", "/v2/wrong/blobs/"+digest.FromBytes(data).String(), nil), 405, "UNSUPPORTED", "DELETE blob")
	})

	t.Run("cancel", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		r := c.do("POST", "/v2/cancel/blobs/uploads/", nil)
		loc := c.location(r)
		c.want(c.do("PATCH", loc, []byte("abc")), 202, "", "PATCH")
		// Another repository does not see the session.
		other := strings.Replace(loc, "/v2/cancel/", "/v2/other/", 1)
		c.want(c.do("GET", other, nil), 404, "BLOB_UPLOAD_UNKNOWN", "status from another repo")
		c.want(c.do("DELETE", loc, nil), 204, "", "DELETE upload")
		c.want(c.do("GET", loc, nil), 404, "BLOB_UPLOAD_UNKNOWN", "status after DELETE")
		c.want(c.do("DELETE", loc, nil), 404, "BLOB_UPLOAD_UNKNOWN", "second DELETE")
		c.want(c.do("PUT", withQuery(loc, "digest", digest.FromBytes([]byte("abc")).String()), nil), 404, "BLOB_UPLOAD_UNKNOWN", "PUT after DELETE")
		c.want(c.do("GET", "/v2/cancel/blobs/uploads/nosuchid", nil), 404, "BLOB_UPLOAD_UNKNOWN", "unknown id")
		c.want(c.do("GET", "/v2/cancel/blobs/uploads/", nil), 405, "UNSUPPORTED", "GET of uploads/")
	})

	t.Run("mount", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		d := c.push("mount/src", testData(700, 5))
		r := c.do("POST", "/v2/mount/dst/blobs/uploads/?mount="+d.String()+"&from=mount/src", nil)
		c.want(r, 201, "", "mount of a held blob")
		if r.Header.Get("Location") != "/v2/mount/dst/blobs/"+d.String() || r.Header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("mount headers %v", r.Header)
		}
		// Without from, too.
		c.want(c.do("POST", "/v2/mount/dst2/blobs/uploads/?mount="+d.String(), nil), 201, "", "anonymous mount")
		unknown := digest.FromBytes([]byte("never pushed"))
		for _, q := range []string{"mount=" + unknown.String() + "&from=mount/src", "mount=notadigest&from=mount/src"} {
			r = c.do("POST", "/v2/mount/dst/blobs/uploads/?"+q, nil)
			c.want(r, 202, "", "mount of an unknown blob")
			loc := c.location(r)
			if !strings.Contains(loc, "/v2/mount/dst/blobs/uploads/") {
				t.Fatalf("Location %s", loc)
			}
			c.want(c.do("GET", loc, nil), 204, "", "status of the upload a failed mount began")
		}
	})

	t.Run("manifests", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		config := []byte(`{"architecture":"amd64","os":"linux"}`)
		layer := testData(1234, 6)
		c.push("man/app", config)
		c.push("man/app", layer)
		raw := manifestFor(config, layer)
		md := digest.FromBytes(raw)
		r := c.putManifest("man/app", "v1", raw, ociManifest)
		c.want(r, 201, "", "PUT manifest by tag")
		if r.Header.Get("Docker-Content-Digest") != md.String() || r.Header.Get("Location") != "/v2/man/app/manifests/"+md.String() {
			t.Fatalf("PUT headers %v", r.Header)
		}
		for _, ref := range []string{"v1", md.String()} {
			r = c.do("GET", "/v2/man/app/manifests/"+ref, nil, "Accept", ociManifest)
			c.want(r, 200, "", "GET manifest "+ref)
			if !bytes.Equal(r.Body, raw) || r.Header.Get("Content-Type") != ociManifest || r.Header.Get("Docker-Content-Digest") != md.String() {
				t.Fatalf("GET %s: %v %q", ref, r.Header, r.Body)
			}
			r = c.do("HEAD", "/v2/man/app/manifests/"+ref, nil)
			c.want(r, 200, "", "HEAD manifest "+ref)
			if len(r.Body) != 0 || r.Header.Get("Content-Length") != strconv.Itoa(len(raw)) || r.Header.Get("Content-Type") != ociManifest || r.Header.Get("Docker-Content-Digest") != md.String() {
				t.Fatalf("HEAD %s: %v", ref, r.Header)
			}
		}
		m, ok := srv.Manifest("man/app", "v1")
		if !ok || m.Digest != md || m.Repo != "man/app" || m.Reference != "v1" || m.IsIndex() || !bytes.Equal(m.Raw, raw) {
			t.Fatalf("Manifest = %+v, %v", m, ok)
		}
		// Not visible from another repository.
		c.want(c.do("GET", "/v2/man/other/manifests/v1", nil), 404, "MANIFEST_UNKNOWN", "GET from another repo")
		c.want(c.do("GET", "/v2/man/app/manifests/v2", nil), 404, "MANIFEST_UNKNOWN", "GET unknown tag")
		c.want(c.do("HEAD", "/v2/man/app/manifests/"+digest.FromBytes([]byte("x")).String(), nil), 404, "", "HEAD unknown digest")

		// By digest; an index, typed by its body.
		index, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
			"manifests": []any{map[string]any{"mediaType": ociManifest, "digest": md, "size": len(raw)}},
		})
		id := digest.FromBytes(index)
		r = c.putManifest("man/app", id.String(), index, "")
		c.want(r, 201, "", "PUT index by digest")
		if r.Header.Get("Docker-Content-Digest") != id.String() {
			t.Fatalf("PUT index: %v", r.Header)
		}
		r = c.do("GET", "/v2/man/app/manifests/"+id.String(), nil)
		if r.Status != 200 || r.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" {
			t.Fatalf("GET index: %d %v", r.Status, r.Header)
		}
		if m, ok := srv.Manifest("man/app", id.String()); !ok || !m.IsIndex() {
			t.Fatalf("index: %+v %v", m, ok)
		}
		// A body without mediaType and no Content-Type is Docker's schema 2.
		bare := []byte(`{"schemaVersion":2}`)
		c.want(c.putManifest("man/app", "bare", bare, ""), 201, "", "PUT untyped")
		if r = c.do("GET", "/v2/man/app/manifests/bare", nil); r.Header.Get("Content-Type") != "application/vnd.docker.distribution.manifest.v2+json" {
			t.Fatalf("untyped: %v", r.Header)
		}
		// Refusals.
		r = c.putManifest("man/app", digest.FromBytes([]byte("other")).String(), raw, ociManifest)
		c.want(r, 400, "DIGEST_INVALID", "PUT by a digest that does not match")
		if r.Header.Get("Location") != "" || r.Header.Get("Docker-Content-Digest") != "" {
			t.Errorf("refusal carries %v", r.Header)
		}
		c.want(c.putManifest("man/app", "v3", []byte("not json"), ociManifest), 400, "MANIFEST_INVALID", "PUT non-JSON")
		c.want(c.putManifest("man/app", "-bad-tag", raw, ociManifest), 400, "MANIFEST_INVALID", "PUT bad tag")
		c.want(c.putManifest("man/app", strings.Repeat("t", 129), raw, ociManifest), 400, "MANIFEST_INVALID", "PUT long tag")
		c.want(c.putManifest("man/app", "v4", bytes.Repeat([]byte(" "), 4<<20+1), ociManifest), 413, "SIZE_INVALID", "PUT huge manifest")
		c.want(c.do("DELETE", "/v2/man/app/manifests/v1", nil), 405, "UNSUPPORTED", "DELETE manifest")
		for _, ref := range []string{"v3", "-bad-tag", "v4"} {
			if _, ok := srv.Manifest("man/app", ref); ok {
				t.Errorf("refused manifest %s stored", ref)
			}
		}
		// A tag moves.
		raw2 := manifestFor(config)
		c.want(c.putManifest("man/app", "v1", raw2, ociManifest), 201, "", "PUT v1 again")
		if r = c.do("GET", "/v2/man/app/manifests/v1", nil); !bytes.Equal(r.Body, raw2) {
			t.Fatal("tag did not move")
		}
		if r = c.do("GET", "/v2/man/app/manifests/"+md.String(), nil); !bytes.Equal(r.Body, raw) {
			t.Fatal("old digest gone")
		}
	})

	t.Run("tags", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
		for _, tag := range []string{"d", "b", "a", "c"} {
			c.want(c.putManifest("tags/app", tag, raw, ""), 201, "", "PUT "+tag)
		}
		list := func(q string) ([]string, reply) {
			r := c.do("GET", "/v2/tags/app/tags/list"+q, nil)
			c.want(r, 200, "", "tags/list"+q)
			var body struct {
				Name string   `json:"name"`
				Tags []string `json:"tags"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil || body.Name != "tags/app" || body.Tags == nil {
				t.Fatalf("tags/list%s: %q %v", q, r.Body, err)
			}
			return body.Tags, r
		}
		tests := []struct {
			q    string
			want []string
			link string
		}{
			{"", []string{"a", "b", "c", "d"}, ""},
			{"?n=2", []string{"a", "b"}, `</v2/tags/app/tags/list?last=b&n=2>; rel="next"`},
			{"?n=2&last=b", []string{"c", "d"}, ""},
			{"?last=c", []string{"d"}, ""},
			{"?last=bb", []string{"c", "d"}, ""},
			{"?last=d", []string{}, ""},
			{"?n=0", []string{}, ""},
			{"?n=10", []string{"a", "b", "c", "d"}, ""},
			{"?n=1&last=a", []string{"b"}, `</v2/tags/app/tags/list?last=b&n=1>; rel="next"`},
		}
		for _, tt := range tests {
			got, r := list(tt.q)
			if !slices.Equal(got, tt.want) {
				t.Errorf("tags/list%s = %v, want %v", tt.q, got, tt.want)
			}
			if r.Header.Get("Link") != tt.link {
				t.Errorf("tags/list%s: Link %q, want %q", tt.q, r.Header.Get("Link"), tt.link)
			}
		}
		c.want(c.do("GET", "/v2/tags/app/tags/list?n=-1", nil), 400, "PAGINATION_NUMBER_INVALID", "n=-1")
		c.want(c.do("GET", "/v2/tags/app/tags/list?n=x", nil), 400, "PAGINATION_NUMBER_INVALID", "n=x")
		c.want(c.do("GET", "/v2/tags/none/tags/list", nil), 404, "NAME_UNKNOWN", "unknown repo")
		// A repository with a manifest pushed by digest only has no tags.
		c.want(c.putManifest("tags/bydigest", digest.FromBytes(raw).String(), raw, ""), 201, "", "PUT by digest")
		if r := c.do("GET", "/v2/tags/bydigest/tags/list", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"tags":[]`) {
			t.Errorf("digest-only repo: %d %s", r.Status, r.Body)
		}
	})

	t.Run("names", func(t *testing.T) {
		c := client{t: t, c: c.c, base: c.base}
		d := digest.FromBytes([]byte("x")).String()
		bad := []string{"UPPER", "a..b", "a/", "-a", "a-", "a//b", "a b", "a%0d%0ab", "a%00b", "a:b", "_a", strings.Repeat("a", 256), "a%2F..%2Fb"}
		for _, name := range bad {
			for _, p := range []string{
				"/v2/" + name + "/tags/list",
				"/v2/" + name + "/manifests/latest",
				"/v2/" + name + "/blobs/" + d,
				"/v2/" + name + "/blobs/uploads/",
				"/v2/" + name + "/blobs/uploads/someid",
			} {
				method := "GET"
				if strings.HasSuffix(p, "/uploads/") {
					method = "POST"
				}
				c.want(c.do(method, p, nil), 400, "NAME_INVALID", method+" "+p)
			}
		}
		// Names the grammar allows, including ones whose components are
		// the API's own words.
		good := []string{"a", "a.b_c__d--e/f-g", "x/blobs/uploads", "a/manifests/b", "r/tags", "blobs", "uploads/blobs", "t/tags/list/x", strings.Repeat("a", 255)}
		data := []byte("named blob")
		bd := digest.FromBytes(data)
		raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}`)
		for _, name := range good {
			r := c.do("POST", "/v2/"+name+"/blobs/uploads/", nil)
			c.want(r, 202, "", "POST in "+name)
			loc := c.location(r)
			c.want(c.do("GET", loc, nil), 204, "", "upload status in "+name)
			c.want(c.do("PUT", withQuery(loc, "digest", bd.String()), data), 201, "", "PUT in "+name)
			c.want(c.do("GET", "/v2/"+name+"/blobs/"+bd.String(), nil), 200, "", "GET blob in "+name)
			c.want(c.putManifest(name, "latest", raw, ""), 201, "", "PUT manifest in "+name)
			c.want(c.do("GET", "/v2/"+name+"/manifests/latest", nil), 200, "", "GET manifest in "+name)
			r = c.do("GET", "/v2/"+name+"/tags/list", nil)
			c.want(r, 200, "", "tags in "+name)
			if !strings.Contains(string(r.Body), `"tags":["latest"]`) {
				t.Errorf("tags in %s: %s", name, r.Body)
			}
			if _, ok := srv.Manifest(name, "latest"); !ok {
				t.Errorf("manifest in %s not stored under its name", name)
			}
		}
	})
}

// TestHooks checks that the hooks are called, and that their answers count.
func TestHooks(t *testing.T) {
	var mu sync.Mutex
	received := map[digest.Digest]int{}
	var kept []*regserver.Blob
	var refuse error
	var manifests []*regserver.Manifest
	exists := map[digest.Digest]int64{}
	srv, hc := start(t, regserver.Options{Hooks: regserver.Hooks{
		BlobReceived: func(repo string, b *regserver.Blob) {
			mu.Lock()
			defer mu.Unlock()
			rd := b.Open()
			got, err := digest.SHA256.FromReader(rd)
			rd.Close()
			if err != nil || got != b.Digest || repo != b.Repo {
				t.Errorf("BlobReceived(%s, %+v): content digest %s, %v", repo, b, got, err)
			}
			received[b.Digest]++
			kept = append(kept, b)
		},
		ManifestReceived: func(ctx context.Context, m *regserver.Manifest) error {
			mu.Lock()
			defer mu.Unlock()
			if ctx == nil || m.Digest != digest.FromBytes(m.Raw) {
				t.Errorf("ManifestReceived(%+v)", m)
			}
			manifests = append(manifests, m)
			return refuse
		},
		Exists: func(repo string, d digest.Digest) (int64, bool) {
			mu.Lock()
			defer mu.Unlock()
			size, ok := exists[d]
			return size, ok
		},
	}})
	c := client{t: t, c: hc, base: srv.URL()}

	a, b := testData(2000, 7), testData(3000, 8)
	da := c.push("hooks/one", a)
	c.push("hooks/two", a) // the same blob again: no second call
	r := c.do("POST", "/v2/hooks/two/blobs/uploads/", nil)
	r = c.do("PATCH", c.location(r), b[:100])
	db := digest.FromBytes(b)
	c.want(c.do("PUT", withQuery(c.location(r), "digest", db.String()), b[100:]), 201, "", "chunked")
	c.want(c.do("POST", "/v2/hooks/three/blobs/uploads/?mount="+da.String(), nil), 201, "", "mount")
	// Refused uploads are never announced.
	c.want(c.do("POST", "/v2/hooks/two/blobs/uploads/?digest="+db.String(), a), 400, "DIGEST_INVALID", "wrong digest")
	mu.Lock()
	if len(received) != 2 || received[da] != 1 || received[db] != 1 {
		t.Errorf("BlobReceived calls: %v", received)
	}
	mu.Unlock()

	raw := manifestFor(a, b)
	md := digest.FromBytes(raw)
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"registry error", &regserver.Error{Status: http.StatusForbidden, Code: "DENIED", Message: "no"}, 403, "DENIED"},
		{"wrapped registry error", fmt.Errorf("wrapped: %w", &regserver.Error{Status: http.StatusConflict, Code: "MANIFEST_BLOB_UNKNOWN", Message: "missing"}), 409, "MANIFEST_BLOB_UNKNOWN"},
		{"registry error without status", &regserver.Error{Code: "DENIED"}, 500, "DENIED"},
		{"plain error", errors.New("disk full"), 500, "UNKNOWN"},
		{"accepted", nil, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			refuse = tt.err
			manifests = nil
			mu.Unlock()
			c := client{t: t, c: hc, base: srv.URL()}
			r := c.putManifest("hooks/one", "v1", raw, ociManifest)
			c.want(r, tt.status, tt.code, "PUT manifest")
			mu.Lock()
			if len(manifests) != 1 || manifests[0].Reference != "v1" || manifests[0].Repo != "hooks/one" || manifests[0].MediaType != ociManifest {
				t.Errorf("ManifestReceived calls: %+v", manifests)
			}
			mu.Unlock()
			_, stored := srv.Manifest("hooks/one", "v1")
			if stored != (tt.err == nil) {
				t.Errorf("stored: %v", stored)
			}
			if tt.err != nil && (r.Header.Get("Location") != "" || r.Header.Get("Docker-Content-Digest") != "") {
				t.Errorf("refusal carries %v", r.Header)
			}
			if tt.err != nil {
				c.want(c.do("GET", "/v2/hooks/one/manifests/"+md.String(), nil), 404, "MANIFEST_UNKNOWN", "refused manifest")
			}
		})
	}

	// Exists answers HEAD (only) for blobs the server does not hold.
	cached := digest.FromBytes([]byte("in some cache"))
	mu.Lock()
	exists[cached] = 12345
	exists[da] = 1 // held: the server's own answer wins
	mu.Unlock()
	r = c.do("HEAD", "/v2/hooks/one/blobs/"+cached.String(), nil)
	c.want(r, 200, "", "HEAD of a blob Exists knows")
	if r.Header.Get("Content-Length") != "12345" || r.Header.Get("Docker-Content-Digest") != cached.String() {
		t.Errorf("HEAD via Exists: %v", r.Header)
	}
	c.want(c.do("GET", "/v2/hooks/one/blobs/"+cached.String(), nil), 404, "BLOB_UNKNOWN", "GET of a blob only Exists knows")
	c.want(c.do("HEAD", "/v2/hooks/one/blobs/"+digest.FromBytes([]byte("nowhere")).String(), nil), 404, "", "HEAD of a blob nobody knows")
	if r = c.do("HEAD", "/v2/hooks/one/blobs/"+da.String(), nil); r.Header.Get("Content-Length") != strconv.Itoa(len(a)) {
		t.Errorf("HEAD of a held blob: %v", r.Header)
	}
}

// rawRequest sends one request over a new connection, as written, and
// returns the whole response as received.
func rawRequest(t *testing.T, dial func() (net.Conn, error), req string) []byte {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, io.EOF) && len(resp) == 0 {
		t.Fatalf("reading the response: %v", err)
	}
	return resp
}

// checkHeaderBlock fails unless resp's header block is well formed and
// holds no header the request could have injected.
func checkHeaderBlock(t *testing.T, what string, resp []byte) {
	t.Helper()
	head, _, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		t.Errorf("%s: no end of the header block in %q", what, resp)
		return
	}
	lines := strings.Split(string(head), "\r\n")
	if !strings.HasPrefix(lines[0], "HTTP/1.1 ") {
		t.Errorf("%s: status line %q", what, lines[0])
	}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			t.Errorf("%s: malformed header line %q", what, l)
			continue
		}
		if strings.EqualFold(name, "X-Injected") || strings.EqualFold(name, "Set-Cookie") {
			t.Errorf("%s: injected header %q", what, l)
		}
		for _, r := range value {
			if (r < 0x20 && r != '\t') || r == 0x7f {
				t.Errorf("%s: control character %q in header %q", what, r, l)
				break
			}
		}
	}
	// The response must also parse as exactly one response.
	br := bufio.NewReader(bytes.NewReader(resp))
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Errorf("%s: %v in %q", what, err, resp)
	}
}

// TestHeaderSafety sends request data that would split a response or add
// a header if echoed into one, and reads the raw response bytes.
func TestHeaderSafety(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			t.Parallel()
			srv, hc := start(t, regserver.Options{TLS: useTLS})
			c := client{t: t, c: hc, base: srv.URL()}
			dial := func() (net.Conn, error) { return net.Dial("tcp", srv.Addr()) }
			if useTLS {
				pool := x509.NewCertPool()
				pool.AddCert(srv.Certificate())
				dial = func() (net.Conn, error) {
					return tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
				}
			}
			testHeaderSafety(t, c, dial)
		})
	}
}

func testHeaderSafety(t *testing.T, c client, dial func() (net.Conn, error)) {
	// Something real to aim at.
	data := []byte("target blob")
	d := c.push("safe/app", data)
	r := c.do("POST", "/v2/safe/app/blobs/uploads/", nil)
	c.want(r, 202, "", "POST")
	loc := r.Header.Get("Location") // a path
	// A manifest whose mediaType (read from the body) tries to inject.
	evil := []byte(`{"schemaVersion":2,"mediaType":"application/x\r\nX-Injected: 1\r\n\r\n\u0000HTTP/1.1 200 OK"}`)
	c.want(c.putManifest("safe/app", "evil", evil, ""), 201, "", "PUT evil manifest")

	evils := []string{"%0d%0aX-Injected:%201", "%0aX-Injected:%201", "%0dX-Injected:%201", "%00X-Injected:%201", "%0d%0a%0d%0aHTTP/1.1%20200%20OK", "%0d%0aSet-Cookie:%20a=b", "\u2028X-Injected: 1"}
	var targets []struct{ method, target string }
	add := func(method, target string) {
		targets = append(targets, struct{ method, target string }{method, target})
	}
	for _, e := range evils {
		e = url.PathEscape(e) // leaves the %XX as they are, escapes the rest
		e = strings.ReplaceAll(e, "%25", "%")
		add("GET", "/v2/safe"+e+"/app/tags/list")
		add("GET", "/v2/safe/app"+e+"/manifests/latest")
		add("PUT", "/v2/safe/app"+e+"/manifests/latest")
		add("GET", "/v2/safe/app/manifests/latest"+e)
		add("PUT", "/v2/safe/app/manifests/latest"+e)
		add("GET", "/v2/safe/app/manifests/"+d.String()+e)
		add("HEAD", "/v2/safe/app/blobs/"+d.String()+e)
		add("GET", "/v2/safe/app/blobs/"+d.String()+e)
		add("GET", "/v2/safe/app"+e+"/blobs/"+d.String())
		add("POST", "/v2/safe/app"+e+"/blobs/uploads/")
		add("POST", "/v2/safe/app/blobs/uploads/?mount="+d.String()+e+"&from=safe/app")
		add("POST", "/v2/safe/app/blobs/uploads/?mount="+d.String()+"&from=safe/app"+e)
		add("POST", "/v2/safe/app/blobs/uploads/?mount="+e+"&from="+e)
		add("POST", "/v2/safe/app/blobs/uploads/?digest="+d.String()+e)
		add("GET", loc+e)
		add("PATCH", loc+e)
		add("PUT", loc+e+"?digest="+d.String())
		add("PUT", loc+"?digest="+d.String()+e)
		add("DELETE", loc+e)
		add("GET", "/v2/safe/app/tags/list?n=1&last="+e)
		add("GET", "/v2/safe/app/tags/list?n="+e)
		add("GET", "/v2/"+e)
		add("GET", e)
	}
	add("GET", "/v2/safe/app/manifests/evil")
	add("HEAD", "/v2/safe/app/manifests/evil")
	add("GET", "/v2/safe/app/tags/list?n=0&last=evil%0d%0aX-Injected:%201")
	for _, tt := range targets {
		body := "x"
		req := tt.method + " " + tt.target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		resp := rawRequest(t, dial, req)
		checkHeaderBlock(t, tt.method+" "+tt.target, resp)
		// Paths under /v2/ reach the server's handler (not only Go's
		// request parser), which marks its answers.
		if strings.HasPrefix(tt.target, "/v2/") && !bytes.Contains(resp, []byte("\r\nDocker-Distribution-Api-Version: registry/2.0\r\n")) {
			t.Errorf("%s %s: not answered by the registry: %q", tt.method, tt.target, resp)
		}
	}
	// The server still works.
	c.want(c.do("GET", "/v2/safe/app/blobs/"+d.String(), nil), 200, "", "GET after the attempts")
}

// TestClose checks what Close leaves behind.
func TestClose(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			srv, hc := start(t, regserver.Options{TLS: useTLS, TempDir: tmp})
			c := client{t: t, c: hc, base: srv.URL()}
			data := testData(200_000, 9)
			d := c.push("close/app", data)
			// An upload left open.
			r := c.do("POST", "/v2/close/app/blobs/uploads/", nil)
			c.want(c.do("PATCH", c.location(r), data[:1000]), 202, "", "PATCH")
			b, ok := srv.Blob(d)
			if !ok {
				t.Fatal("blob not held")
			}
			rd := b.Open()
			defer rd.Close()
			head := make([]byte, 10)
			if _, err := io.ReadFull(rd, head); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(tmp)
			if len(entries) != 0 {
				t.Errorf("files in the temporary directory while serving: %v", entries)
			}
			addr := srv.Addr()
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			if err := srv.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if conn, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				conn.Close()
				t.Errorf("%s still accepts connections after Close", addr)
			}
			entries, err := os.ReadDir(tmp)
			if err != nil || len(entries) != 0 {
				t.Errorf("temporary directory after Close: %v %v", entries, err)
			}
			if _, ok := srv.Blob(d); ok {
				t.Error("blob still held after Close")
			}
			// The open reader still reads every byte.
			rest, err := io.ReadAll(rd)
			if err != nil || !bytes.Equal(append(head, rest...), data) {
				t.Fatalf("reader after Close: %d bytes, %v", len(rest), err)
			}
			if _, err := rd.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if all, err := io.ReadAll(rd); err != nil || !bytes.Equal(all, data) {
				t.Fatalf("reader after Close, again: %v", err)
			}
		})
	}
}

// TestCloseWhileBusy closes the server while a hook holds a request.
func TestCloseWhileBusy(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	srv, hc := start(t, regserver.Options{Hooks: regserver.Hooks{
		ManifestReceived: func(ctx context.Context, m *regserver.Manifest) error {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	}})
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("PUT", srv.URL()+"/v2/busy/manifests/v1", strings.NewReader(`{"schemaVersion":2}`))
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Close did not return while a hook was running")
	}
	<-done // answered or cut off: either way, the client is released
}

// progress records what the server tracks.
type progress struct {
	mu       sync.Mutex
	trackers []*tracker
}

type tracker struct {
	p     *progress
	name  string
	added int64
	done  int
	err   error
}

func (p *progress) Track(name string, total int64) stages.Tracker {
	p.mu.Lock()
	defer p.mu.Unlock()
	tr := &tracker{p: p, name: name}
	p.trackers = append(p.trackers, tr)
	return tr
}

func (tr *tracker) Add(n int64) {
	tr.p.mu.Lock()
	tr.added += n
	tr.p.mu.Unlock()
}

func (tr *tracker) Done(err error) {
	tr.p.mu.Lock()
	tr.done++
	tr.err = err
	tr.p.mu.Unlock()
}

// TestProgress checks that every upload is tracked, and ended once.
func TestProgress(t *testing.T) {
	p := &progress{}
	srv, hc := start(t, regserver.Options{Progress: p})
	c := client{t: t, c: hc, base: srv.URL()}
	data := testData(10_000, 10)
	c.push("prog/app", data)                                                                                                  // 1: done
	c.want(c.do("POST", "/v2/prog/app/blobs/uploads/?digest="+digest.FromBytes(nil).String(), data), 400, "", "wrong digest") // 2: failed
	r := c.do("POST", "/v2/prog/app/blobs/uploads/", nil)                                                                     // 3: cancelled
	c.do("PATCH", c.location(r), data[:10])
	c.want(c.do("DELETE", c.location(r), nil), 204, "", "DELETE")
	r = c.do("POST", "/v2/prog/app/blobs/uploads/", nil) // 4: chunked, done
	r = c.do("PATCH", c.location(r), data[:4000])
	c.want(c.do("PUT", withQuery(c.location(r), "digest", digest.FromBytes(data).String()), data[4000:]), 201, "", "PUT")
	r = c.do("POST", "/v2/prog/app/blobs/uploads/", nil) // 5: left open, abandoned by Close
	c.do("PATCH", c.location(r), data[:5])
	c.want(c.do("POST", "/v2/prog/app/blobs/uploads/?mount="+digest.FromBytes(data).String(), nil), 201, "", "mount") // not tracked
	srv.Close()

	p.mu.Lock()
	defer p.mu.Unlock()
	type want struct {
		added int64
		ok    bool
	}
	wants := []want{{10_000, true}, {10_000, false}, {10, false}, {10_000, true}, {5, false}}
	if len(p.trackers) != len(wants) {
		t.Fatalf("%d trackers, want %d", len(p.trackers), len(wants))
	}
	for i, w := range wants {
		tr := p.trackers[i]
		if tr.done != 1 || tr.added != w.added || (tr.err == nil) != w.ok || !strings.Contains(tr.name, "prog/app") {
			t.Errorf("tracker %d: %+v, want %+v", i, tr, w)
		}
	}
}

// TestConcurrentPushes pushes the same blobs from many clients at once.
func TestConcurrentPushes(t *testing.T) {
	var mu sync.Mutex
	received := map[digest.Digest]int{}
	srv, hc := start(t, regserver.Options{Hooks: regserver.Hooks{BlobReceived: func(_ string, b *regserver.Blob) {
		mu.Lock()
		received[b.Digest]++
		mu.Unlock()
	}}})
	blobs := [][]byte{testData(50_000, 11), testData(70_000, 12), testData(1, 13)}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := blobs[i%len(blobs)]
			d := digest.FromBytes(data)
			repo := fmt.Sprintf("conc/r%d", i)
			resp, err := hc.Post(srv.URL()+"/v2/"+repo+"/blobs/uploads/", "", nil)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			for off := 0; off < len(data); off += 16_000 {
				end := min(off+16_000, len(data))
				req, _ := http.NewRequest("PATCH", srv.URL()+loc, bytes.NewReader(data[off:end]))
				req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, end-1))
				resp, err := hc.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 202 {
					errs <- fmt.Errorf("PATCH: %d", resp.StatusCode)
					return
				}
				loc = resp.Header.Get("Location")
			}
			req, _ := http.NewRequest("PUT", srv.URL()+loc+"?digest="+d.String(), nil)
			resp, err = hc.Do(req)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 201 {
				errs <- fmt.Errorf("PUT: %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, data := range blobs {
		d := digest.FromBytes(data)
		if received[d] != 1 {
			t.Errorf("BlobReceived(%s) called %d times", d, received[d])
		}
		b, ok := srv.Blob(d)
		if !ok {
			t.Fatalf("%s not held", d)
		}
		rd := b.Open()
		got, _ := io.ReadAll(rd)
		rd.Close()
		if !bytes.Equal(got, data) {
			t.Errorf("%s: bytes differ", d)
		}
	}
}

// TestListenAddress checks URL and the certificate of a server on every
// address.
func TestListenAddress(t *testing.T) {
	srv, hc := start(t, regserver.Options{Addr: ":0", TLS: true})
	_, port, _ := net.SplitHostPort(srv.Addr())
	if want := "https://127.0.0.1:" + port; srv.URL() != want {
		t.Fatalf("URL %s, want %s", srv.URL(), want)
	}
	c := client{t: t, c: hc, base: srv.URL()}
	c.want(c.do("GET", "/v2/", nil), 200, "", "GET /v2/ through URL")
	if err := srv.Certificate().VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := srv.Certificate().VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	if _, err := regserver.Start(regserver.Options{Addr: srv.Addr()}); err == nil {
		t.Error("a second server on the same port started")
	}
}

// TestContentRange checks how a PATCH's Content-Range is judged against
// the session (which holds 10 bytes) and the body.
func TestContentRange(t *testing.T) {
	srv, hc := start(t, regserver.Options{})
	tests := []struct {
		name      string
		cr        string
		body      string
		status    int
		wantRange string // the session's Range afterwards
	}{
		{"none", "", "abc", 202, "0-12"},
		{"in order", "10-12", "abc", 202, "0-12"},
		{"bytes unit", "bytes 10-12", "abc", 202, "0-12"},
		{"with total", "10-12/13", "abc", 202, "0-12"},
		{"behind", "9-11", "abc", 416, "0-9"},
		{"ahead", "11-13", "abc", 416, "0-9"},
		{"from zero", "0-2", "abc", 416, "0-9"},
		{"longer than the body", "10-20", "abc", 416, "0-9"},
		{"shorter than the body", "10-10", "abc", 416, "0-9"},
		{"garbage", "ten-twelve", "abc", 400, "0-9"},
		{"no dash", "10", "abc", 400, "0-9"},
		{"negative", "-1-2", "abc", 400, "0-9"},
		{"reversed", "12-10", "abc", 400, "0-9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client{t: t, c: hc, base: srv.URL()}
			r := c.do("POST", "/v2/cr/blobs/uploads/", nil)
			loc := c.location(r)
			c.want(c.do("PATCH", loc, []byte("0123456789")), 202, "", "first chunk")
			var hdr []string
			if tt.cr != "" {
				hdr = []string{"Content-Range", tt.cr}
			}
			r = c.do("PATCH", loc, []byte(tt.body), hdr...)
			c.want(r, tt.status, "", "PATCH "+tt.cr)
			if tt.status != 202 && r.code() != "BLOB_UPLOAD_INVALID" {
				t.Errorf("code %q", r.code())
			}
			if r = c.do("GET", loc, nil); r.Header.Get("Range") != tt.wantRange {
				t.Errorf("Range afterwards %q, want %q", r.Header.Get("Range"), tt.wantRange)
			}
		})
	}
}
