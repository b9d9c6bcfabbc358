package cli

import (
	"errors"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/catalog"
	"github.com/occystrap/occystrap/stages/info"
	"github.com/occystrap/occystrap/uri"
)

// InfoCmd is `occystrap info SOURCE`.
type InfoCmd struct {
	Source string `arg:"" help:"Image to describe, as SCHEME://...."`
}

// Help shows examples under `occystrap info --help`.
func (i *InfoCmd) Help() string {
	return "Reads the manifest and config only, never a layer. With -O json the result is one JSON object.\n\n" +
		"Examples:\n  occystrap info tar://image.tar\n  occystrap -O json info tar://image.tar"
}

// Run describes the source's image on stdout, as text or (-O json) JSON.
func (i *InfoCmd) Run(a *app) error {
	src, err := uri.Parse(i.Source, uri.Source)
	if err != nil {
		return usageError{err}
	}
	env := a.env()
	// Describing reads no layer: no progress bars.
	if f, ok := env.Progress.(finisher); ok {
		f.finish(errNoProgress)
	}
	env.Progress = stages.NoProgress{}
	d, err := catalog.NewDescriber(src, env)
	if err != nil {
		return err
	}
	a.log.Debug().Str("source", src.Redacted()).Msg("describing")
	s, err := d.Describe(a.ctx)
	if err != nil {
		return err
	}
	inf, err := info.Build(s)
	if err != nil {
		return err
	}
	if a.g.OutputFormat == "json" {
		return inf.WriteJSON(a.stdout)
	}
	return inf.WriteText(a.stdout)
}

// errNoProgress stops an unused progress display at once.
var errNoProgress = errors.New("no progress to show")
