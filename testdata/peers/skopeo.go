package peers

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SkopeoCopy runs `skopeo --insecure-policy copy --quiet ARGS...` (the
// insecure policy accepts unsigned images without a policy.json) and
// returns its standard output; the error holds skopeo's standard error.
// Put flags before the source and destination, for example:
//
//	SkopeoCopy(ctx, r.SkopeoFlags("dest")..., "docker-archive:img.tar", r.Ref("app:v1"))
func SkopeoCopy(ctx context.Context, args ...string) (string, error) {
	return Run(ctx, "skopeo", append([]string{"--insecure-policy", "copy", "--quiet"}, args...)...)
}

// SkopeoFlags returns the skopeo flags that reach this registry over
// plain HTTP with its credentials. prefix is "src" or "dest" for the
// --src-*/--dest-* flags of copy, or "" for the flags of inspect and
// delete (--tls-verify, --creds).
func (r *Registry) SkopeoFlags(prefix string) []string {
	p := "--"
	if prefix != "" {
		p += prefix + "-"
	}
	flags := []string{p + "tls-verify=false"}
	if r.Auth == AuthNone {
		return append(flags, p+"no-creds")
	}
	return append(flags, p+"creds="+r.Username+":"+r.Password)
}

// SkopeoOptions adjusts SkopeoPush, SkopeoPull and SkopeoInspect.
type SkopeoOptions struct {
	// Host replaces the registry's host in the image reference, for
	// example with a FaultProxy's Host to go through it.
	Host string
	// All copies every image of a multi-platform index (--all).
	All bool
	// CompressFormat is the layer compression of a push: "gzip", "zstd"
	// or "" (skopeo's default, gzip). With "zstd" the image is written as
	// an OCI manifest, the only type that can describe zstd layers.
	CompressFormat string
	// Format forces the destination manifest type: "oci", "v2s2" or ""
	// (skopeo's choice).
	Format string
	// PreserveDigests refuses any change that would alter the digests
	// (--preserve-digests).
	PreserveDigests bool
	// Extra are more flags, placed before the image references.
	Extra []string
}

// ref returns the docker:// reference of name, through o.Host if set.
func (r *Registry) ref(name string, o SkopeoOptions) string {
	host := r.Host
	if o.Host != "" {
		host = o.Host
	}
	return "docker://" + host + "/" + name
}

func (o SkopeoOptions) copyFlags() []string {
	var f []string
	if o.All {
		f = append(f, "--all")
	}
	if o.CompressFormat != "" {
		f = append(f, "--dest-compress-format", o.CompressFormat)
		if o.CompressFormat == "zstd" && o.Format == "" {
			f = append(f, "--format", "oci")
		}
	}
	if o.Format != "" {
		f = append(f, "--format", o.Format)
	}
	if o.PreserveDigests {
		f = append(f, "--preserve-digests")
	}
	return append(f, o.Extra...)
}

// SkopeoPush copies the image src (a containers-transports reference
// such as "docker-archive:/tmp/img.tar" or "oci:/tmp/layout:tag") to
// name ("repo:tag") in the registry.
func (r *Registry) SkopeoPush(ctx context.Context, src, name string, o SkopeoOptions) error {
	args := append(r.SkopeoFlags("dest"), o.copyFlags()...)
	_, err := SkopeoCopy(ctx, append(args, src, r.ref(name, o))...)
	return err
}

// SkopeoPull copies name ("repo:tag" or "repo@digest") from the registry
// to dest, such as "docker-archive:/tmp/out.tar:repo:tag" or
// "oci:/tmp/layout:tag". CompressFormat and Format apply to dest.
func (r *Registry) SkopeoPull(ctx context.Context, name, dest string, o SkopeoOptions) error {
	args := append(r.SkopeoFlags("src"), o.copyFlags()...)
	_, err := SkopeoCopy(ctx, append(args, r.ref(name, o), dest)...)
	return err
}

// SkopeoInspect runs `skopeo inspect FLAGS... docker://HOST/name` and
// returns its output: flags such as "--raw" (the manifest or index as
// stored), "--config" (the image config), "--override-arch arm64".
func (r *Registry) SkopeoInspect(ctx context.Context, name string, o SkopeoOptions, flags ...string) ([]byte, error) {
	args := append([]string{"inspect"}, r.SkopeoFlags("")...)
	args = append(args, o.Extra...)
	args = append(args, flags...)
	out, err := Run(ctx, "skopeo", append(args, r.ref(name, o))...)
	return []byte(out), err
}

// PlatformImage is one image of a multi-platform layout.
type PlatformImage struct {
	// Platform is the platform the index lists the image under (and the
	// architecture, OS and variant of its config).
	Platform ocispec.Platform
	// ManifestDigest is the digest of the image manifest.
	ManifestDigest digest.Digest
	// ConfigDigest is the digest of the image config.
	ConfigDigest digest.Digest
	// Config is the config JSON as written.
	Config []byte
	// DiffIDs are the uncompressed layer digests, bottom first: a layer
	// shared by every platform, then the image's own layer.
	DiffIDs []digest.Digest
	// LayerDigests are the digests of the gzip-compressed layer blobs.
	LayerDigests []digest.Digest
	// PlatformFile is the content of /platform in the image's own layer
	// ("os/architecture[/variant]\n"), to check which image was unpacked.
	PlatformFile string
}

// MultiPlatformLayout describes what BuildMultiPlatformLayout wrote.
type MultiPlatformLayout struct {
	// Dir is the OCI image layout directory.
	Dir string
	// Tag is the org.opencontainers.image.ref.name of the index in
	// index.json: "oci:DIR:TAG" (or just "oci:DIR") names it.
	Tag string
	// IndexDigest is the digest of the image index listing the images.
	IndexDigest digest.Digest
	// Index is the image index JSON as written.
	Index []byte
	// Images are the images in index order, one per platform asked for.
	Images []PlatformImage
}

// Image returns the image for platform p (matched on OS, architecture
// and variant), and whether there is one.
func (l *MultiPlatformLayout) Image(p ocispec.Platform) (PlatformImage, bool) {
	for _, im := range l.Images {
		if im.Platform.OS == p.OS && im.Platform.Architecture == p.Architecture && im.Platform.Variant == p.Variant {
			return im, true
		}
	}
	return PlatformImage{}, false
}

// MultiPlatformTag is the tag BuildMultiPlatformLayout gives the index.
const MultiPlatformTag = "latest"

// layoutTime is the creation and modification time in generated images.
var layoutTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// BuildMultiPlatformLayout writes an OCI image layout (oci-layout,
// index.json, blobs/sha256/...) into dir holding one small image per
// platform. index.json has one entry, an image index tagged
// MultiPlatformTag, which lists each image manifest with its platform,
// the shape `skopeo copy --all docker://... oci:DIR:TAG` produces; so
// `skopeo copy --all oci:DIR docker://HOST/repo:tag` puts a multi-platform
// index in a registry. Each image has two gzip layers: one shared by all
// (the same blob), and one holding /platform, whose content names the
// platform. Output is deterministic. OS and Architecture are required and
// platforms must differ.
//
// (testdata/imagegen is not used: its configs are always linux/amd64.)
func BuildMultiPlatformLayout(dir string, platforms []ocispec.Platform) (*MultiPlatformLayout, error) {
	if len(platforms) == 0 {
		return nil, fmt.Errorf("BuildMultiPlatformLayout: no platforms")
	}
	seen := map[string]bool{}
	for _, p := range platforms {
		if p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("BuildMultiPlatformLayout: platform %+v lacks an OS or architecture", p)
		}
		key := platformString(p)
		if seen[key] {
			return nil, fmt.Errorf("BuildMultiPlatformLayout: platform %s listed twice", key)
		}
		seen[key] = true
	}
	blobDir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return nil, err
	}
	writeBlob := func(b []byte) (digest.Digest, error) {
		d := digest.FromBytes(b)
		return d, os.WriteFile(filepath.Join(blobDir, d.Encoded()), b, 0o644)
	}
	shared, err := gzipLayer(map[string]string{"etc/shared.txt": "the same in every platform\n"})
	if err != nil {
		return nil, err
	}
	sharedDigest, err := writeBlob(shared.blob)
	if err != nil {
		return nil, err
	}
	l := &MultiPlatformLayout{Dir: dir, Tag: MultiPlatformTag}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, p := range platforms {
		pf := platformString(p) + "\n"
		own, err := gzipLayer(map[string]string{"platform": pf})
		if err != nil {
			return nil, err
		}
		ownDigest, err := writeBlob(own.blob)
		if err != nil {
			return nil, err
		}
		created := layoutTime
		cfg, err := json.Marshal(ocispec.Image{
			Created:  &created,
			Platform: p,
			Config:   ocispec.ImageConfig{Cmd: []string{"/bin/cat", "/platform"}, Env: []string{"PLATFORM=" + platformString(p)}},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{shared.diffID, own.diffID}},
			History: []ocispec.History{
				{Created: &created, CreatedBy: "peers: shared layer"},
				{Created: &created, CreatedBy: "peers: platform layer " + platformString(p)},
			},
		})
		if err != nil {
			return nil, err
		}
		cfgDigest, err := writeBlob(cfg)
		if err != nil {
			return nil, err
		}
		man, err := json.Marshal(ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfg))},
			Layers: []ocispec.Descriptor{
				{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: sharedDigest, Size: int64(len(shared.blob))},
				{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: ownDigest, Size: int64(len(own.blob))},
			},
		})
		if err != nil {
			return nil, err
		}
		manDigest, err := writeBlob(man)
		if err != nil {
			return nil, err
		}
		pp := p
		index.Manifests = append(index.Manifests, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: manDigest, Size: int64(len(man)), Platform: &pp,
		})
		l.Images = append(l.Images, PlatformImage{
			Platform:       p,
			ManifestDigest: manDigest,
			ConfigDigest:   cfgDigest,
			Config:         cfg,
			DiffIDs:        []digest.Digest{shared.diffID, own.diffID},
			LayerDigests:   []digest.Digest{sharedDigest, ownDigest},
			PlatformFile:   pf,
		})
	}
	idx, err := json.Marshal(index)
	if err != nil {
		return nil, err
	}
	if l.IndexDigest, err = writeBlob(idx); err != nil {
		return nil, err
	}
	l.Index = idx
	top, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType:   ocispec.MediaTypeImageIndex,
			Digest:      l.IndexDigest,
			Size:        int64(len(idx)),
			Annotations: map[string]string{ocispec.AnnotationRefName: l.Tag},
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), top, 0o644); err != nil {
		return nil, err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), layout, 0o644); err != nil {
		return nil, err
	}
	return l, nil
}

// platformString is "os/architecture[/variant]".
func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

type layerBlob struct {
	blob   []byte // gzip-compressed tar
	diffID digest.Digest
}

// gzipLayer returns a gzip layer holding files (path -> content) and
// their parent directories, with fixed headers.
func gzipLayer(files map[string]string) (layerBlob, error) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	dirs := map[string]bool{}
	for _, n := range names {
		parts := strings.Split(n, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: layoutTime, Format: tar.FormatPAX}); err != nil {
				return layerBlob{}, err
			}
		}
		data := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: layoutTime, Format: tar.FormatPAX}); err != nil {
			return layerBlob{}, err
		}
		if _, err := tw.Write([]byte(data)); err != nil {
			return layerBlob{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return layerBlob{}, err
	}
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb) // no name or time in the header: deterministic
	if _, err := gw.Write(tb.Bytes()); err != nil {
		return layerBlob{}, err
	}
	if err := gw.Close(); err != nil {
		return layerBlob{}, err
	}
	return layerBlob{blob: gb.Bytes(), diffID: digest.FromBytes(tb.Bytes())}, nil
}
