package catalog

import (
	"context"
	"fmt"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/info"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/uri"
)

// DescriberFactory builds the describer `info` uses for a parsed source
// URI. It validates and does no I/O.
type DescriberFactory func(u uri.URI, env stages.Env) (info.Describer, error)

// describers maps source schemes to their describers; a scheme missing
// here has no `info` yet.
var describers = map[string]DescriberFactory{
	"tar": func(u uri.URI, env stages.Env) (info.Describer, error) {
		return tarDescriber{tarball.NewInput(u.Path, env)}, nil
	},
}

// NewDescriber returns the describer for a source URI. Errors for schemes
// without one wrap ErrNotImplemented.
func NewDescriber(u uri.URI, env stages.Env) (info.Describer, error) {
	f, ok := describers[u.Scheme]
	if !ok {
		return nil, notImplementedError{fmt.Sprintf("info is not implemented for %s:// sources yet", u.Scheme)}
	}
	return f(u, env)
}

// notImplementedError is an error with its own message that still
// matches errors.Is(err, ErrNotImplemented).
type notImplementedError struct{ msg string }

func (e notImplementedError) Error() string { return e.msg }
func (e notImplementedError) Unwrap() error { return ErrNotImplemented }

// tarDescriber describes a docker-save tarball: a reference and a config,
// no manifest (as the original's tarball input).
type tarDescriber struct{ in *tarball.Input }

// Describe reads the tarball's manifest.json and config, no layer.
func (d tarDescriber) Describe(ctx context.Context) (info.Source, error) {
	if err := ctx.Err(); err != nil {
		return info.Source{}, err
	}
	img, err := d.in.Describe()
	if err != nil {
		return info.Source{}, err
	}
	return info.Source{Reference: img.Reference, Config: img.Config}, nil
}
