package registry

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Verify is stages.Verifier: it reads back from the registry what the last
// successful Run pushed. The manifest, fetched by the tag (or digest) it
// was pushed under, must be the one pushed; the config and every layer
// must be there (HEAD) with the manifest's sizes, and the config's diff
// IDs must match the layers in number. With full, every layer is also
// downloaded, checked against its digest, decompressed, read through as a
// tar and checked against its diff ID.
func (o *Output) Verify(ctx context.Context, full bool) (stages.Verified, error) {
	want := o.pushedManifest
	if want.Digest == "" {
		return stages.Verified{}, fmt.Errorf("%w: nothing was pushed", stages.ErrVerify)
	}
	ref := o.ref.Tag
	if ref == "" {
		ref = want.Digest.String()
	}
	m, err := o.client.GetManifest(ctx, ref)
	if err != nil {
		return stages.Verified{}, fmt.Errorf("%w: fetch manifest %s of %s: %v", stages.ErrVerify, ref, o.ref, err)
	}
	if m.Digest != want.Digest {
		return stages.Verified{}, fmt.Errorf("%w: %s is now manifest %s, not the %s pushed (did something else push it meanwhile?)",
			stages.ErrVerify, o.ref, m.Digest, want.Digest)
	}
	man, err := m.Image()
	if err != nil {
		return stages.Verified{}, fmt.Errorf("%w: manifest of %s: %v", stages.ErrVerify, o.ref, err)
	}
	for i, d := range append([]ocispec.Descriptor{man.Config}, man.Layers...) {
		what := "the config"
		if i > 0 {
			what = fmt.Sprintf("layer %d", i-1)
		}
		size, err := o.client.StatBlob(ctx, d.Digest)
		if err != nil {
			return stages.Verified{}, fmt.Errorf("%w: %s (%s) of %s: %v", stages.ErrVerify, what, d.Digest, o.ref, err)
		}
		if size != d.Size {
			return stages.Verified{}, fmt.Errorf("%w: %s (%s) of %s has %d bytes in the registry; the manifest says %d",
				stages.ErrVerify, what, d.Digest, o.ref, size, d.Size)
		}
	}
	diffIDs, err := o.verifyConfig(ctx, man)
	if err != nil {
		return stages.Verified{}, err
	}
	if full {
		for i, d := range man.Layers {
			if err := o.verifyLayer(ctx, i, d, diffIDs[i]); err != nil {
				return stages.Verified{}, err
			}
		}
	}
	return stages.Verified{Layers: len(man.Layers),
		Message: fmt.Sprintf("Image %s verified in registry (%d layers)", o.ref, len(man.Layers))}, nil
}

// verifyConfig downloads the config (checked against its digest) and
// returns its diff IDs, one per layer.
func (o *Output) verifyConfig(ctx context.Context, man ocispec.Manifest) ([]digest.Digest, error) {
	if man.Config.Size > maxManifestSize {
		return nil, fmt.Errorf("%w: the config of %s is %d bytes", stages.ErrVerify, o.ref, man.Config.Size)
	}
	body, err := o.client.OpenBlob(ctx, man.Config)
	if err != nil {
		return nil, fmt.Errorf("%w: config of %s: %v", stages.ErrVerify, o.ref, err)
	}
	data, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: config of %s: %v", stages.ErrVerify, o.ref, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%w: config of %s is not valid JSON: %v", stages.ErrVerify, o.ref, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return nil, fmt.Errorf("%w: %s has %d layers but its config %d diff IDs", stages.ErrVerify, o.ref, len(man.Layers), len(cfg.RootFS.DiffIDs))
	}
	return cfg.RootFS.DiffIDs, nil
}

// verifyLayer downloads layer i and reads it through as a tar, checking
// its digest and diff ID.
func (o *Output) verifyLayer(ctx context.Context, i int, d ocispec.Descriptor, diffID digest.Digest) error {
	body, err := o.client.OpenBlob(ctx, d)
	if err != nil {
		return fmt.Errorf("%w: layer %d of %s: %v", stages.ErrVerify, i, o.ref, err)
	}
	rc, err := elements.OpenTar(elements.Element{Kind: elements.KindLayer, Name: d.Digest.Encoded(), Index: i,
		MediaType: d.MediaType, Digest: d.Digest, DiffID: diffID, Size: d.Size, Body: body})
	if err != nil {
		return fmt.Errorf("%w: layer %d of %s: %v", stages.ErrVerify, i, o.ref, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		if _, err = tr.Next(); err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		_, err = io.Copy(io.Discard, rc) // the padding after the end marker: the diff ID covers it
	}
	if err != nil {
		return fmt.Errorf("%w: layer %d of %s: %v", stages.ErrVerify, i, o.ref, err)
	}
	return nil
}
