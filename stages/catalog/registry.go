package catalog

import (
	"context"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/info"
	"github.com/occystrap/occystrap/stages/registry"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	inputs["registry"] = func(u uri.URI, env stages.Env) (stages.Input, error) {
		ref, copts, err := registrySettings(u, env)
		if err != nil {
			return nil, err
		}
		opts := registry.InputOptions{Platform: env.Platform, Parallel: env.Parallel}
		opts.Platform.OS = u.Options.String("os", opts.Platform.OS)
		opts.Platform.Architecture = u.Options.String("arch", opts.Platform.Architecture)
		opts.Platform.Variant = u.Options.String("variant", opts.Platform.Variant)
		if opts.Parallel, err = u.Options.Int("max_workers", opts.Parallel); err != nil {
			return nil, err
		}
		return registry.NewInput(ref, opts, copts, env), nil
	}
	describers["registry"] = func(u uri.URI, env stages.Env) (info.Describer, error) {
		in, err := inputs["registry"](u, env)
		if err != nil {
			return nil, err
		}
		return registryDescriber{in.(*registry.Input)}, nil
	}
	outputs["registry"] = func(u uri.URI, env stages.Env) (stages.Output, error) {
		ref, copts, err := registrySettings(u, env)
		if err != nil {
			return nil, err
		}
		opts := registry.OutputOptions{Compression: u.Options.String("compression", env.Compression), Parallel: env.Parallel, LayerCache: env.LayerCache}
		if opts.Parallel, err = u.Options.Int("max_workers", opts.Parallel); err != nil {
			return nil, err
		}
		return registry.NewOutput(ref, opts, copts, env)
	}
}

// registrySettings reads what registry inputs and outputs share from a URI:
// the reference, and credentials and --insecure with the URI's options
// overriding the global flags. Credentials in the URI's user info
// (registry://user:pass@host/...) count too.
func registrySettings(u uri.URI, env stages.Env) (uri.Reference, registry.Options, error) {
	ref, err := u.Reference()
	if err != nil {
		return ref, registry.Options{}, err
	}
	copts := registry.Options{Log: env.Log, Username: env.Username, Password: env.Password,
		Insecure: env.Insecure, Retries: env.Retries, Conns: env.Parallel, Limiter: env.Limiter}
	if user, pass, ok := u.Userinfo(); ok {
		copts.Username, copts.Password = user, pass
	}
	copts.Username = u.Options.String("username", copts.Username)
	copts.Password = u.Options.String("password", copts.Password)
	if copts.Insecure, err = u.Options.Bool("insecure", copts.Insecure); err != nil {
		return ref, copts, err
	}
	return ref, copts, nil
}

// registryDescriber describes an image in a registry from its manifest
// (and the index the reference named, if any) and its config.
type registryDescriber struct{ in *registry.Input }

// Describe fetches the manifest, index and config; no layer.
func (d registryDescriber) Describe(ctx context.Context) (info.Source, error) {
	img, err := d.in.Describe(ctx)
	if err != nil {
		return info.Source{}, err
	}
	src := info.Source{
		Reference:         d.in.Reference().Familiar(),
		Manifest:          img.Manifest.Raw,
		ManifestMediaType: img.Manifest.MediaType,
		ManifestDigest:    img.Manifest.Digest,
		Config:            img.Config,
	}
	if img.Index != nil {
		src.Index, src.IndexMediaType, src.IndexDigest = img.Index.Raw, img.Index.MediaType, img.Index.Digest
	}
	return src, nil
}
