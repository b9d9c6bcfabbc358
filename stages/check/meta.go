package check

import (
	"encoding/json"
	"fmt"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Meta is what a source knows about an image without reading its layers.
type Meta struct {
	Reference         string
	Manifest          []byte // raw image manifest; nil when the source has none
	ManifestMediaType string // the manifest's media type as served
	Config            []byte // raw config JSON; nil when the source has none

	// ConfigName is the config's name in a tarball; ConfigMissing says the
	// tarball lacks it. ConfigWant is the digest the config must have
	// when the source names one outside a manifest (a tarball's
	// "<hex>.json"), else "".
	ConfigName    string
	ConfigMissing bool
	ConfigWant    digest.Digest

	// TarLayers are the layers manifest.json lists, for tarball sources
	// (nil for others): whether each is present, its size and the
	// compression its first bytes show.
	TarLayers []TarLayer

	// MissingLayers are the indexes of manifest layers whose blobs the
	// source (a registry) does not have.
	MissingLayers []int
}

// TarLayer is one layer a tarball's manifest.json names.
type TarLayer struct {
	Path        string
	Present     bool
	Size        int64
	Compression elements.Compression
}

// manifestDoc is the part of an image manifest the checks read.
type manifestDoc struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
}

// configDoc is the part of an image config the checks read.
type configDoc struct {
	RootFS *struct {
		Type    *string         `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
	History []ocispec.History `json:"history"`
	Config  *struct {
		ArgsEscaped any `json:"ArgsEscaped"`
	} `json:"config"`
}

// Parsed is Meta parsed: what the full checks compare layers against.
type Parsed struct {
	HasManifest bool
	Manifest    manifestDoc
	HasConfig   bool
	Config      configDoc
	DiffIDs     []digest.Digest
	// Sniffed says the layers' compressions were compared with their
	// media types already (a tarball with an image manifest).
	Sniffed bool
}

const gib = 1 << 30

// Metadata runs the metadata checks (spec 11.2 plus ours) on m, adding
// results to r. It returns what it parsed; an error means a document
// could not be parsed at all.
func Metadata(m Meta, r *Report) (*Parsed, error) {
	p := &Parsed{}
	if len(m.Manifest) > 0 {
		if err := json.Unmarshal(m.Manifest, &p.Manifest); err != nil {
			return nil, fmt.Errorf("image manifest is not valid JSON: %w", err)
		}
		p.HasManifest = true
		if p.Manifest.MediaType == "" {
			p.Manifest.MediaType = m.ManifestMediaType
		}
	}
	if m.ConfigMissing {
		r.Add(Error, "blob-missing", "Config %s named in manifest.json is missing from the tarball", m.ConfigName)
	}
	if len(m.Config) > 0 {
		if m.ConfigWant != "" {
			if got := digest.FromBytes(m.Config); got != m.ConfigWant {
				r.Add(Error, "config-digest", "Config digest mismatch: expected %s, got %s", m.ConfigWant, got)
			}
		}
		if err := json.Unmarshal(m.Config, &p.Config); err != nil {
			r.Add(Error, "config-json", "Config is not valid JSON: %v", err)
		} else {
			p.HasConfig = true
			if p.Config.RootFS != nil {
				p.DiffIDs = p.Config.RootFS.DiffIDs
			}
		}
	}
	if !p.HasManifest && !p.HasConfig {
		r.Add(Warning, "metadata", "No manifest or config available; metadata checks skipped")
		tarLayerChecks(m, p, r)
		return p, nil
	}
	man := &p.Manifest
	if p.HasManifest {
		sv := 0
		if man.SchemaVersion != nil {
			sv = *man.SchemaVersion
		}
		if sv != 2 {
			shown := "None"
			if man.SchemaVersion != nil {
				shown = fmt.Sprint(sv)
			}
			r.Add(Error, "schema-version", "Manifest schemaVersion is %s, expected 2", shown)
		} else {
			r.Add(Info, "schema-version", "Manifest schemaVersion is 2")
		}
	}
	if p.HasConfig {
		var t *string
		if p.Config.RootFS != nil {
			t = p.Config.RootFS.Type
		}
		if t == nil || *t != "layers" {
			shown := "None"
			if t != nil {
				shown = pyRepr(*t)
			}
			r.Add(Error, "rootfs-type", "Config rootfs.type is %s, expected \"layers\"", shown)
		} else {
			r.Add(Info, "rootfs-type", `Config rootfs.type is "layers"`)
		}
	}
	// The layer list: the image manifest's, else a tarball's manifest.json.
	nLayers, haveLayers := 0, false
	switch {
	case p.HasManifest:
		nLayers, haveLayers = len(man.Layers), true
	case m.TarLayers != nil:
		nLayers, haveLayers = len(m.TarLayers), true
	}
	if haveLayers && p.HasConfig {
		if nLayers != len(p.DiffIDs) {
			r.Add(Error, "layer-count", "Manifest has %d layers but config has %d diff_ids", nLayers, len(p.DiffIDs))
		} else {
			r.Add(Info, "layer-count", "Layer count matches: %d layers, %d diff_ids", nLayers, len(p.DiffIDs))
		}
	}
	if p.HasManifest {
		if man.Config != nil && man.Config.Digest != "" {
			r.Add(Info, "config-descriptor", "Config descriptor present (digest: %s, size: %d)", man.Config.Digest, man.Config.Size)
		} else {
			r.Add(Error, "config-descriptor", "Manifest has no config descriptor")
		}
	}
	if p.HasConfig {
		if len(p.Config.History) == 0 {
			r.Add(Info, "history-count", "No history entries present")
		} else {
			n := 0
			for _, h := range p.Config.History {
				if !h.EmptyLayer {
					n++
				}
			}
			layers := len(p.DiffIDs)
			if haveLayers {
				layers = nLayers
			}
			if n != layers {
				r.Add(Error, "history-count", "History has %d non-empty entries but image has %d layers", n, layers)
			} else {
				r.Add(Info, "history-count", "History entries match: %d non-empty entries for %d layers", n, layers)
			}
		}
	}
	zstd := 0
	if p.HasManifest {
		for _, l := range man.Layers {
			if elements.CompressionOf(l.MediaType) == elements.Zstd {
				zstd++
			}
		}
	} else {
		for _, l := range m.TarLayers {
			if l.Compression == elements.Zstd {
				zstd++
			}
		}
	}
	if zstd > 0 {
		r.Add(Warning, "zstd-compat", "%d layer(s) use zstd compression; Docker Engine < 20.10 and containerd < 1.5 cannot pull this image", zstd)
	}
	if p.HasManifest {
		switch man.MediaType {
		case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex:
			r.Add(Info, "oci-media-type", "Image uses OCI media types; older Docker versions may not handle this correctly")
		case elements.MediaTypeDockerManifest:
			r.Add(Info, "docker-media-type", "Image uses Docker v2 media types; some OCI-only tooling may not handle this")
		}
		for i, l := range man.Layers {
			if l.Size > gib {
				r.Add(Warning, "large-layer", "Layer %d is very large: %s compressed", i, formatSize(l.Size))
			}
		}
	}
	if p.HasConfig && p.Config.Config != nil && truthy(p.Config.Config.ArgsEscaped) {
		r.Add(Warning, "args-escaped", "config.ArgsEscaped is set (Docker-specific, deprecated in OCI spec)")
	}

	// Beyond the original.
	if p.HasManifest {
		for i, l := range man.Layers {
			if elements.CompressionOf(l.MediaType) == elements.Unknown {
				r.AddLayer(i, Error, "layer-media-type", "Layer %d has media type %q, which is not a tar, gzip or zstd layer type", i, l.MediaType)
			}
		}
	}
	for i, d := range p.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			r.AddLayer(i, Error, "diff-id-format", "Config diff_id %d (%q) is not a sha256 digest", i, d)
		}
	}
	for _, i := range m.MissingLayers {
		if i < len(man.Layers) {
			r.AddLayer(i, Error, "blob-missing", "Layer %d blob %s is missing from the registry", i, man.Layers[i].Digest)
		}
	}
	tarLayerChecks(m, p, r)
	return p, nil
}

// tarLayerChecks checks a tarball's layers: present, and (when the
// tarball carries an image manifest) compressed as their media types say.
func tarLayerChecks(m Meta, p *Parsed, r *Report) {
	for i, l := range m.TarLayers {
		if !l.Present {
			r.AddLayer(i, Error, "blob-missing", "Layer %d (%s) named in manifest.json is missing from the tarball", i, l.Path)
			continue
		}
		if l.Compression == elements.Unknown {
			r.AddLayer(i, Error, "compression-mismatch", "Layer %d (%s) is not a tar, gzip or zstd stream", i, l.Path)
			continue
		}
		if p.HasManifest && i < len(p.Manifest.Layers) {
			mt := p.Manifest.Layers[i].MediaType
			if want := elements.CompressionOf(mt); want != elements.Unknown && want != l.Compression {
				r.AddLayer(i, Error, "compression-mismatch", "Layer %d media type %s says %s but its content is %s", i, mt, want, l.Compression)
			}
		}
	}
	p.Sniffed = p.HasManifest && m.TarLayers != nil
}

// truthy is Python's truthiness for a JSON value.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}
