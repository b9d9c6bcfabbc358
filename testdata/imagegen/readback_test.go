package imagegen

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// member is one entry of an outer tarball read into memory.
type member struct {
	hdr  *tar.Header
	data []byte
}

// archive is a docker save tarball read back and checked by readImage.
type archive struct {
	order    []string
	members  map[string]member
	manifest dockerManifest
	config   []byte
	image    ocispec.Image
	layers   [][]byte // uncompressed layer tars, in manifest order
	blobs    [][]byte // stored layer blobs, in manifest order
	index    *ocispec.Index
	ociMan   *ocispec.Manifest
}

// readImage parses a docker save tarball and checks that it is
// self-consistent, the way a careful reader would. Error messages use the
// HostileCase Want words.
func readImage(b []byte) (*archive, error) {
	a := &archive{members: map[string]member{}}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("outer tarball truncated: %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("input is not a tar archive: %w", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("outer tarball truncated in %s: %w", h.Name, err)
		}
		a.order = append(a.order, h.Name)
		a.members[h.Name] = member{h, data}
	}
	mj, ok := a.members["manifest.json"]
	if !ok {
		if _, ok := a.members["repositories"]; ok {
			return nil, errors.New("legacy docker format (pre-1.10): no manifest.json")
		}
		return nil, errors.New("missing manifest.json")
	}
	var ms []dockerManifest
	if err := json.Unmarshal(mj.data, &ms); err != nil {
		return nil, fmt.Errorf("parse manifest.json: %w", err)
	}
	if len(ms) != 1 {
		return nil, fmt.Errorf("manifest.json has %d images", len(ms))
	}
	a.manifest = ms[0]
	cfg, err := a.file(a.manifest.Config)
	if err != nil {
		return nil, err
	}
	hex := strings.TrimSuffix(path.Base(a.manifest.Config), ".json")
	if got := digest.FromBytes(cfg).Encoded(); got != hex {
		return nil, fmt.Errorf("config digest mismatch: name %s, content %s", hex, got)
	}
	a.config = cfg
	if err := json.Unmarshal(cfg, &a.image); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if len(a.image.RootFS.DiffIDs) != len(a.manifest.Layers) {
		return nil, fmt.Errorf("config has %d diff_ids, manifest.json %d layers", len(a.image.RootFS.DiffIDs), len(a.manifest.Layers))
	}
	for i, p := range a.manifest.Layers {
		blob, err := a.file(p)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(p, "blobs/sha256/") {
			if got := digest.FromBytes(blob).Encoded(); got != path.Base(p) {
				return nil, fmt.Errorf("layer %s: blob digest mismatch (content %s)", p, got)
			}
		}
		raw, err := decompress(blob)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", p, err)
		}
		if got := digest.FromBytes(raw); got != a.image.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("layer %s: diff_id mismatch: config %s, content %s", p, a.image.RootFS.DiffIDs[i], got)
		}
		a.blobs = append(a.blobs, blob)
		a.layers = append(a.layers, raw)
	}
	if ij, ok := a.members["index.json"]; ok {
		if err := a.checkOCI(ij.data); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// file returns a regular file's content, following symlinks (relative
// to the link's directory) as docker load does.
func (a *archive) file(name string) ([]byte, error) {
	for range 8 {
		m, ok := a.members[name]
		if !ok {
			return nil, fmt.Errorf("%s is missing from the tarball", name)
		}
		switch m.hdr.Typeflag {
		case tar.TypeReg:
			return m.data, nil
		case tar.TypeSymlink:
			name = path.Join(path.Dir(name), m.hdr.Linkname)
		default:
			return nil, fmt.Errorf("%s is not a regular file", name)
		}
	}
	return nil, fmt.Errorf("%s: too many symlinks", name)
}

// checkOCI checks index.json, the image manifest and oci-layout against
// manifest.json.
func (a *archive) checkOCI(indexJSON []byte) error {
	var idx ocispec.Index
	if err := json.Unmarshal(indexJSON, &idx); err != nil {
		return fmt.Errorf("parse index.json: %w", err)
	}
	if len(idx.Manifests) != 1 {
		return fmt.Errorf("index.json has %d manifests", len(idx.Manifests))
	}
	d := idx.Manifests[0]
	mb, err := a.file("blobs/sha256/" + d.Digest.Encoded())
	if err != nil {
		return err
	}
	if digest.FromBytes(mb) != d.Digest || int64(len(mb)) != d.Size {
		return errors.New("index.json: manifest digest or size mismatch")
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return fmt.Errorf("parse image manifest: %w", err)
	}
	if m.Config.Digest.Encoded() != path.Base(a.manifest.Config) || m.Config.Size != int64(len(a.config)) {
		return errors.New("image manifest config descriptor mismatch")
	}
	if len(m.Layers) != len(a.manifest.Layers) {
		return errors.New("image manifest layer count mismatch")
	}
	for i, l := range m.Layers {
		if "blobs/sha256/"+l.Digest.Encoded() != a.manifest.Layers[i] || l.Size != int64(len(a.blobs[i])) {
			return fmt.Errorf("image manifest layer %d mismatch", i)
		}
	}
	lo, err := a.file("oci-layout")
	if err != nil {
		return err
	}
	if string(lo) != `{"imageLayoutVersion":"1.0.0"}` {
		return fmt.Errorf("oci-layout is %s", lo)
	}
	a.index, a.ociMan = &idx, &m
	return nil
}

// decompress returns the uncompressed form of a layer blob, chosen by its
// magic bytes.
func decompress(b []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		r, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	return b, nil
}

// layerEntries reads a layer tar; a truncated layer is reported as such.
func layerEntries(b []byte) ([]*tar.Header, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	var hs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs, nil
		}
		if err == nil {
			_, err = io.Copy(io.Discard, tr)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return hs, fmt.Errorf("layer tar truncated: %w", err)
		}
		if err != nil {
			return hs, err
		}
		hs = append(hs, h)
	}
}
