package catalog

import (
	"context"
	"sync"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/check"
	"github.com/occystrap/occystrap/stages/registry"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/uri"
)

// CheckMeta returns what the check command's metadata checks read for a
// source: its manifest and config, and for a tarball the layers its
// manifest.json names (present or not, and their compression). It reads no
// layer beyond its first bytes.
func CheckMeta(ctx context.Context, u uri.URI, env stages.Env) (check.Meta, error) {
	if u.Scheme == "tar" {
		if err := ctx.Err(); err != nil {
			return check.Meta{}, err
		}
		ci, err := tarball.NewInput(u.Path, env).DescribeForCheck()
		if err != nil {
			return check.Meta{}, err
		}
		m := check.Meta{
			Reference: ci.Reference, Manifest: ci.Manifest, Config: ci.Config,
			ConfigName: ci.ConfigName, ConfigMissing: ci.ConfigMissing, ConfigWant: ci.ConfigWant,
			TarLayers: make([]check.TarLayer, len(ci.Layers)),
		}
		for i, l := range ci.Layers {
			m.TarLayers[i] = check.TarLayer{Path: l.Path, Present: l.Present, Size: l.Size, Compression: l.Compression}
		}
		return m, nil
	}
	if u.Scheme == "registry" {
		return registryCheckMeta(ctx, u, env)
	}
	d, err := NewDescriber(u, env)
	if err != nil {
		return check.Meta{}, err
	}
	s, err := d.Describe(ctx)
	if err != nil {
		return check.Meta{}, err
	}
	return check.Meta{Reference: s.Reference, Manifest: s.Manifest, ManifestMediaType: s.ManifestMediaType, Config: s.Config}, nil
}

// registryCheckMeta describes a registry image and asks the registry
// (HEAD, several at a time) whether each layer blob the manifest names
// exists.
func registryCheckMeta(ctx context.Context, u uri.URI, env stages.Env) (check.Meta, error) {
	in, err := inputs["registry"](u, env)
	if err != nil {
		return check.Meta{}, err
	}
	ri := in.(*registry.Input)
	img, err := ri.Describe(ctx)
	if err != nil {
		return check.Meta{}, err
	}
	m := check.Meta{Reference: ri.Reference().Familiar(), Manifest: img.Manifest.Raw,
		ManifestMediaType: img.Manifest.MediaType, Config: img.Config}
	layers := img.Image.Layers
	missing := make([]bool, len(layers))
	errs := make([]error, len(layers))
	sem := make(chan struct{}, max(env.Parallel, 1))
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok, err := ri.Client().HasBlob(ctx, l.Digest)
			missing[i], errs[i] = !ok, err
		}()
	}
	wg.Wait()
	for i := range layers {
		if errs[i] != nil {
			return check.Meta{}, errs[i]
		}
		if missing[i] {
			m.MissingLayers = append(m.MissingLayers, i)
		}
	}
	return m, nil
}
