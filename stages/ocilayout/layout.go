// Package ocilayout reads and writes OCI image layouts (image-spec
// image-layout.md): a directory holding an oci-layout file, an index.json
// and content-addressed blobs under blobs/sha256/, the format skopeo,
// crane, umoci and BuildKit exchange. Blobs are written as they come: a
// layer keeps its compression and digest unless a filter changed it.
package ocilayout

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxMetadataSize bounds index.json, manifests and configs read whole.
const maxMetadataSize = 16 << 20

// blobPath returns the path of a blob in the layout at root.
func blobPath(root string, d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("invalid digest %q: %w", d, err)
	}
	return filepath.Join(root, "blobs", d.Algorithm().String(), d.Encoded()), nil
}

// readIndex reads the layout's index.json. A missing file is reported with
// os.ErrNotExist wrapped.
func readIndex(root string) (ocispec.Index, error) {
	var ix ocispec.Index
	data, err := readSmall(filepath.Join(root, ocispec.ImageIndexFile))
	if err != nil {
		return ix, err
	}
	if err := json.Unmarshal(data, &ix); err != nil {
		return ix, fmt.Errorf("%s: not a valid OCI index: %w", filepath.Join(root, ocispec.ImageIndexFile), err)
	}
	return ix, nil
}

// readSmall reads a metadata file whole, bounded.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxMetadataSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxMetadataSize)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// readBlob reads a small blob whole and checks its digest.
func readBlob(root string, d ocispec.Descriptor) ([]byte, error) {
	p, err := blobPath(root, d.Digest)
	if err != nil {
		return nil, err
	}
	data, err := readSmall(p)
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(data); got != d.Digest {
		return nil, fmt.Errorf("blob %s: digest mismatch: the content does not match its digest (it is %s)", d.Digest, got)
	}
	return data, nil
}

// tagOf returns the tag part of an image reference ("" if none).
func tagOf(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.ContainsRune(ref[i:], '/') {
		return ""
	}
	return ref[i+1:]
}
