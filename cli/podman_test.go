package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
)

// startPodman starts a private Podman API service for one test.
func startPodman(t *testing.T) *peers.Podman {
	t.Helper()
	peers.Need(t, "podman")
	dir, err := os.MkdirTemp("", "occy-podman-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	p, err := peers.StartPodman(dir)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		os.RemoveAll(dir)
	})
	return p
}

// podmanTags lists the REPOSITORY:TAG names Podman holds, sorted.
func podmanTags(t *testing.T, p *peers.Podman) []string {
	t.Helper()
	out, err := p.Podman(ctxMinutes(t, 1), "--url", "unix://"+p.Socket, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		t.Fatal(err)
	}
	tags := strings.Fields(out)
	slices.Sort(tags)
	return tags
}

// TestPodman: Podman's Docker-compatible API serves docker:// both ways
// and dockerpush:// (its push takes tlsVerify=false), with the same image
// each way, and nothing is left behind.
func TestPodman(t *testing.T) {
	p := startPodman(t)
	for i, tc := range []struct {
		name   string
		img    imagegen.Image
		format imagegen.Format
	}{
		{"sample", imagegen.Sample(), imagegen.Legacy},
		{"repeated", imagegen.Repeated(), imagegen.OCI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := "example.com/test/pm-" + string(rune('a'+i)) + ":v1"
			tc.img.RepoTag = ref
			in, res := writeImage(t, tc.img, tc.format)
			tmp := t.TempDir()
			before := listening(t)
			uri := func(scheme string) string { return scheme + "://" + ref + "?socket=" + p.Socket }

			mustRun(t, "--temp-dir", tmp, "process", "tar://"+in, uri("docker"))
			tags := podmanTags(t, p)
			if !slices.Contains(tags, ref) {
				t.Fatalf("Podman has %v after the load, want %s", tags, ref)
			}
			saved := filepath.Join(t.TempDir(), "saved.tar")
			mustRun(t, "--temp-dir", tmp, "process", uri("docker"), "tar://"+saved)
			sameImage(t, saved, res)
			pushed := filepath.Join(t.TempDir(), "pushed.tar")
			mustRun(t, "--temp-dir", tmp, "process", uri("dockerpush"), "tar://"+pushed)
			sameImage(t, pushed, res)
			if a, b := layerDigests(t, saved), layerDigests(t, pushed); !slices.Equal(a, b) {
				t.Errorf("layer.tar digests: docker:// %v, dockerpush:// %v", a, b)
			}
			if got := podmanTags(t, p); !slices.Equal(got, tags) {
				t.Errorf("Podman has %v after dockerpush://, had %v (a temporary tag left?)", got, tags)
			}
			leftNothing(t, tmp, before)
		})
	}
}
