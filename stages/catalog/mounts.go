package catalog

import (
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/mounts"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	outputs["mounts"] = func(u uri.URI, env stages.Env) (stages.Output, error) {
		return mounts.NewOutput(u.Path, env), nil
	}
	needTar["mounts"] = true
}
