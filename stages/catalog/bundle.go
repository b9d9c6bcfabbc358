package catalog

import (
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/bundle"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	outputs["oci"] = func(u uri.URI, env stages.Env) (stages.Output, error) {
		return bundle.NewOutput(u.Path, env), nil
	}
}
