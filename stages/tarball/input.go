package tarball

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// manifestEntry is one image of a docker-save manifest.json.
type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// Input reads one image from a docker-save tarball. It indexes the member
// headers first, then streams the config and the layers in manifest order
// straight from the file: nothing is copied to memory or temp files.
type Input struct {
	path string
	log  zerolog.Logger
}

// NewInput returns an Input reading the tarball at path. It does no I/O.
func NewInput(path string, env stages.Env) *Input {
	return &Input{path: path, log: env.Log}
}

// Image is what Describe learns of a tarball's image without reading layers.
type Image struct {
	Reference  string        // the first RepoTags entry, "" if none
	Config     []byte        // raw config bytes
	ConfigName string        // the config's name in the tarball
	Parsed     ocispec.Image // the parsed config
	Layers     []string      // layer paths from manifest.json
}

// Describe reads the tarball's manifest and config, verifying the config's
// digest when its name carries one. It reads no layer data.
func (in *Input) Describe() (*Image, error) {
	idx, err := openIndex(in.path)
	if err != nil {
		return nil, err
	}
	defer idx.close()
	img, _, err := in.describe(idx)
	return img, err
}

var hexName = regexp.MustCompile(`(?:^|/)([a-f0-9]{64})(?:\.json)?$`)

// digestOf returns the digest a member's name claims, if it claims one.
func digestOf(name string) digest.Digest {
	m := hexName.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return digest.NewDigestFromEncoded(digest.SHA256, m[1])
}

func (in *Input) describe(idx *index) (*Image, *manifestEntry, error) {
	me, err := idx.lookup("manifest.json")
	if err != nil {
		switch {
		case idx.entries["repositories"] != nil:
			return nil, nil, fmt.Errorf("%s appears to be in the legacy Docker format (before Docker 1.10, circa 2016), which has no manifest.json: convert it with `docker load < old.tar && docker save image:tag > new.tar`", in.path)
		case idx.entries["index.json"] != nil:
			return nil, nil, fmt.Errorf("%s is an OCI image layout without a docker manifest.json, which tar:// does not read yet", in.path)
		}
		return nil, nil, fmt.Errorf("%s is not a docker-save tarball: it has no manifest.json", in.path)
	}
	raw, err := idx.readAll(me)
	if err != nil {
		return nil, nil, err
	}
	var manifest []manifestEntry
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, nil, fmt.Errorf("%s: manifest.json is not valid: %w", in.path, err)
	}
	if len(manifest) == 0 {
		return nil, nil, fmt.Errorf("%s: manifest.json lists no image", in.path)
	}
	m := &manifest[0]
	if len(manifest) > 1 {
		in.log.Warn().Int("images", len(manifest)).Strs("using", m.RepoTags).Msg("tarball holds several images; using the first")
	}
	if m.Config == "" {
		return nil, nil, fmt.Errorf("%s: manifest.json names no config", in.path)
	}
	ce, err := idx.lookup(m.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: config named in manifest.json: %w", in.path, err)
	}
	cfg, err := idx.readAll(ce)
	if err != nil {
		return nil, nil, err
	}
	if want := digestOf(m.Config); want != "" {
		if got := digest.FromBytes(cfg); got != want {
			return nil, nil, &elements.DigestError{What: "config " + m.Config, Want: want, Got: got}
		}
	}
	img := &Image{Config: cfg, ConfigName: m.Config, Layers: m.Layers}
	if len(m.RepoTags) > 0 {
		img.Reference = m.RepoTags[0]
	}
	if err := json.Unmarshal(cfg, &img.Parsed); err != nil {
		return nil, nil, fmt.Errorf("%s: config %s is not valid JSON: %w", in.path, m.Config, err)
	}
	if n, d := len(m.Layers), len(img.Parsed.RootFS.DiffIDs); n != d {
		return nil, nil, fmt.Errorf("%s: manifest.json lists %d layers but the config has %d diff IDs", in.path, n, d)
	}
	for i, d := range img.Parsed.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, nil, fmt.Errorf("%s: config diff ID %d (%q) is not a sha256 digest", in.path, i, d)
		}
	}
	return img, m, nil
}

// Run sends the image, config and layer elements on out.
func (in *Input) Run(ctx context.Context, out chan<- elements.Element) error {
	idx, err := openIndex(in.path)
	if err != nil {
		return err
	}
	defer idx.close()
	img, m, err := in.describe(idx)
	if err != nil {
		return err
	}
	in.log.Info().Str("image", img.Reference).Int("layers", len(m.Layers)).Msg("reading tarball")

	// Locate every layer before sending anything, so a tarball that lacks
	// one fails before any output is started.
	type layer struct {
		e      *entry
		name   string
		digest digest.Digest
		comp   elements.Compression
	}
	layers := make([]layer, len(m.Layers))
	for i, p := range m.Layers {
		e, err := idx.lookup(p)
		if err != nil {
			return fmt.Errorf("%s: layer %d named in manifest.json: %w", in.path, i, err)
		}
		head := make([]byte, elements.SniffLen)
		n, _ := idx.file.ReadAt(head[:min(int64(len(head)), e.size)], e.offset)
		l := layer{e: e, name: layerName(p), digest: digestOf(p), comp: elements.Detect(head[:n])}
		if l.comp == elements.Unknown {
			return fmt.Errorf("%s: layer %d (%s) is not a tar, gzip or zstd stream", in.path, i, p)
		}
		diffID := img.Parsed.RootFS.DiffIDs[i]
		if l.comp == elements.None && l.digest != "" && l.digest != diffID {
			return &elements.DigestError{What: fmt.Sprintf("layer %d (%s) diff ID", i, p), Want: diffID, Got: l.digest}
		}
		layers[i] = l
	}

	if err := flow.Send(ctx, out, elements.Element{Kind: elements.KindImage, Name: img.Reference, Index: -1, Size: -1}); err != nil {
		return err
	}
	body := io.NopCloser(bytes.NewReader(img.Config))
	if err := flow.Send(ctx, out, elements.Element{
		Kind: elements.KindConfig, Name: digest.FromBytes(img.Config).Encoded() + ".json", Index: -1,
		MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(img.Config),
		Size: int64(len(img.Config)), Body: body,
	}); err != nil {
		return err
	}
	for i, l := range layers {
		el := elements.Element{
			Kind: elements.KindLayer, Name: l.name, Index: i,
			MediaType: elements.LayerMediaType(l.comp),
			DiffID:    img.Parsed.RootFS.DiffIDs[i],
			Size:      l.e.size,
			Digest:    l.digest,
		}
		if l.comp == elements.None {
			el.Digest = el.DiffID
		}
		el.Body = idx.open(l.e)
		el.Source = &elements.FileRange{File: idx.file.File, Offset: l.e.offset, Length: l.e.size}
		if el.Digest != "" {
			el.Body = elements.NewVerifier(el.Body, el.Digest, el.String())
		}
		in.log.Debug().Str("layer", l.name).Int64("size", l.e.size).Str("compression", l.comp.String()).Msg("sending layer")
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	return nil
}

// layerName is the name a layer goes by: the directory of a legacy
// <id>/layer.tar, or the hex of a blobs/sha256/<hex> path.
func layerName(p string) string {
	p = clean(p)
	if strings.HasSuffix(p, "/layer.tar") {
		return path.Base(path.Dir(p))
	}
	return path.Base(p)
}
