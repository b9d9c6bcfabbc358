// Package docker reads images from and loads images into a Docker Engine
// (or Podman's Docker-compatible service) through its API on a Unix socket:
// the docker:// source streams `GET /images/{name}/get` (what `docker save`
// uses) and parses the docker-save stream on the fly; the docker://
// destination streams a docker-save tarball, made as the pipeline runs,
// into `POST /images/load`.
//
// The client is net/http with a dialer for the socket, not the Docker
// client library: occystrap needs four small endpoints (_ping, images/json,
// images/get, images/load) whose shapes have not changed in years, while
// the moby client would pull in a large tree of dependencies (and its API
// version negotiation) for them.
package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// DefaultSocket is the Docker Engine's socket when the URI gives none.
const DefaultSocket = "/var/run/docker.sock"

// maxErrorBody bounds what is read of an error response.
const maxErrorBody = 64 << 10

// Client talks to one engine. Paths carry no API version prefix (as the
// original did), so the engine answers with its own default version: the
// endpoints used here have had the same shape since long before any engine
// still in use, Docker and Podman both serve unversioned paths, and a
// version prefix would need a negotiation round trip (/_ping's API-Version)
// to avoid being refused by older engines, for nothing gained.
type Client struct {
	socket string
	http   *http.Client
	tr     *http.Transport
}

// NewClient returns a client for the engine listening on socket. It does
// no I/O.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{socket: socket, tr: tr, http: &http.Client{Transport: tr}}
}

// Socket returns the socket's path.
func (c *Client) Socket() string { return c.socket }

// CloseIdle closes idle connections, so that nothing stays open after a
// stage is done.
func (c *Client) CloseIdle() { c.tr.CloseIdleConnections() }

// EngineError is a request the engine answered with an error status.
type EngineError struct {
	Socket  string
	Method  string
	Path    string
	Status  int
	Message string // the engine's {"message": ...}, or the body's start
}

func (e *EngineError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("the Docker Engine at %s refused %s %s: %d %s: %s", e.Socket, e.Method, e.Path, e.Status, http.StatusText(e.Status), msg)
}

// ErrUnreachable is wrapped by errors about an engine that cannot be
// reached.
var ErrUnreachable = errors.New("cannot reach the Docker Engine")

type unreachableError struct {
	socket string
	cause  error
}

func (e *unreachableError) Error() string {
	hint := "is dockerd running? (use ?socket= for Podman: /run/podman/podman.sock)"
	if errors.Is(e.cause, syscall.EACCES) || errors.Is(e.cause, syscall.EPERM) {
		hint = "permission denied: run as root or as a member of the docker group (or use ?socket= for a socket you can use)"
	}
	return fmt.Sprintf("cannot reach the Docker Engine at %s (%v): %s", e.socket, briefCause(e.cause), hint)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.cause} }

// briefCause reduces a dial error to its system error where there is one
// ("connect: no such file or directory").
func briefCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// wrap turns a transport error into an unreachable-engine error when the
// connection itself failed, and otherwise names the request.
func (c *Client) wrap(ctx context.Context, method, path string, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &unreachableError{socket: c.socket, cause: err}
	}
	return fmt.Errorf("%s %s on the Docker Engine at %s: %w", method, path, c.socket, err)
}

// do sends a request and returns the response when its status is 2xx; any
// other status becomes an *EngineError (the body is read and closed).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body io.Reader, header http.Header) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "docker", Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.wrap(ctx, method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &EngineError{Socket: c.socket, Method: method, Path: path, Status: resp.StatusCode}
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &m) == nil && m.Message != "" {
		e.Message = m.Message
	} else {
		e.Message = strings.TrimSpace(string(raw))
	}
	return nil, e
}

// Ping checks that the engine answers.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, "/_ping", nil, nil, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return resp.Body.Close()
}

// Inspect is what `GET /images/{name}/json` says of an image that matters
// here.
type Inspect struct {
	ID           string          `json:"Id"` // the config's digest (classic image store)
	RepoTags     []string        `json:"RepoTags"`
	Created      json.RawMessage `json:"Created"`
	Architecture string          `json:"Architecture"`
	Os           string          `json:"Os"`
	Variant      string          `json:"Variant"`
	Config       json.RawMessage `json:"Config"`
	RootFS       struct {
		Type   string   `json:"Type"`
		Layers []string `json:"Layers"` // diff IDs, bottom first
	} `json:"RootFS"`
}

// ErrNotFound is wrapped by errors about images the engine does not have.
var ErrNotFound = errors.New("image not found")

type notFoundError struct{ ref, socket string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("image %s not found in the Docker Engine at %s", e.ref, e.socket)
}

func (e *notFoundError) Unwrap() error { return ErrNotFound }

// imagePath is the API path of an image endpoint. The reference goes in
// as it is (the engine routes /images/{name:.*}/...), escaped only where
// a URL path needs it.
func imagePath(ref, op string) string { return "/images/" + ref + "/" + op }

// Inspect returns what the engine knows of the image ref.
func (c *Client) Inspect(ctx context.Context, ref string) (*Inspect, error) {
	resp, err := c.do(ctx, http.MethodGet, imagePath(ref, "json"), nil, nil, nil)
	if err != nil {
		return nil, c.notFound(ref, err)
	}
	defer resp.Body.Close()
	var in Inspect
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&in); err != nil {
		return nil, fmt.Errorf("inspect %s on the Docker Engine at %s: %w", ref, c.socket, err)
	}
	return &in, nil
}

func (c *Client) notFound(ref string, err error) error {
	var ee *EngineError
	if errors.As(err, &ee) && ee.Status == http.StatusNotFound {
		return &notFoundError{ref: ref, socket: c.socket}
	}
	return err
}

// Save starts `GET /images/{name}/get` and returns the docker-save stream.
// The caller closes it.
func (c *Client) Save(ctx context.Context, ref string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, imagePath(ref, "get"), nil, nil, nil)
	if err != nil {
		return nil, c.notFound(ref, err)
	}
	return resp.Body, nil
}

// LoadError is an error the engine reported in the body of a load.
type LoadError struct {
	Socket  string
	Message string
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("the Docker Engine at %s failed to load the image: %s", e.Socket, e.Message)
}

// PushError is an error the engine reported in the body of a push.
type PushError struct {
	Socket  string
	Ref     string
	Message string
}

func (e *PushError) Error() string {
	return fmt.Sprintf("the Docker Engine at %s failed to push %s: %s", e.Socket, e.Ref, e.Message)
}

// jsonMessage is one object of the JSON-lines answers to load and push.
type jsonMessage struct {
	Stream         string `json:"stream"`
	Status         string `json:"status"`
	ID             string `json:"id"`
	ProgressDetail *struct {
		Current int64 `json:"current"`
		Total   int64 `json:"total"`
	} `json:"progressDetail"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readMessages reads an engine's JSON-lines answer to its end, handing
// each object to each. It returns the first error message the engine
// sent (as errMsg), or a read error.
func readMessages(r io.Reader, each func(m *jsonMessage)) (errMsg string, err error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err == io.EOF {
			return "", nil
		} else if err != nil {
			return "", fmt.Errorf("read the answer: %w", err)
		}
		if m.ErrorDetail != nil || m.Error != "" {
			msg := m.Error
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			if msg == "" {
				msg = "unknown error"
			}
			return msg, nil
		}
		if each != nil {
			each(&m)
		}
	}
}

// Load sends a docker-save tarball read from body to `POST /images/load`
// and reads the engine's JSON-lines answer to its end. An object with
// "error" or "errorDetail" in it is returned as a *LoadError; otherwise
// the "stream" messages ("Loaded image: ...") are returned.
func (c *Client) Load(ctx context.Context, body io.Reader) ([]string, error) {
	h := http.Header{"Content-Type": {"application/x-tar"}}
	resp, err := c.do(ctx, http.MethodPost, "/images/load", url.Values{"quiet": {"1"}}, body, h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var msgs []string
	errMsg, err := readMessages(resp.Body, func(m *jsonMessage) {
		if s := strings.TrimSpace(m.Stream); s != "" {
			msgs = append(msgs, s)
		}
	})
	if err != nil {
		return msgs, c.wrap(ctx, http.MethodPost, "/images/load", err)
	}
	if errMsg != "" {
		return msgs, &LoadError{Socket: c.socket, Message: errMsg}
	}
	return msgs, nil
}

// Tag adds the tag repo:tag to the image ref (`POST /images/{name}/tag`).
func (c *Client) Tag(ctx context.Context, ref, repo, tag string) error {
	resp, err := c.do(ctx, http.MethodPost, imagePath(ref, "tag"), url.Values{"repo": {repo}, "tag": {tag}}, nil, nil)
	if err != nil {
		return c.notFound(ref, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return resp.Body.Close()
}

// Untag removes the tag ref (`DELETE /images/{name}?noprune=true`); an
// image that has other tags stays. A tag already gone is not an error.
func (c *Client) Untag(ctx context.Context, ref string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/images/"+ref, url.Values{"noprune": {"true"}}, nil, nil)
	if err != nil {
		var ee *EngineError
		if errors.As(err, &ee) && ee.Status == http.StatusNotFound {
			return nil
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return resp.Body.Close()
}

// Push asks the engine to push repo:tag to the registry its name starts
// with (`POST /images/{name}/push`) and reads the progress stream to its
// end, handing each message to each (may be nil). An error the engine
// reports in the stream is returned as a *PushError.
//
// It sends empty credentials (X-Registry-Auth: {}), which suits a
// registry without authentication, and tlsVerify=false, which Podman's
// compatible API reads (Docker trusts loopback registries without it).
func (c *Client) Push(ctx context.Context, repo, tag string, each func(m *jsonMessage)) error {
	h := http.Header{"X-Registry-Auth": {"e30="}}
	path := imagePath(repo, "push")
	resp, err := c.do(ctx, http.MethodPost, path, url.Values{"tag": {tag}, "tlsVerify": {"false"}}, nil, h)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	errMsg, err := readMessages(resp.Body, each)
	if err != nil {
		return c.wrap(ctx, http.MethodPost, path, err)
	}
	if errMsg != "" {
		return &PushError{Socket: c.socket, Ref: repo + ":" + tag, Message: errMsg}
	}
	return nil
}
