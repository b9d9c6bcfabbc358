package catalog

import (
	"context"
	"strings"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/docker"
	"github.com/occystrap/occystrap/stages/info"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	inputs["docker"] = func(u uri.URI, env stages.Env) (stages.Input, error) {
		ref, err := u.Reference()
		if err != nil {
			return nil, err
		}
		return docker.NewInput(ref, dockerSocket(u), env), nil
	}
	describers["docker"] = func(u uri.URI, env stages.Env) (info.Describer, error) {
		ref, err := u.Reference()
		if err != nil {
			return nil, err
		}
		return dockerDescriber{docker.NewInput(ref, dockerSocket(u), env)}, nil
	}
	inputs["dockerpush"] = func(u uri.URI, env stages.Env) (stages.Input, error) {
		ref, err := u.Reference()
		if err != nil {
			return nil, err
		}
		return docker.NewPushInput(ref, dockerSocket(u), env), nil
	}
	describers["dockerpush"] = describers["docker"]
	outputs["docker"] = func(u uri.URI, env stages.Env) (stages.Output, error) {
		var ref *uri.Reference
		if strings.Trim(u.Host+u.Path, "/") != "" {
			r, err := u.Reference()
			if err != nil {
				return nil, err
			}
			ref = &r
		}
		return docker.NewOutput(ref, dockerSocket(u), env)
	}
}

// dockerSocket is the engine's socket from the URI's ?socket=, by default
// Docker's.
func dockerSocket(u uri.URI) string {
	return u.Options.String("socket", docker.DefaultSocket)
}

// dockerDescriber describes an image in a Docker Engine from its inspect
// (no manifest; a config built as the original's get_config did).
type dockerDescriber struct{ in *docker.Input }

// Describe asks the engine; it reads no layer.
func (d dockerDescriber) Describe(ctx context.Context) (info.Source, error) {
	ref, config, err := d.in.Describe(ctx)
	if err != nil {
		return info.Source{}, err
	}
	return info.Source{Reference: ref, Config: config}, nil
}
