package catalog

import (
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/inspect"
	"github.com/occystrap/occystrap/stages/search"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	filters["search"] = func(f uri.Filter, env stages.Env) (stages.Filter, error) {
		return search.FromSpec(f, env)
	}
	filters["inspect"] = func(f uri.Filter, env stages.Env) (stages.Filter, error) {
		return inspect.FromSpec(f, env)
	}
}
