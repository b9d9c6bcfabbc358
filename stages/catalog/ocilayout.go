package catalog

import (
	"context"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/info"
	"github.com/occystrap/occystrap/stages/ocilayout"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	inputs["oci-layout"] = func(u uri.URI, env stages.Env) (stages.Input, error) {
		return ocilayout.NewInput(u.Path, u.Options.String("tag", ""), layoutEnv(u, env)), nil
	}
	inputs["oci-archive"] = func(u uri.URI, env stages.Env) (stages.Input, error) {
		return ocilayout.NewArchiveInput(u.Path, u.Options.String("tag", ""), layoutEnv(u, env)), nil
	}
	describers["oci-layout"] = func(u uri.URI, env stages.Env) (info.Describer, error) {
		return layoutDescriber{ocilayout.NewInput(u.Path, u.Options.String("tag", ""), layoutEnv(u, env))}, nil
	}
	describers["oci-archive"] = func(u uri.URI, env stages.Env) (info.Describer, error) {
		return layoutDescriber{ocilayout.NewArchiveInput(u.Path, u.Options.String("tag", ""), layoutEnv(u, env))}, nil
	}
	outputs["oci-layout"] = func(u uri.URI, env stages.Env) (stages.Output, error) {
		return ocilayout.NewOutput(u.Path, u.Options.String("tag", ""), env), nil
	}
	outputs["oci-archive"] = func(u uri.URI, env stages.Env) (stages.Output, error) {
		return ocilayout.NewArchiveOutput(u.Path, u.Options.String("tag", ""), env), nil
	}
}

// layoutEnv applies a layout source's ?os=, ?arch= and ?variant= to the
// platform picked from multi-platform images.
func layoutEnv(u uri.URI, env stages.Env) stages.Env {
	env.Platform.OS = u.Options.String("os", env.Platform.OS)
	env.Platform.Architecture = u.Options.String("arch", env.Platform.Architecture)
	env.Platform.Variant = u.Options.String("variant", env.Platform.Variant)
	return env
}

// layoutDescriber describes an image of an OCI layout from its manifest
// and config.
type layoutDescriber struct{ in *ocilayout.Input }

// Describe reads index.json, the manifest and the config, no layer.
func (d layoutDescriber) Describe(ctx context.Context) (info.Source, error) {
	if err := ctx.Err(); err != nil {
		return info.Source{}, err
	}
	ref, m, mt, md, config, err := d.in.Describe()
	if err != nil {
		return info.Source{}, err
	}
	return info.Source{Reference: ref, Manifest: m, ManifestMediaType: mt, ManifestDigest: md, Config: config}, nil
}
