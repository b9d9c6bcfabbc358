package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarImage reads back a docker-save tarball we wrote: the digest of its
// config, and its diff IDs, each checked against its layer.tar.
func tarImage(t *testing.T, path string) (digest.Digest, []digest.Digest) {
	t.Helper()
	ms := readTar(t, path)
	files := map[string][]byte{}
	for _, m := range ms {
		files[m.name] = m.data
	}
	var man dockerManifest
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil || len(man) != 1 {
		t.Fatalf("%s: manifest.json: %v", path, err)
	}
	config := files[man[0].Config]
	var cfg ocispec.Image
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(man[0].Layers) {
		t.Fatalf("%s: %d diff IDs, %d layers", path, len(cfg.RootFS.DiffIDs), len(man[0].Layers))
	}
	for i, l := range man[0].Layers {
		if got := digest.FromBytes(files[l]); got != cfg.RootFS.DiffIDs[i] {
			t.Fatalf("%s: layer %d (%s) has digest %s, config says %s", path, i, l, got, cfg.RootFS.DiffIDs[i])
		}
	}
	return digest.FromBytes(config), cfg.RootFS.DiffIDs
}

// sameImage fails unless the tarball at path holds the image res describes.
func sameImage(t *testing.T, path string, res imagegen.Result) {
	t.Helper()
	cd, diffIDs := tarImage(t, path)
	if cd != res.ConfigDigest {
		t.Errorf("config digest %s, want %s", cd, res.ConfigDigest)
	}
	if !slices.Equal(diffIDs, res.DiffIDs) {
		t.Errorf("diff IDs %v, want %v", diffIDs, res.DiffIDs)
	}
}

// creds returns the global flags that carry a registry's credentials.
func creds(r *peers.Registry) []string {
	if r.Auth == peers.AuthNone {
		return nil
	}
	return []string{"--username", r.Username, "--password", r.Password}
}

func ctxMinutes(t *testing.T, n int) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestRegistryRoundTrip: tarball -> registry -> tarball keeps the config
// digest and diff IDs, with each kind of authentication; tokens are
// cached rather than fetched per request.
func TestRegistryRoundTrip(t *testing.T) {
	for _, mode := range []peers.AuthMode{peers.AuthNone, peers.AuthHtpasswd, peers.AuthToken} {
		t.Run(mode.String(), func(t *testing.T) {
			r := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: mode})
			for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
				in, res := writeImage(t, imagegen.Sample(), format)
				dest := fmt.Sprintf("registry://%s/round/%s:v1", r.Host, format)
				args := append(creds(r), "process", "tar://"+in, dest)
				mustRun(t, args...)
				out := filepath.Join(t.TempDir(), "out.tar")
				mustRun(t, append(creds(r), "process", dest, "tar://"+out)...)
				sameImage(t, out, res)
				// The original's command for the same job still works.
				legacy := filepath.Join(t.TempDir(), "legacy.tar")
				mustRun(t, append(creds(r), "fetch-to-tarfile", r.Host, "round/"+format.String(), "v1", legacy)...)
				sameImage(t, legacy, res)
			}
			if mode == peers.AuthToken {
				// Two pushes and two pulls, one repository each, with
				// dozens of requests between them: a handful of tokens.
				if n := r.TokensIssued(); n == 0 || n > 8 {
					t.Errorf("%d tokens issued; want them cached (1-8)", n)
				}
			}
		})
	}
}

// TestRegistryAuthErrors: missing or wrong credentials give an error that
// says what to do, and write nothing.
func TestRegistryAuthErrors(t *testing.T) {
	for _, mode := range []peers.AuthMode{peers.AuthHtpasswd, peers.AuthToken} {
		t.Run(mode.String(), func(t *testing.T) {
			r := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: mode})
			t.Setenv("DOCKER_CONFIG", t.TempDir()) // no stored credentials
			out := filepath.Join(t.TempDir(), "out.tar")
			for _, args := range [][]string{
				{"process", "registry://" + r.Host + "/x/y:v1", "tar://" + out},
				{"--username", r.Username, "--password", "wrong", "process", "registry://" + r.Host + "/x/y:v1", "tar://" + out},
			} {
				code, _, stderr := run(t, args...)
				if code == 0 {
					t.Fatalf("%v succeeded", args)
				}
				if !strings.Contains(stderr, "--username") {
					t.Errorf("error does not say how to give credentials:\n%s", stderr)
				}
				if _, err := os.Stat(out); err == nil {
					t.Errorf("%s written after a failure", out)
				}
			}
		})
	}
}

// TestRegistryDockerConfigCredentials: credentials stored by `docker
// login` (auths in config.json) are used when no flag gives any.
func TestRegistryDockerConfigCredentials(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: peers.AuthHtpasswd})
	cfgDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(r.Username + ":" + r.Password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Host, auth)
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfgDir)
	t.Setenv("OCCYSTRAP_USERNAME", "")
	t.Setenv("OCCYSTRAP_PASSWORD", "")
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	mustRun(t, "process", "tar://"+in, "registry://"+r.Host+"/cfg/app:v1")
	out := filepath.Join(t.TempDir(), "out.tar")
	mustRun(t, "process", "registry://"+r.Host+"/cfg/app:v1", "tar://"+out)
	sameImage(t, out, res)
}

// TestPeersPullWhatWePush: skopeo and a real Docker Engine pull the images
// we push (gzip as Docker schema 2, zstd as OCI) and see the same image.
func TestPeersPullWhatWePush(t *testing.T) {
	peers.Need(t, "skopeo", "dockerd", "docker")
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 4)
	dockerDir, err := os.MkdirTemp("", "occy-docker-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dockerDir)
	d, err := peers.StartDocker(dockerDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()

	for _, comp := range []string{"gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
			name := "pushed/" + comp + ":v1"
			mustRun(t, "--compression", comp, "process", "tar://"+in, "registry://"+r.Host+"/"+name)

			raw, err := r.SkopeoInspect(ctx, name, peers.SkopeoOptions{}, "--raw")
			if err != nil {
				t.Fatal(err)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			wantManifest, wantLayer := elements.MediaTypeDockerManifest, elements.MediaTypeDockerLayerGzip
			if comp == "zstd" {
				wantManifest, wantLayer = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageLayerZstd
			}
			if m.MediaType != wantManifest || m.Config.Digest != res.ConfigDigest {
				t.Errorf("manifest type %s config %s; want %s, %s", m.MediaType, m.Config.Digest, wantManifest, res.ConfigDigest)
			}
			for _, l := range m.Layers {
				if l.MediaType != wantLayer {
					t.Errorf("layer media type %s, want %s", l.MediaType, wantLayer)
				}
			}

			// skopeo: to an OCI layout (docker-archive cannot hold zstd).
			layout := filepath.Join(t.TempDir(), "layout")
			if err := r.SkopeoPull(ctx, name, "oci:"+layout+":v1", peers.SkopeoOptions{}); err != nil {
				t.Fatal(err)
			}
			if comp == "zstd" {
				return // Docker Engine 20.10 cannot pull zstd layers
			}
			arch := filepath.Join(t.TempDir(), "skopeo.tar")
			if err := r.SkopeoPull(ctx, name, "docker-archive:"+arch+":"+name, peers.SkopeoOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Docker(ctx, "pull", "-q", r.Host+"/"+name); err != nil {
				t.Fatal(err)
			}
			js, err := d.Docker(ctx, "image", "inspect", r.Host+"/"+name)
			if err != nil {
				t.Fatal(err)
			}
			var inspect []struct {
				ID     string `json:"Id"`
				RootFS struct{ Layers []string }
			}
			if err := json.Unmarshal([]byte(js), &inspect); err != nil || len(inspect) != 1 {
				t.Fatalf("inspect: %v: %s", err, js)
			}
			if inspect[0].ID != res.ConfigDigest.String() {
				t.Errorf("docker pulled image %s, want %s", inspect[0].ID, res.ConfigDigest)
			}
			var want []string
			for _, d := range res.DiffIDs {
				want = append(want, d.String())
			}
			if !slices.Equal(inspect[0].RootFS.Layers, want) {
				t.Errorf("docker RootFS.Layers %q, want %q", inspect[0].RootFS.Layers, want)
			}
		})
	}
}

// TestWePullWhatSkopeoPushes: images skopeo pushes with gzip and zstd
// layers come out of us as the same image.
func TestWePullWhatSkopeoPushes(t *testing.T) {
	peers.Need(t, "skopeo")
	ctx := ctxMinutes(t, 2)
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	for _, comp := range []string{"gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			// A registry each: skopeo's blob info cache would otherwise
			// reuse the blobs of the other compression.
			r := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: peers.AuthToken})
			name := "skopeo/" + comp + ":v1"
			if err := r.SkopeoPush(ctx, "docker-archive:"+in, name, peers.SkopeoOptions{CompressFormat: comp}); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.tar")
			mustRun(t, append(creds(r), "process", "registry://"+r.Host+"/"+name, "tar://"+out)...)
			sameImage(t, out, res)

			stdout := mustRun(t, append(creds(r), "-O", "json", "info", "registry://"+r.Host+"/"+name)...)
			var info struct {
				ConfigDigest string `json:"config_digest"`
				Layers       []struct {
					Compression string `json:"compression"`
				} `json:"layers"`
			}
			if err := json.Unmarshal([]byte(stdout), &info); err != nil {
				t.Fatalf("info JSON: %v\n%s", err, stdout)
			}
			if info.ConfigDigest != res.ConfigDigest.String() || len(info.Layers) != len(res.DiffIDs) {
				t.Fatalf("info: %s", stdout)
			}
			for _, l := range info.Layers {
				if l.Compression != comp {
					t.Errorf("info says %s, want %s", l.Compression, comp)
				}
			}
		})
	}
}

// TestMultiPlatformIndex: from an index pushed by `skopeo copy --all`,
// the platform asked for is pulled; a platform the index lacks gives an
// error listing what it has.
func TestMultiPlatformIndex(t *testing.T) {
	peers.Need(t, "skopeo")
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 2)
	_, layout := multiPlatformLayout(t)
	if err := r.SkopeoPush(ctx, "oci:"+layout.Dir+":"+layout.Tag, "multi:v1", peers.SkopeoOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	src := "registry://" + r.Host + "/multi:v1"
	tests := []struct {
		name  string
		args  []string
		query string
		want  int // index into platforms
	}{
		{"default", nil, "", 0},
		{"flags", []string{"--architecture", "arm64"}, "", 1},
		{"aarch64 alias", []string{"--architecture", "aarch64", "--variant", "v8"}, "", 1},
		{"uri options", nil, "?arch=arm&variant=v7", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.tar")
			mustRun(t, append(tt.args, "process", src+tt.query, "tar://"+out)...)
			cd, diffIDs := tarImage(t, out)
			want := layout.Images[tt.want]
			if cd != want.ConfigDigest || !slices.Equal(diffIDs, want.DiffIDs) {
				t.Errorf("got config %s, want %s (%s)", cd, want.ConfigDigest, want.Platform.Architecture)
			}
		})
	}
	t.Run("missing platform", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out.tar")
		code, _, stderr := run(t, "--architecture", "s390x", "process", src, "tar://"+out)
		if code == 0 {
			t.Fatal("succeeded")
		}
		for _, want := range []string{"linux/s390x", "linux/amd64", "linux/arm64/v8", "linux/arm/v7"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("error lacks %q:\n%s", want, stderr)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Error("output written")
		}
	})
	t.Run("info lists platforms", func(t *testing.T) {
		stdout := mustRun(t, "-O", "json", "info", src)
		for _, want := range []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7", layout.IndexDigest.String()} {
			if !strings.Contains(stdout, want) {
				t.Errorf("info lacks %q", want)
			}
		}
	})
	t.Run("by digest", func(t *testing.T) {
		want := layout.Images[1]
		out := filepath.Join(t.TempDir(), "out.tar")
		mustRun(t, "process", "registry://"+r.Host+"/multi@"+want.ManifestDigest.String(), "tar://"+out)
		if cd, _ := tarImage(t, out); cd != want.ConfigDigest {
			t.Errorf("got config %s, want %s", cd, want.ConfigDigest)
		}
	})
}

// TestRegistryToRegistry: a copy within one registry mounts every blob
// and keeps the manifest digest; a copy to another registry uploads the
// blobs as they are (no recompression), and a second copy skips them.
func TestRegistryToRegistry(t *testing.T) {
	peers.Need(t, "skopeo")
	a := peers.StartTestRegistry(t, peers.RegistryOptions{})
	b := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 2)
	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	if err := a.SkopeoPush(ctx, "docker-archive:"+in, "src/app:v1", peers.SkopeoOptions{}); err != nil {
		t.Fatal(err)
	}
	want, err := a.SkopeoInspect(ctx, "src/app:v1", peers.SkopeoOptions{}, "--raw")
	if err != nil {
		t.Fatal(err)
	}
	check := func(r *peers.Registry, name string) {
		t.Helper()
		got, err := r.SkopeoInspect(ctx, name, peers.SkopeoOptions{}, "--raw")
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(got) != digest.FromBytes(want) {
			t.Errorf("%s/%s has manifest %s, want the source's %s", r.Host, name, digest.FromBytes(got), digest.FromBytes(want))
		}
	}
	_, _, stderr := run(t, "process", "registry://"+a.Host+"/src/app:v1", "registry://"+a.Host+"/dst/app:v2")
	check(a, "dst/app:v2")
	if !strings.Contains(stderr, "mounted=4") {
		t.Errorf("same-registry copy did not mount the 4 layers:\n%s", stderr)
	}
	_, _, stderr = run(t, "process", "registry://"+a.Host+"/src/app:v1", "registry://"+b.Host+"/other/app:v1")
	check(b, "other/app:v1")
	if !strings.Contains(stderr, "uploaded=4") {
		t.Errorf("cross-registry copy did not upload 4 layers:\n%s", stderr)
	}
	_, _, stderr = run(t, "process", "registry://"+a.Host+"/src/app:v1", "registry://"+b.Host+"/other/app:v1")
	if !strings.Contains(stderr, "already_present=4") {
		t.Errorf("second copy did not skip the 4 layers:\n%s", stderr)
	}
	// Asking for zstd recompresses, so the digest changes and the layers
	// say zstd.
	mustRun(t, "process", "registry://"+a.Host+"/src/app:v1", "registry://"+b.Host+"/other/app:zstd?compression=zstd")
	raw, err := b.SkopeoInspect(ctx, "other/app:zstd", peers.SkopeoOptions{}, "--raw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), ocispec.MediaTypeImageLayerZstd) {
		t.Errorf("compression=zstd copy has no zstd layers: %s", raw)
	}
}

// TestRegistryFaults: with an in-process proxy in front of the real
// registry, transient failures end in success and corrupt bytes in a
// clear error with no output.
func TestRegistryFaults(t *testing.T) {
	peers.Need(t, "skopeo")
	r := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: peers.AuthHtpasswd})
	ctx := ctxMinutes(t, 2)
	img := imagegen.Big(4<<20, 2) // blobs big enough to break in the middle
	in, res := writeImage(t, img, imagegen.Legacy)
	if err := r.SkopeoPush(ctx, "docker-archive:"+in, "faults/app:v1", peers.SkopeoOptions{}); err != nil {
		t.Fatal(err)
	}
	proxy := peers.NewFaultProxy(r.Host)
	defer proxy.Close()
	src := "registry://" + proxy.Host() + "/faults/app:v1"
	blobGET := func(a peers.Action, times int) peers.Fault {
		return peers.Fault{Method: http.MethodGet, PathContains: "/blobs/sha256:", Match: func(req *http.Request) bool {
			return req.Header.Get("Range") == ""
		}, Times: times, Action: a}
	}
	tests := []struct {
		name    string
		fault   peers.Fault
		wantErr string
		check   func(t *testing.T, recs []peers.ProxyRecord)
	}{
		{name: "dropped mid-blob", fault: blobGET(peers.DropAfter(1<<20), 2), check: func(t *testing.T, recs []peers.ProxyRecord) {
			for _, rec := range recs {
				if strings.HasPrefix(rec.Range, "bytes=") {
					return
				}
			}
			t.Error("no Range request to resume the broken download")
		}},
		{name: "500s", fault: blobGET(peers.RespondStatus(500), 2)},
		{name: "503 on manifest", fault: peers.Fault{Method: http.MethodGet, PathContains: "/manifests/", Times: 2, Action: peers.RespondStatus(503)}},
		{name: "429 retry-after", fault: blobGET(peers.TooManyRequests(1), 1)},
		{name: "corrupt blob", fault: blobGET(peers.CorruptByte(1000), -1), wantErr: "digest"},
		{name: "redirect to storage", fault: blobGET(peers.RedirectElsewhere(), -1), check: func(t *testing.T, recs []peers.ProxyRecord) {
			var redirected int
			for _, rec := range recs {
				if strings.HasPrefix(rec.Host, "localhost") {
					redirected++
					if rec.Authorization != "" {
						t.Errorf("the registry's Authorization went to %s", rec.Host)
					}
				}
			}
			if redirected == 0 {
				t.Error("no request reached the redirect target")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy.ClearFaults()
			proxy.ResetRequests()
			f := proxy.Inject(tt.fault)
			out := filepath.Join(t.TempDir(), "out.tar")
			code, _, stderr := run(t, append(creds(r), "--retries", "3", "process", src, "tar://"+out)...)
			if f.Fired() == 0 {
				t.Fatal("the fault never fired")
			}
			if tt.wantErr != "" {
				if code == 0 {
					t.Fatal("succeeded despite the fault")
				}
				if !strings.Contains(errorLine(stderr, filepath.Dir(out)), tt.wantErr) {
					t.Errorf("error does not mention %q:\n%s", tt.wantErr, stderr)
				}
				if _, err := os.Stat(out); err == nil {
					t.Error("output written despite the failure")
				}
				entries, _ := os.ReadDir(filepath.Dir(out))
				if len(entries) != 0 {
					t.Errorf("leftovers: %v", entries)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			sameImage(t, out, res)
			if tt.check != nil {
				tt.check(t, proxy.Requests())
			}
		})
	}
}

// TestRegistryPushFaults: pushes through the fault proxy survive 5xx on
// requests that can be replayed, and an upload broken mid-stream fails
// cleanly without a manifest being written.
func TestRegistryPushFaults(t *testing.T) {
	peers.Need(t, "skopeo")
	r := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: peers.AuthToken})
	ctx := ctxMinutes(t, 2)
	proxy := peers.NewFaultProxy(r.Host)
	defer proxy.Close()
	in, res := writeImage(t, imagegen.Big(2<<20, 2), imagegen.Legacy)
	tests := []struct {
		name   string
		fault  peers.Fault
		wantOK bool
	}{
		{"500 on manifest PUT", peers.Fault{Method: http.MethodPut, PathContains: "/manifests/", Times: 2, Action: peers.RespondStatus(500)}, true},
		{"503 on blob HEAD", peers.Fault{Method: http.MethodHead, PathContains: "/blobs/", Times: 2, Action: peers.RespondStatus(503)}, true},
		{"429 on upload start", peers.Fault{Method: http.MethodPost, PathContains: "/blobs/uploads/", Times: 1, Action: peers.TooManyRequests(1)}, true},
		{"500 on every upload", peers.Fault{Method: http.MethodPatch, PathContains: "/blobs/uploads/", Times: peers.Forever, Action: peers.RespondStatus(500)}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy.ClearFaults()
			f := proxy.Inject(tt.fault)
			name := fmt.Sprintf("pushfault/app%d:v1", i)
			code, _, stderr := run(t, append(creds(r), "--retries", "3", "process", "tar://"+in, "registry://"+proxy.Host()+"/"+name)...)
			if f.Fired() == 0 {
				t.Fatal("the fault never fired")
			}
			_, inspectErr := r.SkopeoInspect(ctx, name, peers.SkopeoOptions{}, "--raw")
			if !tt.wantOK {
				if code == 0 {
					t.Fatal("succeeded despite the fault")
				}
				if inspectErr == nil {
					t.Error("a manifest was pushed although a layer failed")
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			out := filepath.Join(t.TempDir(), "out.tar")
			mustRun(t, append(creds(r), "process", "registry://"+r.Host+"/"+name, "tar://"+out)...)
			sameImage(t, out, res)
		})
	}
}

// TestRegistryTokenRefresh: a token that expires in the middle of a pull
// (a 429 holds a download back past its lifetime) is replaced, and the
// pull succeeds.
func TestRegistryTokenRefresh(t *testing.T) {
	peers.Need(t, "skopeo")
	r := peers.StartTestRegistry(t, peers.RegistryOptions{Auth: peers.AuthToken, TokenTTL: time.Second})
	ctx := ctxMinutes(t, 2)
	in, res := writeImage(t, imagegen.Big(1<<20, 3), imagegen.Legacy)
	if err := r.SkopeoPush(ctx, "docker-archive:"+in, "refresh/app:v1", peers.SkopeoOptions{}); err != nil {
		t.Fatal(err)
	}
	proxy := peers.NewFaultProxy(r.Host)
	defer proxy.Close()
	proxy.Inject(peers.Fault{Method: http.MethodGet, PathContains: "/blobs/sha256:", Skip: 1, Times: 1, Action: peers.TooManyRequests(3)})
	before := r.TokensIssued()
	out := filepath.Join(t.TempDir(), "out.tar")
	mustRun(t, append(creds(r), "-j", "1", "process", "registry://"+proxy.Host()+"/refresh/app:v1", "tar://"+out)...)
	sameImage(t, out, res)
	if n := r.TokensIssued() - before; n < 2 {
		t.Errorf("%d tokens issued; the expired one was not replaced", n)
	}
}

// TestRegistryLayerCache: with --layer-cache, pushing the same layers
// again costs a HEAD each instead of a compression and an upload; an entry
// whose blob the destination lacks is pushed normally.
func TestRegistryLayerCache(t *testing.T) {
	r := peers.StartTestRegistry(t, peers.RegistryOptions{})
	other := peers.StartTestRegistry(t, peers.RegistryOptions{})
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	cache := filepath.Join(t.TempDir(), "cache.json")
	push := func(host, name string) string {
		_, _, stderr := run(t, "--layer-cache", cache, "process", "tar://"+in, "registry://"+host+"/"+name)
		if !strings.Contains(stderr, "Processed") {
			t.Fatalf("push failed:\n%s", stderr)
		}
		return stderr
	}
	if s := push(r.Host, "cache/a:v1"); !strings.Contains(s, "uploaded=4") || !strings.Contains(s, "cache_hits=0") {
		t.Errorf("first push:\n%s", s)
	}
	var doc struct {
		Version int
		Layers  map[string]struct {
			CompressedDigest string `json:"compressed_digest"`
			FiltersHash      string `json:"filters_hash"`
		}
	}
	data, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Version != 1 || len(doc.Layers) != 4 {
		t.Fatalf("cache file: %v\n%s", err, data)
	}
	for _, d := range res.DiffIDs {
		if e, ok := doc.Layers[d.Encoded()]; !ok || e.FiltersHash != "gzip" {
			t.Errorf("no gzip entry for %s", d)
		}
	}
	if s := push(r.Host, "cache/b:v1"); !strings.Contains(s, "cache_hits=4") || !strings.Contains(s, "uploaded=0") {
		t.Errorf("second push did not use the cache:\n%s", s)
	}
	out := filepath.Join(t.TempDir(), "out.tar")
	mustRun(t, "process", "registry://"+r.Host+"/cache/b:v1", "tar://"+out)
	sameImage(t, out, res)
	if s := push(other.Host, "cache/c:v1"); !strings.Contains(s, "uploaded=4") {
		t.Errorf("a registry without the blobs did not get them:\n%s", s)
	}
}

// multiPlatformLayout builds an OCI layout holding a three-platform index
// (linux/amd64, linux/arm64/v8, linux/arm/v7) and returns the platforms
// in index order.
func multiPlatformLayout(t *testing.T) ([]ocispec.Platform, *peers.MultiPlatformLayout) {
	t.Helper()
	platforms := []ocispec.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
	}
	layout, err := peers.BuildMultiPlatformLayout(t.TempDir(), platforms)
	if err != nil {
		t.Fatal(err)
	}
	return platforms, layout
}
