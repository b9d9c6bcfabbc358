package catalog

import (
	"fmt"
	"strings"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/rewrite"
	"github.com/occystrap/occystrap/stages/tarstream"
	"github.com/occystrap/occystrap/uri"
)

func init() {
	filters["normalize-timestamps"] = func(f uri.Filter, env stages.Env) (stages.Filter, error) {
		ts, err := f.Options.Int("timestamp", 0)
		if err != nil {
			return nil, err
		}
		return rewrite.New(f.Name, rewrite.Normalize{TS: int64(ts)}, env), nil
	}
	filters["exclude"] = func(f uri.Filter, env stages.Env) (stages.Filter, error) {
		var x rewrite.Exclude
		for _, p := range strings.Split(f.Options.String("pattern", ""), ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			m, err := tarstream.CompileGlob(p)
			if err != nil {
				return nil, fmt.Errorf("exclude: bad pattern %q: %w", p, err)
			}
			x.Patterns = append(x.Patterns, m)
		}
		if len(x.Patterns) == 0 {
			return nil, fmt.Errorf("exclude: pattern is empty; give at least one glob, for example -f exclude:pattern=*.pyc")
		}
		return rewrite.New(f.Name, x, env), nil
	}
}
