package catalog

import (
	"context"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/dir"
	"github.com/occystrap/occystrap/stages/info"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	inputs["dir"] = func(u uri.URI, env stages.Env) (stages.Input, error) {
		return dir.NewInput(u.Path, dirSelection(u), env), nil
	}
	describers["dir"] = func(u uri.URI, env stages.Env) (info.Describer, error) {
		return dirDescriber{dir.NewInput(u.Path, dirSelection(u), env)}, nil
	}
}

// dirSelection is the image a dir:// source's ?image= and ?tag= select.
func dirSelection(u uri.URI) dir.Selection {
	return dir.Selection{Image: u.Options.String("image", ""), Tag: u.Options.String("tag", "")}
}

// dirDescriber describes an image of a dir:// directory: a reference and
// a config, no manifest (as a tarball).
type dirDescriber struct{ in *dir.Input }

// Describe reads catalog.json, the image's manifest file and its config,
// no layer.
func (d dirDescriber) Describe(ctx context.Context) (info.Source, error) {
	img, err := d.in.Describe(ctx)
	if err != nil {
		return info.Source{}, err
	}
	return info.Source{Reference: img.Reference, Config: img.Config}, nil
}
