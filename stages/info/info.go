// Package info builds the `info` command's description of an image from
// what an input knows without reading layers (its manifest, index and
// config), and renders it as the original's text layout or as JSON with
// the original's key order (spec section 11.1).
package info

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Size limits on what Build parses. Real manifests are a few KiB and
// registries need not accept more than 4 MiB; configs are rarely over 1 MiB.
const (
	MaxManifestSize = 4 << 20  // manifest or index
	MaxConfigSize   = 16 << 20 // config
)

// Source is what an input knows about an image without reading its layers.
type Source struct {
	Reference         string        // the image reference (e.g. "127.0.0.1:5000/app:v1", "busybox:latest")
	Manifest          []byte        // raw image manifest; nil when the source has none (a tarball)
	ManifestMediaType string        // the manifest's media type as served (used when the manifest omits mediaType)
	ManifestDigest    digest.Digest // digest of Manifest ("" if none: computed from Manifest)
	Index             []byte        // raw index / manifest list when the reference named one, else nil
	IndexMediaType    string        // the index's media type as served
	IndexDigest       digest.Digest // digest of Index ("" if none: computed from Index)
	Config            []byte        // raw config JSON; nil when the source has none
}

// Describer is implemented by inputs that can describe an image cheaply:
// manifest, index and config, no layer data.
type Describer interface {
	Describe(ctx context.Context) (Source, error)
}

// Info is the description of one image. Its fields are the keys of the
// original's info dict in their order; the Has* flags say which groups of
// keys are present (the manifest group only for sources with a manifest,
// the config group only for sources with a config).
type Info struct {
	Image string // the reference's name
	Tag   string // its tag, "latest" if none; for a digest reference the digest

	HasManifest    bool
	SchemaVersion  int           // manifest schemaVersion (0 if absent)
	MediaType      string        // manifest mediaType, else the type it was served with; "" shows as null/None
	ManifestDigest digest.Digest // beyond the original

	// Beyond the original: the index the reference named, if any.
	HasIndex       bool
	IndexDigest    digest.Digest
	IndexMediaType string   // "" shows as null/None
	Platforms      []string // "os/arch[/variant]" of each index entry, "unknown" if it has no platform

	ConfigDigest        digest.Digest // manifest config descriptor; "" (no descriptor) shows as null/None
	ConfigSize          int64         // shown as null/N/A when ConfigDigest is ""
	LayerCount          int           // manifest layers, else config diff IDs, else 0
	TotalCompressedSize int64         // sum of manifest layer sizes (manifest only)
	Layers              []Layer

	HasConfig       bool
	Architecture    string
	OS              string
	Variant         string
	Created         *string // the config's created string as written; nil for JSON null
	DiffIDs         []digest.Digest
	HistoryCount    int
	EmptyLayerCount int
	Labels          []Label  // in the config's order
	Env             []string // never nil
	Entrypoint      []string // nil for null/absent
	Cmd             []string // nil for null/absent
	WorkingDir      string
	ExposedPorts    []string // keys, in the config's order; never nil
	Volumes         []string // keys, in the config's order; never nil
}

// Layer is one row of the layer list. Which keys it has depends on the
// source: manifest sources give the blob keys, configs give diff_id, and
// created_by comes from the non-empty history entries.
type Layer struct {
	Index int

	HasBlob     bool // digest, size, media_type and compression are set (from a manifest)
	Digest      digest.Digest
	Size        int64
	MediaType   string
	Compression string // gzip, zstd, none or unknown

	HasDiffID bool
	DiffID    digest.Digest

	HasCreatedBy bool
	CreatedBy    string
}

// Label is one config label, kept in the config's order.
type Label struct {
	Key   string
	Value string
}

// SplitReference splits a reference into the image name and tag shown by
// info: the tag is what follows the last ':' that comes after the last '/'
// ("127.0.0.1:5000/app" has no tag and gets "latest"). A digest reference
// ("app@sha256:...") has no tag to show, so the digest goes in tag and the
// name before '@' in image (the original did not support digest references
// at all). An empty reference (an untagged tarball) gives unknown/unknown,
// as the original's tarball input did.
func SplitReference(ref string) (image, tag string) {
	if ref == "" {
		return "unknown", "unknown"
	}
	if at := strings.LastIndexByte(ref, '@'); at >= 0 {
		return ref[:at], ref[at+1:]
	}
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, "latest"
}

// Build parses a Source into an Info. Malformed or oversized JSON is an
// error naming the document at fault.
func Build(src Source) (*Info, error) {
	for _, d := range []struct {
		what string
		data []byte
		max  int
	}{{"manifest", src.Manifest, MaxManifestSize}, {"index", src.Index, MaxManifestSize}, {"config", src.Config, MaxConfigSize}} {
		if len(d.data) > d.max {
			return nil, fmt.Errorf("image %s is %d bytes, more than the %d bytes allowed", d.what, len(d.data), d.max)
		}
	}
	inf := &Info{}
	inf.Image, inf.Tag = SplitReference(src.Reference)
	if len(src.Index) > 0 {
		if err := inf.addIndex(src); err != nil {
			return nil, err
		}
	}
	if len(src.Manifest) > 0 {
		if err := inf.addManifest(src); err != nil {
			return nil, err
		}
	}
	if len(src.Config) > 0 {
		if err := inf.addConfig(src.Config); err != nil {
			return nil, err
		}
	}
	return inf, nil
}

// decodeObject unmarshals a JSON object, refusing anything else (null, a
// list, trailing data) with an error naming what.
func decodeObject(what string, data []byte, v any) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("image %s is not a JSON object", what)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("image %s is not valid: %w", what, err)
	}
	return nil
}

func (inf *Info) addIndex(src Source) error {
	var ix ocispec.Index
	if err := decodeObject("index", src.Index, &ix); err != nil {
		return err
	}
	inf.HasIndex = true
	inf.IndexDigest = src.IndexDigest
	if inf.IndexDigest == "" {
		inf.IndexDigest = digest.FromBytes(src.Index)
	}
	inf.IndexMediaType = ix.MediaType
	if inf.IndexMediaType == "" {
		inf.IndexMediaType = src.IndexMediaType
	}
	inf.Platforms = make([]string, 0, len(ix.Manifests))
	for _, m := range ix.Manifests {
		inf.Platforms = append(inf.Platforms, platformString(m.Platform))
	}
	return nil
}

// platformString is "os/arch[/variant]", or "unknown" for an index entry
// with no platform.
func platformString(p *ocispec.Platform) string {
	if p == nil {
		return "unknown"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func (inf *Info) addManifest(src Source) error {
	var m ocispec.Manifest
	if err := decodeObject("manifest", src.Manifest, &m); err != nil {
		return err
	}
	inf.HasManifest = true
	inf.SchemaVersion = m.SchemaVersion
	inf.MediaType = m.MediaType
	if inf.MediaType == "" {
		inf.MediaType = src.ManifestMediaType
	}
	inf.ManifestDigest = src.ManifestDigest
	if inf.ManifestDigest == "" {
		inf.ManifestDigest = digest.FromBytes(src.Manifest)
	}
	inf.ConfigDigest = m.Config.Digest
	inf.ConfigSize = m.Config.Size
	inf.LayerCount = len(m.Layers)
	inf.Layers = make([]Layer, len(m.Layers))
	for i, l := range m.Layers {
		inf.TotalCompressedSize += l.Size
		inf.Layers[i] = Layer{
			Index: i, HasBlob: true, Digest: l.Digest, Size: l.Size, MediaType: l.MediaType,
			Compression: elements.CompressionOf(l.MediaType).String(),
		}
	}
	return nil
}

// configDoc is an image config as image-spec parses it, except for the
// fields info shows as written: created (any string, not only RFC 3339,
// and null kept apart from absent) and the container config (whose maps
// are shown in the config's key order).
type configDoc struct {
	ocispec.Image
	Created json.RawMessage `json:"created"`
	Config  json.RawMessage `json:"config"`
}

// containerDoc is the config's "config" object, likewise.
type containerDoc struct {
	ocispec.ImageConfig
	Labels       json.RawMessage `json:"Labels"`
	ExposedPorts json.RawMessage `json:"ExposedPorts"`
	Volumes      json.RawMessage `json:"Volumes"`
}

func (inf *Info) addConfig(data []byte) error {
	var c configDoc
	if err := decodeObject("config", data, &c); err != nil {
		return err
	}
	inf.HasConfig = true
	inf.Architecture, inf.OS, inf.Variant = c.Architecture, c.OS, c.Variant
	switch {
	case c.Created == nil: // absent: the original showed ''
		inf.Created = new(string)
	case string(c.Created) == "null":
	default:
		var s string
		if err := json.Unmarshal(c.Created, &s); err != nil {
			return fmt.Errorf("image config: created is not a string: %w", err)
		}
		inf.Created = &s
	}

	inf.DiffIDs = c.RootFS.DiffIDs
	if inf.DiffIDs == nil {
		inf.DiffIDs = []digest.Digest{}
	}
	if inf.HasManifest {
		for i := range inf.Layers {
			if i < len(inf.DiffIDs) {
				inf.Layers[i].HasDiffID, inf.Layers[i].DiffID = true, inf.DiffIDs[i]
			}
		}
	} else {
		inf.LayerCount = len(inf.DiffIDs)
		inf.Layers = make([]Layer, len(inf.DiffIDs))
		for i, d := range inf.DiffIDs {
			inf.Layers[i] = Layer{Index: i, HasDiffID: true, DiffID: d}
		}
	}

	// created_by goes to the layers in order of the non-empty history
	// entries; entries beyond the last layer are counted but not shown.
	inf.HistoryCount = len(c.History)
	n := 0
	for _, h := range c.History {
		if h.EmptyLayer {
			inf.EmptyLayerCount++
			continue
		}
		if n < len(inf.Layers) {
			inf.Layers[n].HasCreatedBy, inf.Layers[n].CreatedBy = true, h.CreatedBy
		}
		n++
	}

	inf.Env, inf.ExposedPorts, inf.Volumes = []string{}, []string{}, []string{}
	if len(c.Config) == 0 || string(c.Config) == "null" {
		return nil
	}
	var cc containerDoc
	if err := decodeObject("config's container config", c.Config, &cc); err != nil {
		return err
	}
	if cc.Env != nil {
		inf.Env = cc.Env
	}
	inf.Entrypoint, inf.Cmd, inf.WorkingDir = cc.Entrypoint, cc.Cmd, cc.WorkingDir
	labels, err := orderedObject(cc.Labels, true)
	if err != nil {
		return fmt.Errorf("image config: Labels: %w", err)
	}
	for _, kv := range labels {
		inf.Labels = append(inf.Labels, Label(kv))
	}
	ports, err := orderedObject(cc.ExposedPorts, false)
	if err != nil {
		return fmt.Errorf("image config: ExposedPorts: %w", err)
	}
	for _, kv := range ports {
		inf.ExposedPorts = append(inf.ExposedPorts, kv.Key)
	}
	vols, err := orderedObject(cc.Volumes, false)
	if err != nil {
		return fmt.Errorf("image config: Volumes: %w", err)
	}
	for _, kv := range vols {
		inf.Volumes = append(inf.Volumes, kv.Key)
	}
	return nil
}

// orderedObject returns the members of a JSON object in their order (a key
// given twice keeps its first place and its last value, as Python's dict
// does). Absent or null gives nothing. With stringValues every value must
// be a string, which it returns; otherwise values are skipped.
func orderedObject(raw json.RawMessage, stringValues bool) ([]Label, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []Label
	seen := map[string]int{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := t.(string) // object keys are always strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		var s string
		if stringValues {
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fmt.Errorf("value of %q is not a string", key)
			}
		}
		if i, ok := seen[key]; ok {
			out[i].Value = s
			continue
		}
		seen[key] = len(out)
		out = append(out, Label{key, s})
	}
	return out, nil
}
