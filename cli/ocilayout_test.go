package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// checkDockerTarball checks that a docker-save tarball written by us holds
// the config and diff IDs of res.
func checkDockerTarball(t *testing.T, path string, res imagegen.Result) {
	t.Helper()
	files := map[string][]byte{}
	for _, m := range readTar(t, path) {
		files[m.name] = m.data
	}
	var m dockerManifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest.json %q: %v", files["manifest.json"], err)
	}
	if got := digest.FromBytes(files[m[0].Config]); got != res.ConfigDigest {
		t.Errorf("config digest %s, want %s", got, res.ConfigDigest)
	}
	if len(m[0].Layers) != len(res.DiffIDs) {
		t.Fatalf("%d layers, want %d", len(m[0].Layers), len(res.DiffIDs))
	}
	for i, l := range m[0].Layers {
		if got := digest.FromBytes(files[l]); got != res.DiffIDs[i] {
			t.Errorf("layer %d (%s) has diff ID %s, want %s", i, l, got, res.DiffIDs[i])
		}
	}
}

// readLayout reads a layout's index.json and the manifest tagged tag.
func readLayout(t *testing.T, dir, tag string) (ocispec.Index, ocispec.Manifest) {
	t.Helper()
	var ix ocispec.Index
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ix); err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	for _, d := range ix.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] != tag {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(raw) != d.Digest {
			t.Fatalf("manifest blob does not match its digest")
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		return ix, m
	}
	t.Fatalf("no manifest tagged %q in %s", tag, data)
	return ix, m
}

// TestOCILayoutRoundTrip: tar -> oci-layout -> tar and tar -> oci-archive ->
// tar keep the config digest and the diff IDs; layer blobs keep their
// compression and digest.
func TestOCILayoutRoundTrip(t *testing.T) {
	for _, format := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		for _, comp := range []string{"", "gzip", "zstd"} {
			if format == imagegen.Legacy && comp != "" {
				continue
			}
			t.Run(fmt.Sprintf("%s/%s", format, comp), func(t *testing.T) {
				img := imagegen.Sample()
				for i := range img.Layers {
					img.Layers[i].Compression = comp
				}
				in, res := writeImage(t, img, format)
				work := t.TempDir()
				layout := filepath.Join(work, "layout")
				mustRun(t, "process", "tar://"+in, "oci-layout://"+layout)
				if data, err := os.ReadFile(filepath.Join(layout, "oci-layout")); err != nil || !strings.Contains(string(data), `"imageLayoutVersion":"1.0.0"`) {
					t.Errorf("oci-layout file: %q, %v", data, err)
				}
				_, m := readLayout(t, layout, "v1")
				if m.Config.Digest != res.ConfigDigest {
					t.Errorf("config %s, want %s", m.Config.Digest, res.ConfigDigest)
				}
				var got []digest.Digest
				for _, l := range m.Layers {
					got = append(got, l.Digest)
				}
				if !slices.Equal(got, res.LayerDigests) {
					t.Errorf("layer digests %q, want %q (as they came)", got, res.LayerDigests)
				}
				out := filepath.Join(work, "out.tar")
				mustRun(t, "process", "oci-layout://"+layout, "tar://"+out)
				checkDockerTarball(t, out, res)
				if got := mustRun(t, "info", "oci-layout://"+layout); !strings.Contains(got, res.ConfigDigest.String()) {
					t.Errorf("info does not show the config digest %s:\n%s", res.ConfigDigest, got)
				}

				archive := filepath.Join(work, "image.oci.tar")
				mustRun(t, "process", "tar://"+in, "oci-archive://"+archive+"?tag=mine")
				out2 := filepath.Join(work, "out2.tar")
				mustRun(t, "process", "oci-archive://"+archive+"?tag=mine", "tar://"+out2)
				checkDockerTarball(t, out2, res)
			})
		}
	}
}

// TestOCILayoutKeepsOtherImages: writing a second image keeps the first;
// writing a tag again replaces its entry; a source with several images
// needs ?tag=.
func TestOCILayoutKeepsOtherImages(t *testing.T) {
	in, res := writeImage(t, imagegen.Sample(), imagegen.OCI)
	img2 := imagegen.Sample()
	img2.Labels = map[string]string{"second": "yes"}
	in2, res2 := writeImage(t, img2, imagegen.Legacy)
	work := t.TempDir()
	layout := filepath.Join(work, "layout")
	mustRun(t, "process", "tar://"+in, "oci-layout://"+layout+"?tag=one")
	mustRun(t, "process", "tar://"+in2, "ocidir://"+layout+"?tag=two")
	mustRun(t, "process", "tar://"+in2, "oci-layout://"+layout+"?tag=one")
	ix, m := readLayout(t, layout, "one")
	if len(ix.Manifests) != 2 {
		t.Errorf("index has %d entries, want 2", len(ix.Manifests))
	}
	if m.Config.Digest != res2.ConfigDigest {
		t.Errorf("tag one is %s, want the replaced image %s", m.Config.Digest, res2.ConfigDigest)
	}
	if code, _, stderr := run(t, "process", "oci-layout://"+layout, "tar://"+filepath.Join(work, "x.tar")); code == 0 || !strings.Contains(stderr, "tag=") {
		t.Errorf("ambiguous source: exit %d, %s", code, stderr)
	}
	_ = res
	out := filepath.Join(work, "two.tar")
	mustRun(t, "process", "oci-layout://"+layout+"?tag=two", "tar://"+out)
	checkDockerTarball(t, out, res2)
	// A directory that is not a layout is refused and left alone.
	other := filepath.Join(work, "other")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "keep"), []byte("x"), 0o644)
	if code, _, _ := run(t, "process", "tar://"+in, "oci-layout://"+other); code == 0 {
		t.Errorf("writing into a non-layout directory succeeded")
	}
	if got := listTree(t, other); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("non-layout directory changed: %q", got)
	}
}

// TestOCILayoutCorruptBlob: a layer blob that does not match its digest
// fails the read.
func TestOCILayoutCorruptBlob(t *testing.T) {
	in, res := writeImage(t, imagegen.Sample(), imagegen.OCI)
	layout := filepath.Join(t.TempDir(), "layout")
	mustRun(t, "process", "tar://"+in, "oci-layout://"+layout)
	p := filepath.Join(layout, "blobs", "sha256", res.LayerDigests[1].Encoded())
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	os.WriteFile(p, data, 0o644)
	out := filepath.Join(t.TempDir(), "out.tar")
	code, _, stderr := run(t, "process", "oci-layout://"+layout, "tar://"+out)
	if code == 0 || !strings.Contains(stderr, "digest") {
		t.Errorf("exit %d, want a digest error: %s", code, stderr)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Errorf("partial output left behind")
	}
}

// TestSkopeoAndUmociReadOurLayout: skopeo copies our layout (and archive)
// back into a docker archive with the same config and diff IDs, and umoci
// unpacks it to the same tree as our dir expand.
func TestSkopeoAndUmociReadOurLayout(t *testing.T) {
	peers.Need(t, "skopeo", "umoci")
	for _, comp := range []string{"", "gzip", "zstd"} {
		t.Run("comp="+comp, func(t *testing.T) {
			img := imagegen.Sample()
			for i := range img.Layers {
				img.Layers[i].Compression = comp
			}
			in, res := writeImage(t, img, imagegen.OCI)
			work := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			layout := filepath.Join(work, "layout")
			mustRun(t, "process", "tar://"+in, "oci-layout://"+layout+"?tag=ref")
			archive := filepath.Join(work, "a.tar")
			mustRun(t, "process", "tar://"+in, "oci-archive://"+archive+"?tag=ref")
			if comp == "zstd" {
				// skopeo 1.9 cannot put zstd layers in a docker archive, and
				// umoci cannot unpack them: have skopeo copy our layout and
				// archive into layouts of its own, read back by us.
				for i, src := range []string{"oci:" + layout + ":ref", "oci-archive:" + archive + ":ref"} {
					dst := filepath.Join(work, fmt.Sprintf("copy%d", i))
					if _, err := peers.Run(ctx, "skopeo", "copy", "--quiet", src, "oci:"+dst+":ref"); err != nil {
						t.Fatal(err)
					}
					out := filepath.Join(work, fmt.Sprintf("out%d.tar", i))
					mustRun(t, "process", "oci-layout://"+dst+"?tag=ref", "tar://"+out)
					checkDockerTarball(t, out, res)
				}
				t.Log("umoci cannot unpack zstd layers: unpack comparison skipped for zstd")
				return
			}
			for i, src := range []string{"oci:" + layout + ":ref", "oci-archive:" + archive + ":ref"} {
				back := filepath.Join(work, fmt.Sprintf("back%d.tar", i))
				if _, err := peers.Run(ctx, "skopeo", "copy", "--quiet", src, "docker-archive:"+back); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(work, fmt.Sprintf("out%d.tar", i))
				mustRun(t, "process", "tar://"+back, "tar://"+out)
				checkDockerTarball(t, out, res)
			}

			bundle := filepath.Join(work, "bundle")
			if _, err := peers.Run(ctx, "umoci", "unpack", "--image", layout+":ref", bundle); err != nil {
				t.Fatal(err)
			}
			exp := filepath.Join(work, "exp")
			mustRun(t, "process", "tar://"+in, "dir://"+exp+"?expand=true")
			compareTrees(t, filepath.Join(bundle, "rootfs"), filepath.Join(exp, "manifest"))
		})
	}
}

// TestWeReadSkopeoLayouts: layouts skopeo writes (gzip and zstd layers)
// are read back to a tarball with the same config and diff IDs.
func TestWeReadSkopeoLayouts(t *testing.T) {
	peers.Need(t, "skopeo")
	in, res := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	for _, comp := range []string{"gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			work := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			layout := filepath.Join(work, "layout")
			if _, err := peers.Run(ctx, "skopeo", "copy", "--quiet", "--dest-compress", "--dest-compress-format", comp,
				"docker-archive:"+in, "oci:"+layout+":t1"); err != nil {
				t.Fatal(err)
			}
			_, m := readLayout(t, layout, "t1")
			for _, l := range m.Layers {
				if !strings.HasSuffix(l.MediaType, "+"+comp) {
					t.Errorf("skopeo wrote layer type %s, want %s", l.MediaType, comp)
				}
			}
			out := filepath.Join(work, "out.tar")
			mustRun(t, "process", "oci-layout://"+layout+"?tag=t1", "tar://"+out)
			checkDockerTarball(t, out, res)
			// The only image is found without a tag, and an OCI-to-OCI copy
			// keeps the manifest's blobs.
			copyDir := filepath.Join(work, "copy")
			mustRun(t, "process", "oci-layout://"+layout, "oci-layout://"+copyDir+"?tag=t1")
			_, m2 := readLayout(t, copyDir, "t1")
			if m2.Config.Digest != m.Config.Digest || len(m2.Layers) != len(m.Layers) {
				t.Fatalf("copied manifest differs: %+v vs %+v", m2, m)
			}
			for i := range m.Layers {
				if m2.Layers[i].Digest != m.Layers[i].Digest || m2.Layers[i].MediaType != m.Layers[i].MediaType {
					t.Errorf("layer %d: %s %s, want %s %s", i, m2.Layers[i].Digest, m2.Layers[i].MediaType, m.Layers[i].Digest, m.Layers[i].MediaType)
				}
			}
			archive := filepath.Join(work, "a.tar")
			if _, err := peers.Run(ctx, "skopeo", "copy", "--quiet", "docker-archive:"+in, "oci-archive:"+archive+":t2"); err != nil {
				t.Fatal(err)
			}
			out2 := filepath.Join(work, "out2.tar")
			mustRun(t, "process", "oci-archive://"+archive, "tar://"+out2)
			checkDockerTarball(t, out2, res)
		})
	}
}
