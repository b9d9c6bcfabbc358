package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
)

// HasBlob reports whether the repository already has a blob (HEAD).
func (c *Client) HasBlob(ctx context.Context, d digest.Digest) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, c.repoPath("blobs/"+d.String()), nil, nil, 0,
		http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// StatBlob returns the size of a blob the repository has (HEAD). A blob
// it does not have is an *HTTPError with status 404.
func (c *Client) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	resp, err := c.do(ctx, http.MethodHead, c.repoPath("blobs/"+d.String()), nil, nil, 0, http.StatusOK)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.ContentLength < 0 {
		return 0, fmt.Errorf("HEAD %s: the registry gave no size", d)
	}
	return resp.ContentLength, nil
}

// upload is a blob upload session.
type upload struct {
	c        *Client
	location string // absolute URL of the session
}

// StartUpload opens an upload session. When mountFrom is not "", the
// registry is first asked to mount blob d from that repository of the same
// registry; mounted is true if it did, and then there is no session.
func (c *Client) StartUpload(ctx context.Context, d digest.Digest, mountFrom string) (u *upload, mounted bool, err error) {
	path := c.repoPath("blobs/uploads/")
	if mountFrom != "" {
		path += "?" + url.Values{"mount": {d.String()}, "from": {mountFrom}}.Encode()
	}
	resp, err := c.do(ctx, http.MethodPost, path, nil, bytes.NewReader(nil), 0,
		http.StatusAccepted, http.StatusCreated, http.StatusOK)
	if err != nil {
		return nil, false, fmt.Errorf("start upload: %w", err)
	}
	drain(resp)
	if resp.StatusCode == http.StatusCreated && mountFrom != "" {
		return nil, true, nil
	}
	loc, err := c.location(resp)
	if err != nil {
		return nil, false, fmt.Errorf("start upload: %w", err)
	}
	return &upload{c: c, location: loc}, false, nil
}

// location resolves a response's Location header against its request URL.
func (c *Client) location(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("%s %s: the registry gave no Location for the upload", resp.Request.Method, redactURL(resp.Request.URL.String()))
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("bad upload Location %q: %w", loc, err)
	}
	return u.String(), nil
}

// withDigest appends ?digest= (or &digest=) to an upload URL.
func withDigest(loc string, d digest.Digest) string {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return loc + sep + url.Values{"digest": {d.String()}}.Encode()
}

// Put uploads the whole blob in one request (when its digest is known
// before its bytes are sent) and completes the session. size may be -1.
func (u *upload) Put(ctx context.Context, d digest.Digest, body io.Reader, size int64) error {
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	if size == 0 {
		body = bytes.NewReader(nil)
	}
	resp, err := u.c.do(ctx, http.MethodPut, withDigest(u.location, d), h, body, size,
		http.StatusCreated, http.StatusAccepted, http.StatusOK, http.StatusNoContent)
	if err != nil {
		return fmt.Errorf("upload blob %s: %w", d, err)
	}
	drain(resp)
	return nil
}

// Stream sends the blob's bytes as one streamed PATCH (chunked transfer
// when size is -1); Finish completes it with the digest. Splitting the two
// lets the caller send the next blob while the registry verifies this one.
func (u *upload) Stream(ctx context.Context, body io.Reader, size int64) error {
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	if size == 0 {
		body = bytes.NewReader(nil)
	}
	resp, err := u.c.do(ctx, http.MethodPatch, u.location, h, body, size,
		http.StatusAccepted, http.StatusNoContent, http.StatusOK)
	if err != nil {
		return fmt.Errorf("upload blob: %w", err)
	}
	drain(resp)
	if resp.Header.Get("Location") != "" {
		if u.location, err = u.c.location(resp); err != nil {
			return err
		}
	}
	return nil
}

// Finish completes a streamed upload with the digest of what was sent.
func (u *upload) Finish(ctx context.Context, d digest.Digest) error {
	resp, err := u.c.do(ctx, http.MethodPut, withDigest(u.location, d), nil, bytes.NewReader(nil), 0,
		http.StatusCreated, http.StatusAccepted, http.StatusOK, http.StatusNoContent)
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Code == "DIGEST_INVALID" {
			return fmt.Errorf("the registry computed another digest for blob %s than we did: %w", d, err)
		}
		return fmt.Errorf("complete upload of %s: %w", d, err)
	}
	drain(resp)
	return nil
}

// Cancel abandons the session (best effort; registries expire them anyway).
func (u *upload) Cancel() {
	ctx := context.Background()
	if resp, err := u.c.do(ctx, http.MethodDelete, u.location, nil, nil, 0,
		http.StatusNoContent, http.StatusAccepted, http.StatusOK, http.StatusNotFound); err == nil {
		drain(resp)
	}
}

// PutManifest uploads a manifest under a tag or digest.
func (c *Client) PutManifest(ctx context.Context, ref string, mediaType string, raw []byte) error {
	resp, err := c.do(ctx, http.MethodPut, c.repoPath("manifests/"+ref),
		http.Header{"Content-Type": {mediaType}}, bytes.NewReader(raw), int64(len(raw)),
		http.StatusCreated, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("push manifest %s: %w", ref, err)
	}
	drain(resp)
	return nil
}
