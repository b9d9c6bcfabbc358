package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// fakeEngine answers the Docker Engine endpoints occystrap uses, on a Unix
// socket, from canned data: a stand-in for the error paths a real engine
// will not produce on demand.
type fakeEngine struct {
	socket string
	srv    *http.Server

	mu        sync.Mutex
	inspect   map[string][]byte // ref -> inspect JSON
	saves     map[string][]byte // ref -> docker-save stream
	saveErr   int               // status for every /get, if set
	loadLines []string          // JSON lines /images/load answers with
	loaded    []byte            // the last load request's body, as far as it came
	loadErr   error             // the error that ended reading it, if any
	loads     chan struct{}     // a value after each load request is read
}

func startFake(t *testing.T) *fakeEngine {
	t.Helper()
	dir, err := os.MkdirTemp("", "occy-fake-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeEngine{socket: filepath.Join(dir, "docker.sock"), inspect: map[string][]byte{}, saves: map[string][]byte{}, loads: make(chan struct{}, 16)}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("GET /images/", f.image)
	mux.HandleFunc("POST /images/load", f.load)
	f.srv = &http.Server{Handler: mux}
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func engineError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (f *fakeEngine) image(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := strings.TrimPrefix(r.URL.Path, "/images/")
	switch {
	case strings.HasSuffix(p, "/json"):
		js, ok := f.inspect[strings.TrimSuffix(p, "/json")]
		if !ok {
			engineError(w, http.StatusNotFound, "No such image: "+strings.TrimSuffix(p, "/json"))
			return
		}
		w.Write(js)
	case strings.HasSuffix(p, "/get"):
		if f.saveErr != 0 {
			engineError(w, f.saveErr, "boom: the export failed")
			return
		}
		raw, ok := f.saves[strings.TrimSuffix(p, "/get")]
		if !ok {
			engineError(w, http.StatusNotFound, "reference does not exist")
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.Write(raw)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeEngine) load(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	f.mu.Lock()
	f.loaded, f.loadErr = body, err
	lines := f.loadLines
	f.mu.Unlock()
	f.loads <- struct{}{}
	if err != nil {
		engineError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	for _, l := range lines {
		io.WriteString(w, l+"\n")
	}
}

// lastLoad waits for the load request the engine is reading to end and
// returns its body as far as it came, and the error that ended it.
func (f *fakeEngine) lastLoad(t *testing.T) ([]byte, error) {
	t.Helper()
	select {
	case <-f.loads:
	case <-time.After(10 * time.Second):
		t.Fatal("no load request reached the engine")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loaded, f.loadErr
}

// addImage serves an imagegen image under ref, with the inspect a real
// engine would give.
func (f *fakeEngine) addImage(t *testing.T, ref string, img imagegen.Image, format imagegen.Format) imagegen.Result {
	t.Helper()
	raw, res := saveBytes(t, img, format)
	var layers []string
	for _, d := range res.DiffIDs {
		layers = append(layers, d.String())
	}
	js, err := json.Marshal(map[string]any{
		"Id": res.ConfigDigest.String(), "RepoTags": []string{ref}, "Created": "2024-01-02T03:04:05Z",
		"Architecture": "amd64", "Os": "linux", "Config": map[string]any{"Cmd": []string{"/bin/sh"}, "Labels": map[string]string{"a": "b"}},
		"RootFS": map[string]any{"Type": "layers", "Layers": layers},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.inspect[ref], f.saves[ref] = js, raw
	f.mu.Unlock()
	return res
}

func parseRef(t *testing.T, s string) uri.Reference {
	t.Helper()
	r, err := uri.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The input reads both save layouts from an engine, whatever the order.
func TestInputFromEngine(t *testing.T) {
	f := startFake(t)
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(format.String(), func(t *testing.T) {
			ref := "example.com/test/" + format.String() + ":v1"
			res := f.addImage(t, ref, imagegen.Sample(), format)
			tmp := t.TempDir()
			in := NewInput(parseRef(t, ref), f.socket, stages.Env{TempDir: tmp, Log: zerolog.Nop()})
			out := make(chan elements.Element, 1)
			done := make(chan *got)
			go func() { done <- consume(out, false) }()
			err := in.Run(context.Background(), out)
			close(out)
			g := <-done
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, g, res, format)
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
			checkNoSpoolFiles(t)

			ref2, cfg, err := in.Describe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Architecture, OS string
				Config           struct{ Cmd []string }
				RootFS           struct {
					DiffIDs []digest.Digest `json:"diff_ids"`
				}
				History []any
			}
			if err := json.Unmarshal(cfg, &c); err != nil {
				t.Fatal(err)
			}
			if ref2 != ref || c.OS != "linux" || c.Architecture != "amd64" || !slices.Equal(c.RootFS.DiffIDs, res.DiffIDs) ||
				!slices.Equal(c.Config.Cmd, []string{"/bin/sh"}) || c.History == nil {
				t.Errorf("describe: %s %s", ref2, cfg)
			}
		})
	}
}

func TestEngineErrors(t *testing.T) {
	f := startFake(t)
	f.addImage(t, "there:v1", imagegen.Sample(), imagegen.Legacy)
	dead := filepath.Join(filepath.Dir(f.socket), "dead.sock")
	// A socket file nobody listens on: connection refused.
	ln, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	missing := filepath.Join(filepath.Dir(f.socket), "missing.sock")

	run := func(ref, socket string) error {
		in := NewInput(parseRef(t, ref), socket, stages.Env{TempDir: t.TempDir(), Log: zerolog.Nop()})
		out := make(chan elements.Element, 1)
		go consume(out, false)
		defer close(out)
		return in.Run(context.Background(), out)
	}
	err = run("nope:v1", f.socket)
	if !errors.Is(err, ErrNotFound) || err.Error() != "image nope:v1 not found in the Docker Engine at "+f.socket {
		t.Errorf("missing image: %v", err)
	}
	for _, s := range []string{dead, missing} {
		err := run("there:v1", s)
		want := "cannot reach the Docker Engine at " + s
		if !errors.Is(err, ErrUnreachable) || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "is dockerd running? (use ?socket= for Podman: /run/podman/podman.sock)") {
			t.Errorf("dead socket %s: %v", s, err)
		}
	}
	f.mu.Lock()
	f.saveErr = http.StatusInternalServerError
	f.mu.Unlock()
	err = run("there:v1", f.socket)
	var ee *EngineError
	if !errors.As(err, &ee) || ee.Status != 500 || !strings.Contains(err.Error(), "boom: the export failed") || !strings.Contains(err.Error(), f.socket) {
		t.Errorf("engine error: %v", err)
	}

	out, err := NewOutput(nil, missing, stages.Env{})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan elements.Element)
	if err := out.Run(context.Background(), in); !errors.Is(err, ErrUnreachable) {
		t.Errorf("output to a dead socket: %v", err)
	}
}

// writeTarball writes img as a tar:// input would read it.
func writeTarball(t *testing.T, img imagegen.Image, format imagegen.Format) (string, imagegen.Result) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	res, err := imagegen.WriteFile(p, img, format)
	if err != nil {
		t.Fatal(err)
	}
	return p, res
}

// loadedImage checks what the engine received: a docker-save tarball with
// manifest.json last, holding the image res describes, tagged tag.
func loadedImage(t *testing.T, raw []byte, res imagegen.Result, tag string) {
	t.Helper()
	ms := members(t, raw)
	if len(ms) == 0 || ms[len(ms)-1].hdr.Name != "manifest.json" {
		t.Fatalf("manifest.json is not the last member")
	}
	files := map[string][]byte{}
	for _, m := range ms {
		files[m.hdr.Name] = m.data
	}
	var man []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil || len(man) != 1 {
		t.Fatalf("manifest.json: %v", err)
	}
	if !slices.Equal(man[0].RepoTags, []string{tag}) {
		t.Errorf("RepoTags %q, want %q", man[0].RepoTags, tag)
	}
	if got := digest.FromBytes(files[man[0].Config]); got != res.ConfigDigest {
		t.Errorf("config %s, want %s", got, res.ConfigDigest)
	}
	var diffs []digest.Digest
	for _, l := range man[0].Layers {
		diffs = append(diffs, digest.FromBytes(files[l]))
	}
	if !slices.Equal(diffs, res.DiffIDs) {
		t.Errorf("layers %v, want %v", diffs, res.DiffIDs)
	}
}

// The output streams a docker-save tarball into /images/load: layers of
// known size straight through, compressed ones decompressed first.
func TestOutputToEngine(t *testing.T) {
	f := startFake(t)
	f.loadLines = []string{`{"stream":"Loaded image: dest/app:v2\n"}`}
	for _, tc := range []struct {
		format imagegen.Format
		comp   string
		dest   string
		want   string
	}{
		{imagegen.Legacy, "", "dest/app:v2", "dest/app:v2"},
		{imagegen.OCI, "gzip", "docker.io/library/app:v3", "app:v3"},
		{imagegen.OCI, "zstd", "", "example.com/test/sample:v1"},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.format, tc.comp), func(t *testing.T) {
			path, res := writeTarball(t, imagegen.Sample().WithCompression(tc.comp), tc.format)
			tmp := t.TempDir()
			env := stages.Env{TempDir: tmp, Log: zerolog.Nop(), Parallel: 2}
			var dest *uri.Reference
			if tc.dest != "" {
				r := parseRef(t, tc.dest)
				dest = &r
			}
			out, err := NewOutput(dest, f.socket, env)
			if err != nil {
				t.Fatal(err)
			}
			p := &engine.Pipeline{Input: tarball.NewInput(path, env), Output: out}
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			raw, lerr := f.lastLoad(t)
			if lerr != nil {
				t.Fatalf("the engine's read of the body failed: %v", lerr)
			}
			loadedImage(t, raw, res, tc.want)
			if r := out.Result(); r.Image != tc.want || r.Layers != len(res.DiffIDs) {
				t.Errorf("result %+v", r)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
			checkNoSpoolFiles(t)
		})
	}
}

// badLayerInput sends a valid config and a layer whose bytes do not match
// its diff ID.
type badLayerInput struct{ res imagegen.Result }

func (b badLayerInput) Run(ctx context.Context, out chan<- elements.Element) error {
	out <- elements.Element{Kind: elements.KindImage, Name: "bad:v1", Index: -1}
	out <- elements.Element{Kind: elements.KindConfig, Name: b.res.ConfigDigest.Encoded() + ".json", Index: -1, Digest: b.res.ConfigDigest,
		Size: int64(len(b.res.Config)), Body: io.NopCloser(bytes.NewReader(b.res.Config))}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "x", Size: 1, Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	out <- elements.Element{Kind: elements.KindLayer, Name: "bad", Index: 0, MediaType: elements.LayerMediaType(elements.None),
		DiffID: b.res.DiffIDs[0], Size: int64(layer.Len()), Body: io.NopCloser(&layer)}
	return nil
}

// A failure while sending aborts the load: the engine never gets a
// manifest.json, so it loads nothing. An engine's error in the answer is
// an error too.
func TestOutputFailures(t *testing.T) {
	f := startFake(t)
	_, res := saveBytes(t, imagegen.Sample(), imagegen.Legacy)
	out, err := NewOutput(nil, f.socket, stages.Env{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	err = (&engine.Pipeline{Input: badLayerInput{res}, Output: out}).Run(context.Background())
	if !errors.Is(err, elements.ErrDigestMismatch) {
		t.Errorf("bad layer: %v", err)
	}
	raw, lerr := f.lastLoad(t)
	if lerr == nil || bytes.Contains(raw, []byte("manifest.json")) {
		t.Errorf("the engine read the whole body (read error %v, %d bytes)", lerr, len(raw))
	}

	f.loadLines = []string{`{"stream":"Loading layer"}`, `{"errorDetail":{"message":"write /var/lib/docker/tmp: no space left on device"},"error":"write /var/lib/docker/tmp: no space left on device"}`}
	path, _ := writeTarball(t, imagegen.Sample(), imagegen.Legacy)
	err = (&engine.Pipeline{Input: tarball.NewInput(path, stages.Env{}), Output: out}).Run(context.Background())
	var le *LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "failed to load the image: write /var/lib/docker/tmp: no space left on device") {
		t.Errorf("load error: %v", err)
	}
}

func TestOutputRefusesDigestDestination(t *testing.T) {
	r := parseRef(t, "app@sha256:"+strings.Repeat("a", 64))
	if _, err := NewOutput(&r, DefaultSocket, stages.Env{}); err == nil || !strings.Contains(err.Error(), "IMAGE:TAG") {
		t.Errorf("error %v", err)
	}
}
