package ocilayout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// Input reads one image from an OCI image layout directory: the index.json
// entry named by the tag (or the only entry), following nested indexes with
// platform selection. Layer bodies are the blob files, verified against
// their digests as they are read, with Source set so that outputs can copy
// them in the kernel.
type Input struct {
	path     string
	store    store
	tag      string
	platform ocispec.Platform
	log      zerolog.Logger
}

// NewInput returns an Input reading the layout at path. It does no I/O.
func NewInput(path, tag string, env stages.Env) *Input {
	return &Input{path: path, store: dirStore(path), tag: tag, platform: env.Platform, log: env.Log}
}

// NewArchiveInput returns an Input reading a tar archive of an OCI image
// layout at path (uncompressed). Blobs are read from their ranges of the
// archive; nothing is extracted. It does no I/O.
func NewArchiveInput(path, tag string, env stages.Env) *Input {
	return &Input{path: path, store: &archiveStore{path: path}, tag: tag, platform: env.Platform, log: env.Log}
}

// WithPlatform returns the input with another platform to pick from indexes.
func (in *Input) WithPlatform(p ocispec.Platform) *Input {
	in.platform = p
	return in
}

// image is a resolved image of the layout.
type image struct {
	name     string
	manifest []byte
	mdesc    ocispec.Descriptor
	m        ocispec.Manifest
	config   []byte
	parsed   ocispec.Image
}

// pick returns the index.json entry for the input's tag.
func (in *Input) pick() (ocispec.Descriptor, string, error) {
	ix, err := in.store.index()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ocispec.Descriptor{}, "", fmt.Errorf("%s is not an OCI image layout: it has no %s", in.path, ocispec.ImageIndexFile)
		}
		return ocispec.Descriptor{}, "", err
	}
	var tags []string
	for _, d := range ix.Manifests {
		name := d.Annotations[ocispec.AnnotationRefName]
		if name != "" {
			tags = append(tags, name)
		}
		if in.tag != "" && name == in.tag {
			return d, name, nil
		}
	}
	if in.tag == "" && len(ix.Manifests) == 1 {
		d := ix.Manifests[0]
		return d, d.Annotations[ocispec.AnnotationRefName], nil
	}
	have := "it lists no tags"
	if len(tags) > 0 {
		have = "it has " + strings.Join(tags, ", ")
	}
	if in.tag == "" {
		return ocispec.Descriptor{}, "", fmt.Errorf("%s holds %d images: choose one with ?tag= (%s)", in.path, len(ix.Manifests), have)
	}
	return ocispec.Descriptor{}, "", fmt.Errorf("no image tagged %q in %s (%s)", in.tag, in.path, have)
}

// resolve reads the image the input names.
func (in *Input) resolve() (image, error) {
	var img image
	d, tag, err := in.pick()
	if err != nil {
		return img, err
	}
	for depth := 0; ; depth++ {
		if depth > 4 {
			return img, fmt.Errorf("%s: indexes nested too deeply", in.path)
		}
		raw, err := in.store.blob(d)
		if err != nil {
			return img, err
		}
		mt := d.MediaType
		if mt == "" {
			var probe struct {
				MediaType string          `json:"mediaType"`
				Manifests json.RawMessage `json:"manifests"`
			}
			json.Unmarshal(raw, &probe)
			mt = probe.MediaType
			if mt == "" && probe.Manifests != nil {
				mt = ocispec.MediaTypeImageIndex
			}
		}
		if mt == ocispec.MediaTypeImageIndex || mt == elements.MediaTypeDockerManifestList {
			var ix ocispec.Index
			if err := json.Unmarshal(raw, &ix); err != nil {
				return img, fmt.Errorf("index %s is not valid JSON: %w", d.Digest, err)
			}
			if d, err = registry.SelectPlatform(ix, in.platform); err != nil {
				return img, err
			}
			continue
		}
		img.manifest, img.mdesc = raw, d
		img.mdesc.MediaType = mt
		break
	}
	if err := json.Unmarshal(img.manifest, &img.m); err != nil {
		return img, fmt.Errorf("manifest %s is not valid JSON: %w", img.mdesc.Digest, err)
	}
	if img.mdesc.MediaType == "" {
		img.mdesc.MediaType = img.m.MediaType
	}
	if img.m.SchemaVersion != 2 {
		return img, fmt.Errorf("manifest %s has schemaVersion %d; only schema 2 is supported", img.mdesc.Digest, img.m.SchemaVersion)
	}
	if img.config, err = in.store.blob(img.m.Config); err != nil {
		return img, fmt.Errorf("config: %w", err)
	}
	if err := json.Unmarshal(img.config, &img.parsed); err != nil {
		return img, fmt.Errorf("config %s is not valid JSON: %w", img.m.Config.Digest, err)
	}
	if len(img.parsed.RootFS.DiffIDs) != len(img.m.Layers) {
		return img, fmt.Errorf("image in %s is inconsistent: its manifest lists %d layers but its config %d diff IDs", in.path, len(img.m.Layers), len(img.parsed.RootFS.DiffIDs))
	}
	img.name = in.imageName(tag)
	return img, nil
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9._-]+`)

// imageName is the reference the image is sent under: the ref.name when it
// is a whole reference, otherwise the layout directory's name with the tag.
func (in *Input) imageName(tag string) string {
	if strings.ContainsAny(tag, "/:") {
		return tag
	}
	if tag == "" {
		tag = "latest"
	}
	base := strings.TrimSuffix(strings.ToLower(filepath.Base(filepath.Clean(in.path))), ".tar")
	base = nameUnsafe.ReplaceAllString(base, "-")
	base = strings.Trim(base, ".-_")
	if base == "" {
		base = "image"
	}
	return base + ":" + tag
}

// Run sends the image, its config and its layers.
func (in *Input) Run(ctx context.Context, out chan<- elements.Element) error {
	img, err := in.resolve()
	if err != nil {
		in.store.close()
		return err
	}
	in.log.Info().Str("image", img.name).Str("digest", img.mdesc.Digest.String()).
		Int("layers", len(img.m.Layers)).Msg("reading OCI layout")
	defer in.store.close()
	if err := flow.Send(ctx, out, elements.Element{
		Kind: elements.KindImage, Name: img.name, Index: -1,
		MediaType: img.mdesc.MediaType, Digest: img.mdesc.Digest, Size: int64(len(img.manifest)),
		Body: io.NopCloser(bytes.NewReader(img.manifest)),
	}); err != nil {
		return err
	}
	cd := img.m.Config
	if err := flow.Send(ctx, out, elements.Element{
		Kind: elements.KindConfig, Name: cd.Digest.Encoded() + ".json", Index: -1,
		MediaType: cd.MediaType, Digest: cd.Digest, Size: int64(len(img.config)),
		Body: io.NopCloser(bytes.NewReader(img.config)),
	}); err != nil {
		return err
	}
	for i, d := range img.m.Layers {
		el, err := in.layer(i, d, img.parsed.RootFS.DiffIDs[i])
		if err != nil {
			return err
		}
		if err := flow.Send(ctx, out, el); err != nil {
			el.Close()
			return err
		}
	}
	return nil
}

// layer opens one layer blob as an element.
func (in *Input) layer(i int, d ocispec.Descriptor, diffID digest.Digest) (elements.Element, error) {
	if err := diffID.Validate(); err != nil {
		return elements.Element{}, fmt.Errorf("layer %d: config diff ID %q is invalid: %v", i, diffID, err)
	}
	if len(d.URLs) > 0 {
		in.log.Debug().Int("layer", i).Msg("layer has URLs; reading it from the layout")
	}
	f, off, size, err := in.store.open(d.Digest)
	if err != nil {
		return elements.Element{}, fmt.Errorf("layer %d: %w", i, err)
	}
	if size != d.Size {
		f.Close()
		return elements.Element{}, fmt.Errorf("layer %d: blob %s is %d bytes, the manifest says %d", i, d.Digest, size, d.Size)
	}
	body := &sectionCloser{SectionReader: io.NewSectionReader(f, off, size), f: f}
	return elements.Element{
		Kind: elements.KindLayer, Name: d.Digest.Encoded(), Index: i,
		MediaType: d.MediaType, Digest: d.Digest, DiffID: diffID, Size: d.Size,
		Body:   elements.NewVerifier(body, d.Digest, fmt.Sprintf("layer %d", i)),
		Source: &elements.FileRange{File: f, Offset: off, Length: size},
	}, nil
}

// Describe reads the image's manifest and config, no layer: what `info`
// shows.
func (in *Input) Describe() (ref string, manifest []byte, manifestType string, manifestDigest digest.Digest, config []byte, err error) {
	defer in.store.close()
	img, err := in.resolve()
	if err != nil {
		return "", nil, "", "", nil, err
	}
	return img.name, img.manifest, img.mdesc.MediaType, img.mdesc.Digest, img.config, nil
}
