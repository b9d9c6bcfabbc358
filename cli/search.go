package cli

import (
	"errors"

	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/catalog"
	"github.com/occystrap/occystrap/stages/search"
	"github.com/occystrap/occystrap/uri"
)

// SearchCmd is `occystrap search SOURCE PATTERN`.
type SearchCmd struct {
	Source         string `arg:"" help:"Image to search, as SCHEME://...."`
	Pattern        string `arg:"" help:"Glob (or regular expression with --regex) matched against each file's path and base name."`
	Regex          bool   `help:"Treat PATTERN as a regular expression."`
	ScriptFriendly bool   `help:"Print one IMAGE:TAG:LAYER:PATH line per match."`
}

// Help shows examples under `occystrap search --help`.
func (s *SearchCmd) Help() string {
	return "Reads every layer and lists the files whose path, or base name, matches PATTERN: a glob as Python's fnmatch " +
		"reads it (* also matches /), or with --regex a regular expression searched anywhere in the path. " +
		"Results go to stdout (-O json: one JSON document).\n\n" +
		"Examples:\n  occystrap search tar://image.tar '*.so'\n" +
		"  occystrap search --regex registry://docker.io/library/busybox:latest '^bin/.*sh$'\n" +
		"  occystrap search --script-friendly tar://image.tar 'passwd'"
}

// Run searches the source's layers: the source's input, the search
// filter, and an output that writes nothing.
func (s *SearchCmd) Run(a *app) error {
	src, err := uri.Parse(s.Source, uri.Source)
	if err != nil {
		return usageError{err}
	}
	env := a.env()
	f, err := search.New(search.Options{Pattern: s.Pattern, Regex: s.Regex, ScriptFriendly: s.ScriptFriendly}, env)
	if err != nil {
		if errors.Is(err, uri.ErrInvalidValue) || errors.Is(err, uri.ErrMissingOption) {
			return usageError{err}
		}
		return err
	}
	p := &engine.Pipeline{InputName: "input " + src.Scheme, Filters: []stages.Filter{f}, FilterNames: []string{"search"},
		Output: search.Discard{}, OutputName: "discard"}
	if p.Input, err = catalog.NewInput(src, env); err != nil {
		return err
	}
	a.log.Info().Str("source", src.Redacted()).Msg("searching")
	err = p.Run(a.ctx)
	if fin, ok := env.Progress.(finisher); ok {
		fin.finish(err)
	}
	if a.g.Stats {
		a.printStats(p.Stats())
	}
	return err
}
