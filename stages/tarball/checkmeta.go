package tarball

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CheckImage is what the check command learns of a tarball without
// reading layer data. Unlike Describe it does not stop at the first
// inconsistency: a missing config or layer, or a config whose name's
// digest is wrong, is reported in the fields for the check to judge.
type CheckImage struct {
	Reference     string
	ConfigName    string
	Config        []byte        // nil when the config is missing
	ConfigMissing bool          // manifest.json names a config the tarball lacks
	ConfigWant    digest.Digest // the digest the config's name claims, "" if none
	// Manifest is the OCI image manifest of an OCI-layout tarball (Docker
	// 25+), when index.json leads to one; nil otherwise.
	Manifest []byte
	Layers   []CheckLayer
}

// CheckLayer is one layer manifest.json names.
type CheckLayer struct {
	Path        string
	Present     bool
	Size        int64
	Compression elements.Compression // from the first bytes
}

// DescribeForCheck reads manifest.json, the config, and the first bytes of
// every layer. Errors are for tarballs it cannot make sense of at all.
func (in *Input) DescribeForCheck() (*CheckImage, error) {
	idx, err := openIndex(in.path)
	if err != nil {
		return nil, err
	}
	defer idx.close()
	me, err := idx.lookup("manifest.json")
	if err != nil {
		// The same messages as the input's.
		_, _, derr := in.describe(idx)
		return nil, derr
	}
	raw, err := idx.readAll(me)
	if err != nil {
		return nil, err
	}
	var manifest []manifestEntry
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, fmt.Errorf("%s: manifest.json is not valid: %w", in.path, err)
	}
	if len(manifest) == 0 {
		return nil, fmt.Errorf("%s: manifest.json lists no image", in.path)
	}
	m := manifest[0]
	ci := &CheckImage{ConfigName: m.Config, ConfigWant: digestOf(m.Config)}
	if len(m.RepoTags) > 0 {
		ci.Reference = m.RepoTags[0]
	}
	if m.Config == "" {
		ci.ConfigMissing = true
	} else if ce, err := idx.lookup(m.Config); err != nil {
		if !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%s: config named in manifest.json: %w", in.path, err)
		}
		ci.ConfigMissing = true
	} else if ci.Config, err = idx.readAll(ce); err != nil {
		return nil, err
	}
	ci.Layers = make([]CheckLayer, len(m.Layers))
	for i, p := range m.Layers {
		l := CheckLayer{Path: p}
		if e, err := idx.lookup(p); err == nil {
			l.Present, l.Size = true, e.size
			head := make([]byte, elements.SniffLen)
			n, _ := idx.file.ReadAt(head[:min(int64(len(head)), e.size)], e.offset)
			l.Compression = elements.Detect(head[:n])
		}
		ci.Layers[i] = l
	}
	ci.Manifest = ociManifest(idx)
	return ci, nil
}

// ociManifest returns the image manifest index.json names first, if the
// tarball has one.
func ociManifest(idx *index) []byte {
	ie, err := idx.lookup("index.json")
	if err != nil {
		return nil
	}
	raw, err := idx.readAll(ie)
	if err != nil {
		return nil
	}
	var ix ocispec.Index
	if json.Unmarshal(raw, &ix) != nil || len(ix.Manifests) == 0 {
		return nil
	}
	d := ix.Manifests[0]
	if d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != elements.MediaTypeDockerManifest {
		return nil
	}
	if d.Digest.Validate() != nil {
		return nil
	}
	me, err := idx.lookup("blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded())
	if err != nil {
		return nil
	}
	b, err := idx.readAll(me)
	if err != nil {
		return nil
	}
	return b
}
