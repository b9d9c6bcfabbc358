package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
)

// TestDockerLoadsOurTarball: a real Docker Engine loads the tarball we
// write and sees the same config and layers.
func TestDockerLoadsOurTarball(t *testing.T) {
	peers.Need(t, "dockerd", "docker")
	dir, err := os.MkdirTemp("", "occy-docker-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := peers.StartDocker(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()

	for _, tc := range []struct {
		format   imagegen.Format
		comp     string
		repeated bool // an image that uses one layer twice
	}{{imagegen.Legacy, "", false}, {imagegen.OCI, "", false}, {imagegen.OCI, "gzip", false}, {imagegen.OCI, "zstd", false},
		{imagegen.Legacy, "", true}, {imagegen.OCI, "", true}} {
		t.Run(fmt.Sprintf("%s/%s/repeated=%t", tc.format, tc.comp, tc.repeated), func(t *testing.T) {
			img := imagegen.Sample()
			if tc.repeated {
				img = imagegen.Repeated()
			}
			img.RepoTag = fmt.Sprintf("example.com/test/load-%s%s-%t:v1", tc.format, tc.comp, tc.repeated)
			for i := range img.Layers {
				img.Layers[i].Compression = tc.comp
			}
			in, res := writeImage(t, img, tc.format)
			out := filepath.Join(t.TempDir(), "out.tar")
			mustRun(t, "process", "tar://"+in, "tar://"+out)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, err := d.Docker(ctx, "load", "-i", out); err != nil {
				t.Fatal(err)
			}
			js, err := d.Docker(ctx, "image", "inspect", img.RepoTag)
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
				t.Errorf("docker sees image %s, want config digest %s", inspect[0].ID, res.ConfigDigest)
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

// TestExpandMatchesUmoci: dir://...?expand=true gives the same filesystem
// as skopeo copy to an OCI layout followed by umoci unpack.
func TestExpandMatchesUmoci(t *testing.T) {
	peers.Need(t, "skopeo", "umoci")
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(format.String(), func(t *testing.T) {
			in, _ := writeImage(t, imagegen.Sample(), format)
			work := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			layout := filepath.Join(work, "layout")
			if _, err := peers.Run(ctx, "skopeo", "copy", "--quiet", "docker-archive:"+in, "oci:"+layout+":ref"); err != nil {
				t.Fatal(err)
			}
			bundle := filepath.Join(work, "bundle")
			if _, err := peers.Run(ctx, "umoci", "unpack", "--image", layout+":ref", bundle); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(work, "out")
			mustRun(t, "process", "tar://"+in, "dir://"+out+"?expand=true")
			compareTrees(t, filepath.Join(bundle, "rootfs"), filepath.Join(out, "manifest"))
		})
	}
}

// fileInfo is what compareTrees compares of each path.
type fileInfo struct {
	Type     string
	Mode     fs.FileMode
	UID, GID uint32
	Size     int64
	Sum      string
	Link     string
	MTime    int64
}

func snapshot(t *testing.T, root string) map[string]fileInfo {
	t.Helper()
	tree := map[string]fileInfo{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		info := fileInfo{Type: fi.Mode().Type().String(), Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			info.Size, _ = io.Copy(h, f)
			f.Close()
			info.Sum = hex.EncodeToString(h.Sum(nil))
			info.MTime = fi.ModTime().Unix()
		case fi.Mode()&fs.ModeSymlink != 0:
			info.Link, _ = os.Readlink(p)
			info.MTime = fi.ModTime().Unix()
		}
		if rel != "." {
			tree[rel] = info
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	w, g := snapshot(t, want), snapshot(t, got)
	if len(w) == 0 {
		t.Fatalf("reference tree %s is empty", want)
	}
	var diffs []string
	for p, wi := range w {
		gi, ok := g[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %s", p))
		case gi != wi:
			diffs = append(diffs, fmt.Sprintf("%s: got %+v, want %+v", p, gi, wi))
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %s", p))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 0 {
		t.Errorf("%d differences from the reference extraction:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}
