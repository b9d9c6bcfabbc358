// Package catalog maps URI schemes and filter names to the stages that
// implement them. It is the one place where formats are registered, and
// --help is fed from the same table.
package catalog

import (
	"errors"
	"fmt"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/decompress"
	"github.com/occystrap/occystrap/stages/dir"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/uri"
)

// ErrNotImplemented is wrapped by errors for schemes and filters this
// version does not implement yet.
var ErrNotImplemented = errors.New("not implemented yet")

// InputFactory builds an input from a parsed source URI. It validates and
// does no I/O.
type InputFactory func(u uri.URI, env stages.Env) (stages.Input, error)

// OutputFactory builds an output from a parsed destination URI. It
// validates and does no I/O.
type OutputFactory func(u uri.URI, env stages.Env) (stages.Output, error)

// FilterFactory builds a filter from a parsed filter spec.
type FilterFactory func(f uri.Filter, env stages.Env) (stages.Filter, error)

var inputs = map[string]InputFactory{
	"tar": func(u uri.URI, env stages.Env) (stages.Input, error) {
		return tarball.NewInput(u.Path, env), nil
	},
}

var outputs = map[string]OutputFactory{
	"tar": func(u uri.URI, env stages.Env) (stages.Output, error) {
		return tarball.NewOutput(u.Path, env), nil
	},
	"dir": func(u uri.URI, env stages.Env) (stages.Output, error) {
		var opts dir.Options
		var err error
		if opts.UniqueNames, err = u.Options.Bool("unique_names", false); err != nil {
			return nil, err
		}
		if opts.Expand, err = u.Options.Bool("expand", false); err != nil {
			return nil, err
		}
		return dir.NewOutput(u.Path, opts, env), nil
	},
}

var filters = map[string]FilterFactory{}

// needTar lists the outputs that write layers as tar streams: they get the
// decompress stage in front of them, so that compressed layers are
// decompressed several at a time rather than one after another.
var needTar = map[string]bool{"tar": true, "dir": true, "oci": true}

// keepsBlobs lists the outputs that store compressed layers as they come,
// without reading their tar streams.
var keepsBlobs = map[string]bool{"registry": true, "oci-layout": true, "oci-archive": true}

// KeepsCompressed reports whether the destination u stores compressed
// layers as they are (see stages.Env.KeepCompressed).
func KeepsCompressed(u uri.URI) bool { return keepsBlobs[u.Scheme] }

// takesLate lists the outputs that take layers named only at their end
// (elements.Element.Late): the tarball output patches each member's
// header once the member is written.
var takesLate = map[string]bool{"tar": true}

// TakesLateLayers reports whether the output for u takes late layers (see
// stages.Env.LateLayers).
func TakesLateLayers(u uri.URI) bool { return takesLate[u.Scheme] }

// OutputPrelude returns the stage the engine runs just before the output
// for a destination, or nil: for outputs that need tar streams, the
// parallel decompress stage.
func OutputPrelude(u uri.URI, env stages.Env) stages.Filter {
	if !needTar[u.Scheme] {
		return nil
	}
	return decompress.New(env.Parallel, env)
}

// NewInput returns the input for a source URI.
func NewInput(u uri.URI, env stages.Env) (stages.Input, error) {
	f, ok := inputs[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("%s:// as a source is %w in this version of occystrap", u.Scheme, ErrNotImplemented)
	}
	return f(u, env)
}

// NewOutput returns the output for a destination URI.
func NewOutput(u uri.URI, env stages.Env) (stages.Output, error) {
	f, ok := outputs[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("%s:// as a destination is %w in this version of occystrap", u.Scheme, ErrNotImplemented)
	}
	return f(u, env)
}

// NewFilter returns the filter for a filter spec.
func NewFilter(spec uri.Filter, env stages.Env) (stages.Filter, error) {
	f, ok := filters[spec.Name]
	if !ok {
		return nil, fmt.Errorf("filter %s is %w in this version of occystrap", spec.Name, ErrNotImplemented)
	}
	return f(spec, env)
}

// Implemented reports whether a scheme is implemented for a role, for help
// text.
func Implemented(scheme string, role uri.Role) bool {
	if role == uri.Source {
		_, ok := inputs[scheme]
		return ok
	}
	_, ok := outputs[scheme]
	return ok
}

// FilterImplemented reports whether a filter is implemented, for help text.
func FilterImplemented(name string) bool {
	_, ok := filters[name]
	return ok
}
