package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/stages/stagetest"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// runningProxy is `occystrap proxy` running in-process.
type runningProxy struct {
	Addr   string
	stderr *stagetest.LockedBuffer
	stop   context.CancelFunc
	done   chan struct{} // closed when Run has returned
	code   int
}

// Stop interrupts the proxy (as Ctrl+C would) and returns its exit code
// and log.
func (p *runningProxy) Stop(t *testing.T) (int, string) {
	t.Helper()
	p.stop()
	select {
	case <-p.done:
		return p.code, p.stderr.String()
	case <-time.After(time.Minute):
		t.Fatalf("the proxy did not stop:\n%s", p.stderr.String())
		return 0, ""
	}
}

// startProxy runs `occystrap [global...] proxy --listen 127.0.0.1:PORT
// args...` and waits until it says it is ready.
func startProxy(t *testing.T, global []string, args ...string) *runningProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	p := &runningProxy{Addr: addr, stderr: &stagetest.LockedBuffer{}, stop: cancel, done: make(chan struct{})}
	argv := append(slices.Clone(global), append([]string{"proxy", "--listen", addr}, args...)...)
	go func() {
		p.code = Run(ctx, argv, &bytes.Buffer{}, p.stderr)
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("proxy log:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stderr.String(), "Ready ") {
		select {
		case <-p.done:
			t.Fatalf("the proxy exited %d at start-up:\n%s", p.code, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy is not ready:\n%s", p.stderr.String())
		}
	}
	return p
}

// allMtimes fails unless every file in every layer of the tarball at path
// has modification time ts.
func allMtimes(t *testing.T, path string, ts int64) {
	t.Helper()
	n := 0
	for l, hs := range layerEntries(t, path) {
		for _, h := range hs {
			n++
			if h.ModTime.Unix() != ts {
				t.Errorf("%s: %s has mtime %v, want %d", l, h.Name, h.ModTime.Unix(), ts)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: no layer entries", path)
	}
}

// TestProxyPush: skopeo pushes to the proxy; the image lands in the
// downstream registry (under its path prefix, with its credentials)
// through the filter, and the push completes only once it is there.
// Without filters the image keeps its config and diff IDs.
func TestProxyPush(t *testing.T) {
	peers.Need(t, "skopeo")
	down := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: peers.AuthHtpasswd})
	ctx := ctxMinutes(t, 3)
	in, res := writeImage(t, imagegen.Sample(), imagegen.OCI)

	px := startProxy(t, creds(down), "--downstream", down.Host+"/mirror", "-f", "normalize-timestamps:ts=4321")
	if _, err := peers.SkopeoCopy(ctx, "--dest-tls-verify=false", "docker-archive:"+in, "docker://"+px.Addr+"/app/web:v1"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.tar")
	mustRun(t, append(creds(down), "process", "registry://"+down.Host+"/mirror/app/web:v1", "tar://"+out)...)
	_, diffIDs := tarImage(t, out)
	if slices.Equal(diffIDs, res.DiffIDs) {
		t.Error("the layers were not rewritten by the filter")
	}
	allMtimes(t, out, 4321)
	// The client's check after its push: the proxy serves the manifest
	// it was sent.
	resp, err := http.Get("http://" + px.Addr + "/v2/app/web/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") == "" {
		t.Errorf("GET of the pushed manifest: %s", resp.Status)
	}
	code, log := px.Stop(t)
	if code != 0 || !strings.Contains(log, "Proxy stopped. Pushed 1 images (0 failed). Pulled 0 images (0 cache hits, 0 misses).") {
		t.Errorf("exit %d, log:\n%s", code, log)
	}

	t.Run("no filters", func(t *testing.T) {
		px := startProxy(t, creds(down), "--downstream", down.Host)
		if _, err := peers.SkopeoCopy(ctx, "--dest-tls-verify=false", "docker-archive:"+in, "docker://"+px.Addr+"/plain:v2"); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out.tar")
		mustRun(t, append(creds(down), "process", "registry://"+down.Host+"/plain:v2", "tar://"+out)...)
		sameImage(t, out, res)
	})
}

// TestProxyDockerPush: a real Docker Engine pushes to the proxy (plain
// HTTP on loopback) and then pulls the filtered image from the downstream
// registry.
func TestProxyDockerPush(t *testing.T) {
	d := startEngine(t)
	down := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 3)
	img := imagegen.Sample()
	img.RepoTag = "example.com/test/proxied:v1"
	in, res := writeImage(t, img, imagegen.Legacy)
	if _, err := d.Docker(ctx, "load", "-i", in); err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, nil, "--downstream", down.Host, "-f", "normalize-timestamps")
	target := px.Addr + "/team/proxied:v1"
	if _, err := d.Docker(ctx, "tag", img.RepoTag, target); err != nil {
		t.Fatal(err)
	}
	if outb, err := d.Docker(ctx, "push", target); err != nil {
		t.Fatalf("docker push: %v\n%s", err, outb)
	}
	pulled := down.Host + "/team/proxied:v1"
	if outb, err := d.Docker(ctx, "pull", pulled); err != nil {
		t.Fatalf("docker pull: %v\n%s", err, outb)
	}
	out := filepath.Join(t.TempDir(), "out.tar")
	mustRun(t, "process", dockerURI(d, pulled), "tar://"+out)
	allMtimes(t, out, 0)
	if _, diffIDs := tarImage(t, out); len(diffIDs) != len(res.DiffIDs) {
		t.Errorf("%d layers, want %d", len(diffIDs), len(res.DiffIDs))
	}

	// The engine pulls through a second proxy, whose upstream is the
	// first one's downstream: the image is copied into another registry
	// and served from it.
	cache := peers.StartTestRegistry(t, peers.RegistryOptions{})
	px2 := startProxy(t, nil, "--downstream", cache.Host, "--upstream", down.Host)
	viaProxy := px2.Addr + "/team/proxied:v1"
	if outb, err := d.Docker(ctx, "pull", viaProxy); err != nil {
		t.Fatalf("docker pull through the proxy: %v\n%s", err, outb)
	}
	out2 := filepath.Join(t.TempDir(), "out2.tar")
	mustRun(t, "process", dockerURI(d, viaProxy), "tar://"+out2)
	cd1, ids1 := tarImage(t, out)
	cd2, ids2 := tarImage(t, out2)
	if cd1 != cd2 || !slices.Equal(ids1, ids2) {
		t.Errorf("pulled through the proxy: config %s, want %s", cd2, cd1)
	}
	if _, err := cache.SkopeoInspect(ctx, "team/proxied:v1", peers.SkopeoOptions{}, "--raw"); err != nil {
		t.Errorf("the pull-through cache lacks the image: %v", err)
	}
}

// TestProxyMultiPlatform: skopeo pushes a three-platform index through
// the proxy (each image by digest, then the index); the downstream index
// lists the filtered images, and each platform can be pulled from it.
func TestProxyMultiPlatform(t *testing.T) {
	peers.Need(t, "skopeo")
	down := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 3)
	platforms, layout := multiPlatformLayout(t)
	px := startProxy(t, nil, "--downstream", down.Host, "-f", "normalize-timestamps:ts=77")
	if _, err := peers.SkopeoCopy(ctx, "--all", "--dest-tls-verify=false", "oci:"+layout.Dir+":"+layout.Tag, "docker://"+px.Addr+"/multi:v1"); err != nil {
		t.Fatal(err)
	}
	raw, err := down.SkopeoInspect(ctx, "multi:v1", peers.SkopeoOptions{}, "--raw")
	if err != nil {
		t.Fatal(err)
	}
	var ix ocispec.Index
	if err := json.Unmarshal(raw, &ix); err != nil || len(ix.Manifests) != len(platforms) {
		t.Fatalf("downstream index: %v\n%s", err, raw)
	}
	for i, m := range ix.Manifests {
		if m.Digest == layout.Images[i].ManifestDigest {
			t.Errorf("entry %d still names the unfiltered manifest", i)
		}
		out := filepath.Join(t.TempDir(), "out.tar")
		mustRun(t, "--architecture", platforms[i].Architecture, "--variant", platforms[i].Variant,
			"process", "registry://"+down.Host+"/multi:v1", "tar://"+out)
		allMtimes(t, out, 77)
	}
}

// TestProxyPullThrough: with --upstream, a pull of an image the
// downstream lacks copies it from the upstream through the filter; the
// next pull is served from the downstream.
func TestProxyPullThrough(t *testing.T) {
	peers.Need(t, "skopeo")
	up := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: peers.AuthToken})
	down := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 3)
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	mustRun(t, append(creds(up), "process", "tar://"+in, "registry://"+up.Host+"/lib/app:v3")...)

	px := startProxy(t, nil, "--downstream", down.Host+"/cache", "--upstream", up.Username+":"+up.Password+"@"+up.Host,
		"-f", "normalize-timestamps:ts=99")
	for i := range 2 {
		out := filepath.Join(t.TempDir(), "pulled.tar")
		if _, err := peers.SkopeoCopy(ctx, "--src-tls-verify=false", "docker://"+px.Addr+"/lib/app:v3", "docker-archive:"+out+":lib/app:v3"); err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		allMtimes(t, out, 99)
	}
	// The copy is in the downstream registry, under the prefix.
	if _, err := down.SkopeoInspect(ctx, "cache/lib/app:v3", peers.SkopeoOptions{}, "--raw"); err != nil {
		t.Errorf("downstream: %v", err)
	}
	// containerd-based clients look a tag up with HEAD first: that
	// starts the copy too.
	mustRun(t, append(creds(up), "process", "tar://"+in, "registry://"+up.Host+"/lib/other:v1")...)
	head, _ := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+px.Addr+"/v2/lib/other/manifests/v1", nil)
	resp, err := http.DefaultClient.Do(head)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") == "" {
		t.Errorf("HEAD of an image only the upstream has: %s", resp.Status)
	}
	// A tag that moves upstream is copied again.
	img2 := imagegen.Sample()
	img2.Layers = img2.Layers[:1]
	in2, res2 := writeImage(t, img2, imagegen.Legacy)
	mustRun(t, append(creds(up), "process", "tar://"+in2, "registry://"+up.Host+"/lib/app:v3")...)
	moved := filepath.Join(t.TempDir(), "moved.tar")
	if _, err := peers.SkopeoCopy(ctx, "--src-tls-verify=false", "docker://"+px.Addr+"/lib/app:v3", "docker-archive:"+moved+":lib/app:v3"); err != nil {
		t.Fatal(err)
	}
	if _, diffIDs := tarImage(t, moved); len(diffIDs) != len(res2.DiffIDs) {
		t.Errorf("after the upstream tag moved: %d layers, want %d", len(diffIDs), len(res2.DiffIDs))
	}
	// An image the upstream lacks either: 502 with the reason.
	resp, err = http.Get("http://" + px.Addr + "/v2/lib/missing/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("missing image: %s, want 502", resp.Status)
	}
	code, log := px.Stop(t)
	if code != 0 || !strings.Contains(log, "Pulled 3 images (1 cache hits, 4 misses)") {
		t.Errorf("exit %d, log:\n%s", code, log)
	}

	// In pull-through mode a blob HEAD asks the downstream, so a client
	// skips the blobs the downstream repository has; the proxy then reads
	// them from there. A first proxy pushes the image, a second (with no
	// blob of its own) pushes it again under another tag.
	t.Run("blobs the downstream has", func(t *testing.T) {
		for i, tag := range []string{"v1", "v2"} {
			px := startProxy(t, nil, "--downstream", down.Host, "--upstream", up.Host)
			if _, err := peers.SkopeoCopy(ctx, "--dest-tls-verify=false", "docker-archive:"+in, "docker://"+px.Addr+"/again:"+tag); err != nil {
				t.Fatalf("push %d: %v", i, err)
			}
			if code, log := px.Stop(t); code != 0 || !strings.Contains(log, "Pushed 1 images (0 failed)") {
				t.Errorf("exit %d, log:\n%s", code, log)
			}
		}
		out := filepath.Join(t.TempDir(), "again.tar")
		mustRun(t, "process", "registry://"+down.Host+"/again:v2", "tar://"+out)
		sameImage(t, out, res)
	})
}

// TestProxyErrors: a manifest naming a blob never pushed is refused with
// 400; a downstream that cannot be reached fails the push with 500 and
// the proxy keeps serving; bad options fail at start-up.
func TestProxyErrors(t *testing.T) {
	peers.Need(t, "skopeo")
	ctx := ctxMinutes(t, 2)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadHost := dead.Addr().String()
	dead.Close()
	px := startProxy(t, []string{"--retries", "0"}, "--downstream", deadHost)

	missing := digest.FromString("never pushed")
	man := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + missing.String() + `","size":12},"layers":[]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+px.Addr+"/v2/broken/manifests/v1", strings.NewReader(man))
	req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("manifest with a missing blob: %s, want 400", resp.Status)
	}

	// A config larger than any image's is refused before it is read.
	big := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + missing.String() + `","size":1073741824},"layers":[]}`
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, "http://"+px.Addr+"/v2/broken/manifests/v2", strings.NewReader(big))
	req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("manifest with a 1 GiB config: %s, want 400", resp.Status)
	}

	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	_, err = peers.SkopeoCopy(ctx, "--dest-tls-verify=false", "docker-archive:"+in, "docker://"+px.Addr+"/app:v1")
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("push to a dead downstream: %v", err)
	}
	resp, err = http.Get("http://" + px.Addr + "/v2/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the proxy stopped serving: %v", err)
	} else {
		resp.Body.Close()
	}
	if code, log := px.Stop(t); code != 0 || !strings.Contains(log, "(3 failed)") {
		t.Errorf("exit %d, log:\n%s", code, log)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "-d", "127.0.0.1:5000", "-l", "127.0.0.1:http"}, "invalid port: http"},
		{[]string{"proxy", "-d", "https://example.com"}, "without a scheme"},
		{[]string{"proxy", "-d", "127.0.0.1:5000", "-u", "https://example.com"}, "without a scheme"},
		{[]string{"proxy", "-d", "127.0.0.1:5000", "-f", "no-such-filter"}, "no-such-filter"},
	} {
		code, _, stderr := run(t, tt.args...)
		if code == 0 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, %q; want an error with %q", tt.args, code, stderr, tt.want)
		}
	}
}

// pushBlob uploads data to a registry at base (http://HOST) in one POST.
func pushBlob(t *testing.T, base, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %s", d, resp.Status)
	}
	return d
}

// TestProxyArtifact: a manifest that is not a container image (here an
// attestation-like one: an empty config and an in-toto layer, as buildx
// pushes) goes downstream unchanged, whatever the filters, and keeps its
// digest.
func TestProxyArtifact(t *testing.T) {
	peers.Need(t, "skopeo")
	down := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 2)
	px := startProxy(t, nil, "--downstream", down.Host, "-f", "normalize-timestamps")
	base := "http://" + px.Addr
	cfg := []byte("{}")
	layer := []byte(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2"}`)
	cd, ld := pushBlob(t, base, "att", cfg), pushBlob(t, base, "att", layer)
	man := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: "application/vnd.in-toto+json", Digest: ld, Size: int64(len(layer))}}}
	man.SchemaVersion = 2
	raw, _ := json.Marshal(man)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v2/att/manifests/v1", bytes.NewReader(raw))
	req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest PUT: %s", resp.Status)
	}
	got, err := down.SkopeoInspect(ctx, "att:v1", peers.SkopeoOptions{}, "--raw")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(got), raw) {
		t.Errorf("downstream manifest:\n%s\nwant\n%s", got, raw)
	}
}
