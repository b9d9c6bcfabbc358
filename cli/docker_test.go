package cli

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"github.com/opencontainers/go-digest"
)

// startEngine starts a private Docker Engine for one test.
func startEngine(t *testing.T) *peers.Docker {
	t.Helper()
	peers.Need(t, "dockerd", "docker")
	dir, err := os.MkdirTemp("", "occy-docker-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	d, err := peers.StartDocker(dir)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		os.RemoveAll(dir)
	})
	return d
}

// dockerURI is a docker:// URI for ref on the engine d.
func dockerURI(d *peers.Docker, ref string) string {
	return "docker://" + ref + "?socket=" + d.Socket
}

// engineImage is what `docker image inspect` says of an image.
func engineImage(t *testing.T, d *peers.Docker, ref string) (digest.Digest, []digest.Digest) {
	t.Helper()
	js, err := d.Docker(ctxMinutes(t, 1), "image", "inspect", ref)
	if err != nil {
		t.Fatal(err)
	}
	var inspect []struct {
		ID     string `json:"Id"`
		RootFS struct{ Layers []digest.Digest }
	}
	if err := json.Unmarshal([]byte(js), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("inspect %s: %v: %s", ref, err, js)
	}
	return digest.Digest(inspect[0].ID), inspect[0].RootFS.Layers
}

// sameEngineImage fails unless the engine holds ref as the image res
// describes: the same config (Id) and RootFS layers.
func sameEngineImage(t *testing.T, d *peers.Docker, ref string, res imagegen.Result) {
	t.Helper()
	id, layers := engineImage(t, d, ref)
	if id != res.ConfigDigest {
		t.Errorf("%s: the engine sees image %s, want config digest %s", ref, id, res.ConfigDigest)
	}
	if !slices.Equal(layers, res.DiffIDs) {
		t.Errorf("%s: RootFS.Layers %v, want %v", ref, layers, res.DiffIDs)
	}
}

// engineTags lists every REPOSITORY:TAG the engine has, dangling images as
// <none>:<none>, sorted.
func engineTags(t *testing.T, d *peers.Docker) []string {
	t.Helper()
	out, err := d.Docker(ctxMinutes(t, 1), "image", "ls", "--all", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		t.Fatal(err)
	}
	tags := strings.Fields(out)
	slices.Sort(tags)
	return tags
}

// listening returns this process's listening sockets (TCP and Unix), by
// inode, so that a test can check a command left none open.
func listening(t *testing.T) []string {
	t.Helper()
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []string
	scan := func(file string, listen func(f []string) bool, inode int) {
		b, err := os.ReadFile(file)
		if err != nil {
			return
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > inode && mine[f[inode]] && listen(f) {
				out = append(out, file+":"+f[inode])
			}
		}
	}
	tcpListen := func(f []string) bool { return f[3] == "0A" }
	scan("/proc/self/net/tcp", tcpListen, 9)
	scan("/proc/self/net/tcp6", tcpListen, 9)
	scan("/proc/self/net/unix", func(f []string) bool { return f[3] == "00010000" }, 6)
	return out
}

// spoolFiles lists the temporary files this process still has open.
func spoolFiles(t *testing.T) []string {
	t.Helper()
	var open []string
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.Contains(target, ".occystrap-") {
			open = append(open, target)
		}
	}
	return open
}

// leftNothing fails if a command left temporary files in tmp, spool files
// open, or a listening socket that was not there before.
func leftNothing(t *testing.T, tmp string, before []string) {
	t.Helper()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary directory %s not empty: %v", tmp, left)
	}
	if open := spoolFiles(t); len(open) != 0 {
		t.Errorf("temporary files still open: %v", open)
	}
	if now := listening(t); !slices.Equal(now, before) {
		t.Errorf("listening sockets %v, before %v", now, before)
	}
}

// TestDockerRoundTrip: docker:// -> tar:// -> docker://, and docker:// ->
// docker:// under a new name, keep the config (the engine's image ID) and
// the layers; info describes the engine's image; nothing is left behind.
func TestDockerRoundTrip(t *testing.T) {
	d := startEngine(t)
	var wantTags []string
	for i, tc := range []struct {
		name   string
		img    imagegen.Image
		format imagegen.Format
	}{
		{"sample", imagegen.Sample(), imagegen.Legacy},
		{"sample-oci-gzip", imagegen.Sample().WithCompression("gzip"), imagegen.OCI},
		{"repeated", imagegen.Repeated(), imagegen.Legacy},
		{"big", imagegen.Big(12<<20, 7), imagegen.OCI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxMinutes(t, 3)
			src := fmt.Sprintf("example.com/test/dk-%d:v1", i)
			tc.img.RepoTag = src
			in, res := writeImage(t, tc.img, tc.format)
			if _, err := d.Docker(ctx, "load", "-i", in); err != nil {
				t.Fatal(err)
			}
			wantTags = append(wantTags, src)
			tmp := t.TempDir()
			before := listening(t)

			out := filepath.Join(t.TempDir(), "out.tar")
			mustRun(t, "--temp-dir", tmp, "process", dockerURI(d, src), "tar://"+out)
			sameImage(t, out, res)
			var man dockerManifest
			for _, m := range readTar(t, out) {
				if m.name == "manifest.json" {
					json.Unmarshal(m.data, &man)
				}
			}
			if len(man) != 1 || !slices.Equal(man[0].RepoTags, []string{src}) {
				t.Errorf("manifest.json %+v: RepoTags should be the source's %s", man, src)
			}

			// dockerpush:// gives the same image as docker://.
			pushed := filepath.Join(t.TempDir(), "pushed.tar")
			mustRun(t, "--temp-dir", tmp, "process", "dockerpush://"+src+"?socket="+d.Socket, "tar://"+pushed)
			sameImage(t, pushed, res)
			if a, b := layerDigests(t, out), layerDigests(t, pushed); !slices.Equal(a, b) {
				t.Errorf("layer.tar digests: docker:// %v, dockerpush:// %v", a, b)
			}

			copyRef := fmt.Sprintf("example.com/test/copy-%d:v2", i)
			mustRun(t, "--temp-dir", tmp, "process", "tar://"+out, dockerURI(d, copyRef))
			sameEngineImage(t, d, copyRef, res)
			wantTags = append(wantTags, copyRef)

			direct := fmt.Sprintf("direct-%d:v3", i)
			mustRun(t, "--temp-dir", tmp, "process", dockerURI(d, src), dockerURI(d, direct))
			sameEngineImage(t, d, direct, res)
			wantTags = append(wantTags, direct)

			for _, u := range []string{dockerURI(d, src), "dockerpush://" + src + "?socket=" + d.Socket} {
				js := mustRun(t, "-O", "json", "info", u)
				var inf struct {
					Image, Tag, OS string
					DiffIDs        []digest.Digest `json:"diff_ids"`
				}
				if err := json.Unmarshal([]byte(js), &inf); err != nil {
					t.Fatalf("info %s: %v\n%s", u, err, js)
				}
				if inf.Image != strings.TrimSuffix(src, ":v1") || inf.Tag != "v1" || inf.OS != "linux" || !slices.Equal(inf.DiffIDs, res.DiffIDs) {
					t.Errorf("info %s: %+v", u, inf)
				}
			}
			leftNothing(t, tmp, before)
		})
	}
	slices.Sort(wantTags)
	if got := engineTags(t, d); !slices.Equal(got, wantTags) {
		t.Errorf("the engine has %v, want exactly %v (no temporary or dangling images)", got, wantTags)
	}
}

// TestDockerRegistry: docker:// -> registry:// -> docker:// keeps the
// image.
func TestDockerRegistry(t *testing.T) {
	d := startEngine(t)
	reg := peers.StartTestRegistry(t, peers.RegistryOptions{})
	ctx := ctxMinutes(t, 3)
	img := imagegen.Sample()
	img.RepoTag = "example.com/test/to-registry:v1"
	in, res := writeImage(t, img, imagegen.Legacy)
	if _, err := d.Docker(ctx, "load", "-i", in); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	before := listening(t)
	pushed := "registry://" + reg.Host + "/test/from-docker:v1"
	mustRun(t, "--temp-dir", tmp, "process", dockerURI(d, img.RepoTag), pushed)
	mustRun(t, "--temp-dir", tmp, "process", pushed, dockerURI(d, "example.com/test/from-registry:v2"))
	sameEngineImage(t, d, "example.com/test/from-registry:v2", res)
	// dockerpush:// -> registry:// uploads the engine's gzip layers as
	// they came; the image is the same.
	viaPush := "registry://" + reg.Host + "/test/from-dockerpush:v1"
	mustRun(t, "--temp-dir", tmp, "process", "dockerpush://"+img.RepoTag+"?socket="+d.Socket, viaPush)
	mustRun(t, "--temp-dir", tmp, "process", viaPush, dockerURI(d, "example.com/test/from-dockerpush:v2"))
	sameEngineImage(t, d, "example.com/test/from-dockerpush:v2", res)
	// Without a destination name, the source's is used.
	mustRun(t, "--temp-dir", tmp, "process", pushed, "docker://?socket="+d.Socket)
	sameEngineImage(t, d, reg.Host+"/test/from-docker:v1", res)
	leftNothing(t, tmp, before)
}

// windowsImage writes a tarball of an image whose config says it is for
// Windows, which a Linux engine refuses to load.
func windowsImage(t *testing.T) string {
	t.Helper()
	img := imagegen.Sample()
	img.RepoTag = "example.com/test/windows:v1"
	in, res := writeImage(t, img, imagegen.Legacy)
	cfg := bytes.Replace(res.Config, []byte(`"os":"linux"`), []byte(`"os":"windows"`), 1)
	if bytes.Equal(cfg, res.Config) {
		t.Fatal("no os in the config")
	}
	name := digest.FromBytes(cfg).Encoded() + ".json"
	var files []member
	for _, m := range readTar(t, in) {
		switch m.name {
		case res.ConfigPath:
			m.name, m.data = name, cfg
		case "manifest.json":
			m.data = bytes.Replace(m.data, []byte(res.ConfigPath), []byte(name), 1)
		}
		files = append(files, m)
	}
	out := filepath.Join(t.TempDir(), "windows.tar")
	writeMembers(t, out, files)
	return out
}

// TestDockerErrors: a missing image, a dead socket and an engine's error
// each give a clear message and exit 1, and leave nothing behind.
func TestDockerErrors(t *testing.T) {
	d := startEngine(t)
	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	dead := filepath.Join(t.TempDir(), "dead.sock")
	untagged := untaggedImage(t, d)
	tags := engineTags(t, d)
	win := windowsImage(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing image", []string{"process", dockerURI(d, "example.com/test/nope:v1"), "tar://" + filepath.Join(t.TempDir(), "x.tar")},
			"Error: image example.com/test/nope:v1 not found in the Docker Engine at " + d.Socket},
		{"missing image info", []string{"info", dockerURI(d, "nope:v1")},
			"Error: image nope:v1 not found in the Docker Engine at " + d.Socket},
		{"dead socket as source", []string{"process", "docker://busybox?socket=" + dead, "tar://" + filepath.Join(t.TempDir(), "x.tar")},
			"Error: cannot reach the Docker Engine at " + dead + " (connect: no such file or directory): is dockerd running? (use ?socket= for Podman: /run/podman/podman.sock)"},
		{"dead socket as destination", []string{"process", "tar://" + in, "docker://x:y?socket=" + dead},
			"Error: cannot reach the Docker Engine at " + dead + " (connect: no such file or directory): is dockerd running?"},
		{"engine refuses a reference", []string{"process", dockerURI(d, "UPPER/case:v1"), "tar://" + filepath.Join(t.TempDir(), "x.tar")},
			"Error: the Docker Engine at " + d.Socket + " refused GET /images/UPPER/case:v1/json: 400 Bad Request:"},
		{"engine refuses the image", []string{"process", "tar://" + win, dockerURI(d, "example.com/test/windows:v1")},
			"Error: the Docker Engine at " + d.Socket + " failed to load the image:"},
		{"dockerpush missing image", []string{"process", "dockerpush://example.com/test/nope:v1?socket=" + d.Socket, "tar://" + filepath.Join(t.TempDir(), "x.tar")},
			"Error: image example.com/test/nope:v1 not found in the Docker Engine at " + d.Socket},
		{"dockerpush dead socket", []string{"process", "dockerpush://busybox?socket=" + dead, "tar://" + filepath.Join(t.TempDir(), "x.tar")},
			"Error: cannot reach the Docker Engine at " + dead + " (connect: no such file or directory): is dockerd running?"},
		{"dockerpush untagged image", []string{"process", "dockerpush://" + untagged + "?socket=" + d.Socket, "tar://" + filepath.Join(t.TempDir(), "x.tar")},
			"Error: dockerpush:// needs a tagged image, and " + untagged + " has no tag in the Docker Engine at " + d.Socket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			before := listening(t)
			code, _, stderr := run(t, append([]string{"--temp-dir", tmp}, tc.args...)...)
			t.Logf("exit %d: %s", code, strings.TrimSpace(stderr[max(strings.LastIndex(stderr, "Error:"), 0):]))
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr, tc.want)
			}
			leftNothing(t, tmp, before)
		})
	}
	t.Run("dockerpush interrupted", func(t *testing.T) {
		pushInterrupted(t, d)
	})
	if got := engineTags(t, d); !slices.Equal(got, tags) {
		t.Errorf("the engine has %v after failures, had %v", got, tags)
	}
}

// pushInterrupted cancels a dockerpush:// run once the engine has the
// temporary tag (the push has begun): the run fails, writes nothing, and
// removes the tag, its files and its port.
func pushInterrupted(t *testing.T, d *peers.Docker) {
	ctx := ctxMinutes(t, 2)
	img := imagegen.Big(96<<20, 6)
	img.RepoTag = "example.com/test/interrupted:v1"
	in, _ := writeImage(t, img, imagegen.Legacy)
	if _, err := d.Docker(ctx, "load", "-i", in); err != nil {
		t.Fatal(err)
	}
	defer d.Docker(ctxMinutes(t, 1), "rmi", img.RepoTag)
	before := engineTags(t, d)
	tmp := t.TempDir()
	listeningBefore := listening(t)
	out := filepath.Join(t.TempDir(), "out.tar")
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for runCtx.Err() == nil {
			if tags, _ := d.Docker(runCtx, "image", "ls", "--format", "{{.Repository}}"); strings.Contains(tags, "127.0.0.1:") {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var stderr bytes.Buffer
	code := Run(runCtx, []string{"--temp-dir", tmp, "process", "dockerpush://" + img.RepoTag + "?socket=" + d.Socket, "tar://" + out}, io.Discard, &stderr)
	if runCtx.Err() == nil {
		t.Fatalf("the run ended (exit %d) before the push began: %s", code, stderr.String())
	}
	t.Logf("exit %d: %s", code, strings.TrimSpace(stderr.String()))
	if code == 0 {
		t.Errorf("an interrupted run exited 0")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("an interrupted run left %s (%v)", out, err)
	}
	if got := engineTags(t, d); !slices.Equal(got, before) {
		t.Errorf("the engine has %v after an interrupted push, had %v", got, before)
	}
	leftNothing(t, tmp, listeningBefore)
}

// untaggedImage loads an image into d, then another under the same tag,
// so that only its ID names the first; it returns that ID.
func untaggedImage(t *testing.T, d *peers.Docker) string {
	t.Helper()
	ctx := ctxMinutes(t, 1)
	var id string
	for _, img := range []imagegen.Image{imagegen.Sample(), imagegen.Repeated()} {
		img.RepoTag = "example.com/test/untagged:v1"
		in, res := writeImage(t, img, imagegen.Legacy)
		if _, err := d.Docker(ctx, "load", "-i", in); err != nil {
			t.Fatal(err)
		}
		if id == "" {
			id = res.ConfigDigest.String()
		}
	}
	return id
}

// layerDigests lists the digests of a docker-save tarball's layers, in
// manifest order.
func layerDigests(t *testing.T, path string) []digest.Digest {
	t.Helper()
	files := map[string][]byte{}
	for _, m := range readTar(t, path) {
		files[m.name] = m.data
	}
	var man dockerManifest
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil || len(man) != 1 {
		t.Fatalf("%s: manifest.json: %v", path, err)
	}
	var out []digest.Digest
	for _, l := range man[0].Layers {
		out = append(out, digest.FromBytes(files[l]))
	}
	return out
}

// writeMembers writes a tarball of regular files.
func writeMembers(t *testing.T, path string, ms []member) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		h := *m.hdr
		h.Name, h.Size = m.name, int64(len(m.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
