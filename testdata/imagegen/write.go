package imagegen

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a synthetic single-platform (linux/amd64) image.
type Image struct {
	// RepoTag is the name written to manifest.json RepoTags, for example
	// "example.com/test/sample:v1" or "sample:latest". A name without a
	// tag gets ":latest". Empty means an untagged image: RepoTags is null
	// and no "repositories" file is written.
	RepoTag string
	// Layers are listed bottom first.
	Layers []Layer
	// Created is the image creation time; zero selects DefaultModTime.
	Created time.Time
	// Env, Entrypoint, Cmd, WorkingDir and Labels fill the config's
	// "config" object.
	Env, Entrypoint, Cmd []string
	// WorkingDir is the config's WorkingDir.
	WorkingDir string
	// Labels are the config's Labels.
	Labels map[string]string
}

// Format selects the docker save layout.
type Format int

const (
	// Legacy is the layout of docker save up to Docker 24: a
	// "<v1id>/{VERSION,json,layer.tar}" directory per layer, the config
	// "<hex>.json", "repositories" and "manifest.json". Layer directories
	// and the config come in lexical order, as docker's walk of its
	// staging directory gives them, then repositories, then manifest.json
	// last. A layer whose stored blob repeats an earlier one gets a
	// "layer.tar" symlink to "../<first v1id>/layer.tar", as docker does.
	Legacy Format = iota
	// OCI is the layout of docker save from Docker 25: an OCI image layout
	// ("blobs/sha256/<hex>", "index.json", "oci-layout") plus the Docker
	// "manifest.json" and "repositories" files, all in lexical order
	// (blobs/, blobs/sha256/, the blobs by hex, index.json, manifest.json,
	// oci-layout, repositories). A repeated layer is stored once but listed
	// twice in manifest.json and the image manifest.
	OCI
)

// String returns "legacy" or "oci".
func (f Format) String() string {
	switch f {
	case Legacy:
		return "legacy"
	case OCI:
		return "oci"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat parses "legacy" or "oci" (case-insensitive).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "legacy":
		return Legacy, nil
	case "oci":
		return OCI, nil
	}
	return 0, fmt.Errorf("imagegen: unknown format %q (want legacy or oci)", s)
}

// Result describes what Write produced.
type Result struct {
	// ConfigDigest is the sha256 of Config.
	ConfigDigest digest.Digest
	// DiffIDs are the sha256 digests of the uncompressed layer tars, as in
	// the config's rootfs.diff_ids.
	DiffIDs []digest.Digest
	// LayerDigests are the sha256 digests of the stored layer blobs (equal
	// to DiffIDs for uncompressed layers).
	LayerDigests []digest.Digest
	// LayerSizes are the sizes in bytes of the stored layer blobs.
	LayerSizes []int64
	// LayerPaths are the paths listed in manifest.json Layers.
	LayerPaths []string
	// ConfigPath is the path of the config in the tarball.
	ConfigPath string
	// Config is the config JSON exactly as written.
	Config []byte
	// ManifestDigest is the digest of the OCI image manifest blob (OCI
	// format only).
	ManifestDigest digest.Digest
	// Manifest is the OCI image manifest as written (OCI format only).
	Manifest []byte
	// V1IDs are the legacy layer directory names (Legacy format only).
	V1IDs []string
}

// Media types of stored layers, by Layer.Compression.
var layerMediaTypes = map[string]string{
	"":     ocispec.MediaTypeImageLayer,
	"gzip": ocispec.MediaTypeImageLayerGzip,
	"zstd": ocispec.MediaTypeImageLayerZstd,
}

type layerInfo struct {
	diffID digest.Digest
	blob   digest.Digest
	size   int64
}

// WriteFile writes img to the file path in format f. The file is removed
// again if writing fails.
func WriteFile(path string, img Image, f Format) (res Result, err error) {
	fh, err := os.Create(path)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	bw := bufio.NewWriterSize(fh, 1<<20)
	if res, err = Write(bw, img, f); err != nil {
		return res, err
	}
	return res, bw.Flush()
}

// Write streams img to w as a docker save tarball in format f. Each layer
// is generated twice (to measure, then to write), so memory use does not
// depend on layer size.
func Write(w io.Writer, img Image, f Format) (Result, error) {
	if f != Legacy && f != OCI {
		return Result{}, fmt.Errorf("imagegen: unknown format %v", f)
	}
	var res Result
	infos := make([]layerInfo, len(img.Layers))
	for i, l := range img.Layers {
		if _, ok := layerMediaTypes[l.Compression]; !ok {
			return Result{}, fmt.Errorf("imagegen: layer %d: unknown compression %q (want \"\", gzip or zstd)", i, l.Compression)
		}
		info, err := measureLayer(l)
		if err != nil {
			return Result{}, fmt.Errorf("imagegen: layer %d: %w", i, err)
		}
		infos[i] = info
		res.DiffIDs = append(res.DiffIDs, info.diffID)
		res.LayerDigests = append(res.LayerDigests, info.blob)
		res.LayerSizes = append(res.LayerSizes, info.size)
	}
	cfg, err := configJSON(img, res.DiffIDs)
	if err != nil {
		return Result{}, err
	}
	res.Config = cfg
	res.ConfigDigest = digest.FromBytes(cfg)
	o := &outer{tw: tar.NewWriter(w)}
	if f == Legacy {
		err = writeLegacy(o, img, infos, &res)
	} else {
		err = writeOCI(o, img, infos, &res)
	}
	if err != nil {
		return Result{}, err
	}
	if err := o.tw.Close(); err != nil {
		return Result{}, err
	}
	return res, nil
}

// countWriter counts bytes written.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// encodeLayer writes the stored (possibly compressed) form of l to dst and
// returns the digest of the uncompressed tar.
func encodeLayer(dst io.Writer, l Layer) (digest.Digest, error) {
	var cw io.WriteCloser
	switch l.Compression {
	case "":
		cw = nopWriteCloser{dst}
	case "gzip":
		gw, err := gzip.NewWriterLevel(dst, gzip.DefaultCompression)
		if err != nil {
			return "", err
		}
		cw = gw
	case "zstd":
		zw, err := zstd.NewWriter(dst, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return "", err
		}
		cw = zw
	default:
		return "", fmt.Errorf("unknown compression %q", l.Compression)
	}
	d := digest.SHA256.Digester()
	if err := writeLayerTar(io.MultiWriter(cw, d.Hash()), l); err != nil {
		cw.Close()
		return "", err
	}
	if err := cw.Close(); err != nil {
		return "", err
	}
	return d.Digest(), nil
}

// measureLayer generates l once to learn its digests and stored size.
func measureLayer(l Layer) (layerInfo, error) {
	var c countWriter
	if l.Compression == "" {
		diffID, err := encodeLayer(&c, l)
		return layerInfo{diffID: diffID, blob: diffID, size: c.n}, err
	}
	bd := digest.SHA256.Digester()
	diffID, err := encodeLayer(io.MultiWriter(&c, bd.Hash()), l)
	return layerInfo{diffID: diffID, blob: bd.Digest(), size: c.n}, err
}

// outer writes the outer (docker save) tarball with fixed headers.
type outer struct{ tw *tar.Writer }

func (o *outer) dir(name string) error {
	return o.tw.WriteHeader(&tar.Header{Name: strings.TrimSuffix(name, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: DefaultModTime})
}

func (o *outer) file(name string, data []byte) error {
	if err := o.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: DefaultModTime}); err != nil {
		return err
	}
	_, err := o.tw.Write(data)
	return err
}

func (o *outer) symlink(name, target string) error {
	return o.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: DefaultModTime})
}

// layer streams the stored form of l as entry name, checking that the
// second generation matches the measurement.
func (o *outer) layer(name string, l Layer, info layerInfo) error {
	if err := o.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: info.size, ModTime: DefaultModTime}); err != nil {
		return err
	}
	bd := digest.SHA256.Digester()
	diffID, err := encodeLayer(io.MultiWriter(o.tw, bd.Hash()), l)
	if err != nil {
		return fmt.Errorf("imagegen: %s: %w", name, err)
	}
	if diffID != info.diffID || bd.Digest() != info.blob {
		return fmt.Errorf("imagegen: %s: layer content is not deterministic", name)
	}
	return nil
}

// configJSON builds the image config.
func configJSON(img Image, diffIDs []digest.Digest) ([]byte, error) {
	created := created(img)
	hist := []ocispec.History{}
	env := ocispec.History{Created: &created, CreatedBy: "/bin/sh -c #(nop) ENV IMAGEGEN=1", EmptyLayer: true}
	for i := range diffIDs {
		hist = append(hist, ocispec.History{Created: &created, CreatedBy: fmt.Sprintf("imagegen layer %d", i+1)})
		if i == 0 {
			hist = append(hist, env)
		}
	}
	if len(diffIDs) == 0 {
		hist = append(hist, env)
	}
	ids := append([]digest.Digest{}, diffIDs...)
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:        img.Env,
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			WorkingDir: img.WorkingDir,
			Labels:     img.Labels,
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: ids},
		History: hist,
	}
	return json.Marshal(cfg)
}

func created(img Image) time.Time {
	if img.Created.IsZero() {
		return DefaultModTime
	}
	return img.Created.UTC()
}

// splitRepoTag splits "host/repo:tag" into repository and tag, adding the
// tag "latest" when there is none.
func splitRepoTag(s string) (repo, tag string) {
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		return s[:i], s[i+1:]
	}
	return s, "latest"
}

// FullName returns the fully qualified form of a repo:tag as Docker 25
// writes it in the io.containerd.image.name annotation: "sample:v1"
// becomes "docker.io/library/sample:v1", "me/app" becomes
// "docker.io/me/app:latest", and names with a registry host are kept.
func FullName(repoTag string) string {
	repo, tag := splitRepoTag(repoTag)
	first, _, hasSlash := strings.Cut(repo, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		if !hasSlash {
			repo = "library/" + repo
		}
		repo = "docker.io/" + repo
	}
	return repo + ":" + tag
}

// dockerManifest is one element of manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func manifestJSON(img Image, config string, layers []string) ([]byte, error) {
	m := dockerManifest{Config: config, Layers: layers}
	if img.RepoTag != "" {
		repo, tag := splitRepoTag(img.RepoTag)
		m.RepoTags = []string{repo + ":" + tag}
	}
	if m.Layers == nil {
		m.Layers = []string{}
	}
	b, err := json.Marshal([]dockerManifest{m})
	return append(b, '\n'), err
}

// repositoriesJSON returns the "repositories" file, or nil when untagged.
func repositoriesJSON(img Image, top string) ([]byte, error) {
	if img.RepoTag == "" || top == "" {
		return nil, nil
	}
	repo, tag := splitRepoTag(img.RepoTag)
	b, err := json.Marshal(map[string]map[string]string{repo: {tag: top}})
	return append(b, '\n'), err
}

// v1ContainerConfig is the container config of a legacy v1 layer json.
type v1ContainerConfig struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
}

// v1Image is the "<v1id>/json" file of the legacy format, as Docker 20.10
// writes it: lower layers carry only ids, a 1970 creation time and an
// empty container_config; the top layer carries the image config too.
type v1Image struct {
	ID              string             `json:"id"`
	Parent          string             `json:"parent,omitempty"`
	Created         time.Time          `json:"created"`
	ContainerConfig v1ContainerConfig  `json:"container_config"`
	Config          *v1ContainerConfig `json:"config,omitempty"`
	Architecture    string             `json:"architecture,omitempty"`
	OS              string             `json:"os,omitempty"`
}

// v1IDs computes chain-like legacy layer ids: each is the sha256 of a JSON
// object naming the layer's chain id, its parent's v1 id and, for the top
// layer, the config digest (as Docker's v1.CreateID does in spirit).
func v1IDs(diffIDs []digest.Digest, config digest.Digest) []string {
	chain := identity.ChainIDs(append([]digest.Digest{}, diffIDs...)) // ChainIDs works in place
	ids := make([]string, len(diffIDs))
	parent := ""
	for i := range diffIDs {
		m := map[string]string{"layer_id": chain[i].String()}
		if parent != "" {
			m["parent"] = "sha256:" + parent
		}
		if i == len(diffIDs)-1 {
			m["config"] = config.String()
		}
		b, _ := json.Marshal(m)
		ids[i] = digest.FromBytes(b).Encoded()
		parent = ids[i]
	}
	return ids
}

// topEntry is a top-level item of the outer tarball, sorted by name the
// way docker's directory walk orders them.
type topEntry struct {
	name  string
	write func() error
}

func writeSorted(items []topEntry) error {
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
	for _, it := range items {
		if err := it.write(); err != nil {
			return err
		}
	}
	return nil
}

func writeLegacy(o *outer, img Image, infos []layerInfo, res *Result) error {
	ids := v1IDs(res.DiffIDs, res.ConfigDigest)
	res.V1IDs = ids
	res.ConfigPath = res.ConfigDigest.Encoded() + ".json"
	cfg := res.Config
	items := []topEntry{{res.ConfigPath, func() error { return o.file(res.ConfigPath, cfg) }}}
	first := map[digest.Digest]string{} // blob digest -> v1 id holding the file
	for i, l := range img.Layers {
		id := ids[i]
		res.LayerPaths = append(res.LayerPaths, id+"/layer.tar")
		v1 := v1Image{ID: id, Created: time.Unix(0, 0).UTC()}
		if i > 0 {
			v1.Parent = ids[i-1]
		}
		if i == len(img.Layers)-1 {
			v1.Created = created(img)
			v1.Config = &v1ContainerConfig{Env: img.Env, Cmd: img.Cmd, WorkingDir: img.WorkingDir, Entrypoint: img.Entrypoint, Labels: img.Labels}
			v1.Architecture, v1.OS = "amd64", "linux"
		}
		js, err := json.Marshal(v1)
		if err != nil {
			return err
		}
		linkTo, dup := first[infos[i].blob]
		if !dup {
			first[infos[i].blob] = id
		}
		info := infos[i]
		items = append(items, topEntry{id, func() error {
			if err := o.dir(id); err != nil {
				return err
			}
			if err := o.file(id+"/VERSION", []byte("1.0")); err != nil {
				return err
			}
			if err := o.file(id+"/json", js); err != nil {
				return err
			}
			if dup {
				return o.symlink(id+"/layer.tar", "../"+linkTo+"/layer.tar")
			}
			return o.layer(id+"/layer.tar", l, info)
		}})
	}
	if err := writeSorted(items); err != nil {
		return err
	}
	top := ""
	if len(ids) > 0 {
		top = ids[len(ids)-1]
	}
	repos, err := repositoriesJSON(img, top)
	if err != nil {
		return err
	}
	if repos != nil {
		if err := o.file("repositories", repos); err != nil {
			return err
		}
	}
	man, err := manifestJSON(img, res.ConfigPath, res.LayerPaths)
	if err != nil {
		return err
	}
	return o.file("manifest.json", man)
}

func writeOCI(o *outer, img Image, infos []layerInfo, res *Result) error {
	const blobDir = "blobs/sha256/"
	res.ConfigPath = blobDir + res.ConfigDigest.Encoded()
	cfg := res.Config
	blobs := map[digest.Digest]topEntry{}
	add := func(d digest.Digest, write func() error) {
		if _, ok := blobs[d]; !ok {
			blobs[d] = topEntry{blobDir + d.Encoded(), write}
		}
	}
	add(res.ConfigDigest, func() error { return o.file(res.ConfigPath, cfg) })
	man := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: res.ConfigDigest, Size: int64(len(cfg))},
		Layers:    []ocispec.Descriptor{},
	}
	for i, l := range img.Layers {
		info := infos[i]
		name := blobDir + info.blob.Encoded()
		res.LayerPaths = append(res.LayerPaths, name)
		man.Layers = append(man.Layers, ocispec.Descriptor{MediaType: layerMediaTypes[l.Compression], Digest: info.blob, Size: info.size})
		add(info.blob, func() error { return o.layer(name, l, info) })
	}
	manJSON, err := json.Marshal(man)
	if err != nil {
		return err
	}
	res.Manifest = manJSON
	res.ManifestDigest = digest.FromBytes(manJSON)
	add(res.ManifestDigest, func() error { return o.file(blobDir+res.ManifestDigest.Encoded(), manJSON) })

	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: res.ManifestDigest, Size: int64(len(manJSON))}
	if img.RepoTag != "" {
		_, tag := splitRepoTag(img.RepoTag)
		desc.Annotations = map[string]string{
			"io.containerd.image.name": FullName(img.RepoTag),
			ocispec.AnnotationRefName:  tag,
		}
	}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc},
	})
	if err != nil {
		return err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	top := ""
	if n := len(infos); n > 0 {
		top = infos[n-1].blob.Encoded()
	}
	repos, err := repositoriesJSON(img, top)
	if err != nil {
		return err
	}
	dman, err := manifestJSON(img, res.ConfigPath, res.LayerPaths)
	if err != nil {
		return err
	}

	// docker save (25+) tars its staging directory, so entries come in
	// lexical order: blobs/, blobs/sha256/, the blobs by hex, index.json,
	// manifest.json, oci-layout, repositories.
	if err := o.dir("blobs"); err != nil {
		return err
	}
	if err := o.dir("blobs/sha256"); err != nil {
		return err
	}
	items := make([]topEntry, 0, len(blobs))
	for _, it := range blobs {
		items = append(items, it)
	}
	if err := writeSorted(items); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"index.json", index}, {"manifest.json", dman}, {"oci-layout", layout}, {"repositories", repos}} {
		if f.data == nil {
			continue
		}
		if err := o.file(f.name, f.data); err != nil {
			return err
		}
	}
	return nil
}
