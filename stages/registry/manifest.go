package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxManifestSize bounds manifests, indexes and configs read whole: real
// ones are kilobytes; the distribution spec suggests a 4 MiB limit.
const maxManifestSize = 4 << 20

// Manifest is a raw manifest or index as the registry served it.
type Manifest struct {
	Raw       []byte
	MediaType string
	Digest    digest.Digest
}

// IsIndex reports whether m is a manifest list or an OCI index.
func (m Manifest) IsIndex() bool {
	return m.MediaType == ocispec.MediaTypeImageIndex || m.MediaType == elements.MediaTypeDockerManifestList
}

// Image parses m as an image manifest.
func (m Manifest) Image() (ocispec.Manifest, error) {
	var im ocispec.Manifest
	if err := json.Unmarshal(m.Raw, &im); err != nil {
		return im, fmt.Errorf("image manifest %s is not valid JSON: %w", m.Digest, err)
	}
	if im.SchemaVersion != 2 {
		return im, fmt.Errorf("image manifest %s has schemaVersion %d; only schema 2 is supported", m.Digest, im.SchemaVersion)
	}
	if err := checkDescriptor("config", im.Config); err != nil {
		return im, fmt.Errorf("image manifest %s: %w", m.Digest, err)
	}
	for i, l := range im.Layers {
		if err := checkDescriptor(fmt.Sprintf("layer %d", i), l); err != nil {
			return im, fmt.Errorf("image manifest %s: %w", m.Digest, err)
		}
	}
	return im, nil
}

// Index parses m as an index.
func (m Manifest) Index() (ocispec.Index, error) {
	var ix ocispec.Index
	if err := json.Unmarshal(m.Raw, &ix); err != nil {
		return ix, fmt.Errorf("index %s is not valid JSON: %w", m.Digest, err)
	}
	for i, d := range ix.Manifests {
		if err := checkDescriptor(fmt.Sprintf("entry %d", i), d); err != nil {
			return ix, fmt.Errorf("index %s: %w", m.Digest, err)
		}
	}
	return ix, nil
}

// checkDescriptor refuses descriptors whose digest is malformed or whose
// size is negative: both come from the network.
func checkDescriptor(what string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s has an invalid digest %q: %v", what, d.Digest, err)
	}
	if d.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%s uses digest algorithm %s; only sha256 is supported", what, d.Digest.Algorithm())
	}
	if d.Size < 0 {
		return fmt.Errorf("%s has a negative size", what)
	}
	return nil
}

// manifestAccept is every manifest type we understand, best first.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex,
	elements.MediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest,
	elements.MediaTypeDockerManifest,
}, ",")

// GetManifest fetches a manifest or index by tag or digest. When ref is a
// digest the bytes are checked against it.
func (c *Client) GetManifest(ctx context.Context, ref string) (Manifest, error) {
	resp, err := c.do(ctx, http.MethodGet, c.repoPath("manifests/"+ref),
		http.Header{"Accept": {manifestAccept}}, nil, 0, http.StatusOK)
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return Manifest{}, fmt.Errorf("image %s/%s:%s not found: %w", c.host, c.repo, ref, err)
		}
		return Manifest{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", ref, err)
	}
	if len(raw) > maxManifestSize {
		return Manifest{}, fmt.Errorf("manifest %s is larger than %d bytes; refusing it", ref, maxManifestSize)
	}
	m := Manifest{Raw: raw, Digest: digest.FromBytes(raw)}
	if want, err := digest.Parse(ref); err == nil && want != m.Digest {
		return Manifest{}, &elements.DigestError{What: "manifest " + ref, Want: want, Got: m.Digest}
	}
	m.MediaType, err = manifestType(resp.Header.Get("Content-Type"), raw)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest %s: %w", ref, err)
	}
	return m, nil
}

// manifestType decides a manifest's media type from its Content-Type
// (parameters ignored) or, when that is generic, from the document's own
// mediaType field or shape.
func manifestType(contentType string, raw []byte) (string, error) {
	ct, _, _ := mime.ParseMediaType(contentType)
	var doc struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("not valid JSON: %w", err)
	}
	if doc.SchemaVersion == 1 || strings.HasPrefix(ct, "application/vnd.docker.distribution.manifest.v1") {
		return "", errors.New("it is a Docker schema 1 manifest, which is not supported (deprecated since 2017); push the image again with a current tool")
	}
	switch ct {
	case ocispec.MediaTypeImageIndex, elements.MediaTypeDockerManifestList,
		ocispec.MediaTypeImageManifest, elements.MediaTypeDockerManifest:
		return ct, nil
	}
	switch doc.MediaType {
	case ocispec.MediaTypeImageIndex, elements.MediaTypeDockerManifestList,
		ocispec.MediaTypeImageManifest, elements.MediaTypeDockerManifest:
		return doc.MediaType, nil
	}
	switch {
	case doc.SchemaVersion == 2 && doc.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case doc.SchemaVersion == 2 && doc.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", fmt.Errorf("unknown manifest type %q", contentType)
}

// Resolved is an image found in a registry: its manifest and, when the
// reference named an index, that index too.
type Resolved struct {
	Manifest Manifest
	Image    ocispec.Manifest
	Index    *Manifest // nil unless the reference named an index
}

// Resolve fetches the manifest ref names (a tag or digest) and, if it is an
// index, the entry for platform.
func (c *Client) Resolve(ctx context.Context, ref string, platform ocispec.Platform) (Resolved, error) {
	m, err := c.GetManifest(ctx, ref)
	if err != nil {
		return Resolved{}, err
	}
	var r Resolved
	if m.IsIndex() {
		ix, err := m.Index()
		if err != nil {
			return Resolved{}, err
		}
		d, err := SelectPlatform(ix, platform)
		if err != nil {
			return Resolved{}, fmt.Errorf("%s/%s:%s: %w", c.host, c.repo, ref, err)
		}
		c.log.Debug().Str("platform", PlatformString(*d.Platform)).Str("digest", d.Digest.String()).Msg("selected platform from index")
		index := m
		r.Index = &index
		if m, err = c.GetManifest(ctx, d.Digest.String()); err != nil {
			return Resolved{}, err
		}
		if m.IsIndex() {
			return Resolved{}, fmt.Errorf("index entry %s is itself an index; nested indexes are not supported", d.Digest)
		}
	}
	r.Manifest = m
	if r.Image, err = m.Image(); err != nil {
		return Resolved{}, err
	}
	return r, nil
}

// SelectPlatform picks the index entry for a platform. OS and architecture
// must match (with the usual aliases: x86_64 is amd64, aarch64 is arm64);
// a requested variant must match too, where arm64 without a variant counts
// as v8. With no variant requested, the first entry of the OS and
// architecture is taken. When nothing matches, the error lists what the
// index has.
func SelectPlatform(ix ocispec.Index, want ocispec.Platform) (ocispec.Descriptor, error) {
	want = normalizePlatform(want)
	var have []string
	for _, d := range ix.Manifests {
		if d.Platform == nil {
			continue
		}
		p := normalizePlatform(*d.Platform)
		if p.OS == "unknown" || p.Architecture == "unknown" {
			continue // attestations and signatures
		}
		have = append(have, PlatformString(*d.Platform))
		if p.OS != want.OS || p.Architecture != want.Architecture {
			continue
		}
		if want.Variant != "" && p.Variant != want.Variant {
			continue
		}
		return d, nil
	}
	listing := "it has no platform entries"
	if len(have) > 0 {
		listing = "it has " + strings.Join(have, ", ")
	}
	return ocispec.Descriptor{}, fmt.Errorf("no image for platform %s in the index; %s (choose one with --os, --architecture and --variant, or the URI options os, arch and variant)",
		PlatformString(want), listing)
}

// normalizePlatform applies the common spellings of architectures and the
// arm defaults.
func normalizePlatform(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	case "i386":
		p.Architecture = "386"
	}
	if p.Architecture == "arm64" && (p.Variant == "" || p.Variant == "8") {
		p.Variant = "v8"
	}
	return p
}

// PlatformString renders a platform as os/arch[/variant].
func PlatformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ManifestDigest returns the digest of the manifest or index ref names,
// with a HEAD (falling back to a GET when the registry gives no
// Docker-Content-Digest). A manifest the repository lacks is an
// *HTTPError with status 404.
func (c *Client) ManifestDigest(ctx context.Context, ref string) (digest.Digest, error) {
	resp, err := c.do(ctx, http.MethodHead, c.repoPath("manifests/"+ref),
		http.Header{"Accept": {manifestAccept}}, nil, 0, http.StatusOK)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil {
		return d, nil
	}
	m, err := c.GetManifest(ctx, ref)
	if err != nil {
		return "", err
	}
	return m.Digest, nil
}
