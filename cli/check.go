package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/catalog"
	"github.com/occystrap/occystrap/stages/check"
	"github.com/occystrap/occystrap/stages/registry"
	"github.com/occystrap/occystrap/uri"
)

// CheckCmd is `occystrap check SOURCE [--fast]`.
type CheckCmd struct {
	Source string `arg:"" help:"Image to check, as SCHEME://...."`
	Fast   bool   `help:"Check only the manifest and config; download no layer."`
}

// Help shows examples under `occystrap check --help`.
func (c *CheckCmd) Help() string {
	return "Checks that the manifest, config and layers agree (digests, sizes, diff IDs, media types, history), " +
		"and, unless --fast, reads every layer once: well-formed tar, no absolute or escaping paths or links, " +
		"well-formed whiteouts, duplicates. Results go to stdout (-O json: one JSON document); the exit code is 1 " +
		"when an error is found.\n\n" +
		"Examples:\n  occystrap check tar://image.tar\n  occystrap check --fast registry://docker.io/library/busybox:latest\n" +
		"  occystrap -O json check tar://image.tar | jq '.results[] | select(.severity == \"error\")'"
}

// errCheckFailed is returned when the report has errors: exit code 1.
type errCheckFailed int

func (e errCheckFailed) Error() string { return fmt.Sprintf("check found %d error(s)", int(e)) }

// Run checks the source and prints the report.
func (c *CheckCmd) Run(a *app) error {
	src, err := uri.Parse(c.Source, uri.Source)
	if err != nil {
		return usageError{err}
	}
	env := a.env()
	progress := env.Progress
	env.Progress = stages.NoProgress{}
	report := &check.Report{Fast: c.Fast}
	finish := func(err error) {
		if f, ok := progress.(finisher); ok {
			f.finish(err)
		}
	}

	a.log.Debug().Str("source", src.Redacted()).Msg("reading metadata")
	meta, err := catalog.CheckMeta(a.ctx, src, env)
	var de *elements.DigestError
	switch {
	case err == nil:
		report.Reference = meta.Reference
		parsed, err := check.Metadata(meta, report)
		if err != nil {
			finish(errNoProgress)
			return err
		}
		if !c.Fast {
			env.Progress = progress
			err = c.full(a, src, env, report, meta, parsed)
		}
		if c.Fast || err != nil {
			finish(errNoProgress)
		} else {
			finish(nil)
		}
		if err != nil {
			return err
		}
	case errors.As(err, &de):
		// The input verifies the config as it describes the image.
		finish(errNoProgress)
		report.Add(check.Error, "config-digest", "Config digest mismatch: expected %s, got %s", de.Want, de.Got)
	case isNotFound(err) && strings.Contains(err.Error(), "config"):
		finish(errNoProgress)
		report.Add(check.Error, "blob-missing", "%v", err)
	default:
		finish(errNoProgress)
		return err
	}

	if a.g.OutputFormat == "json" {
		err = report.WriteJSON(a.stdout)
	} else {
		err = report.WriteText(a.stdout)
	}
	if err != nil {
		return err
	}
	if n, _ := report.Count(); n > 0 {
		return errCheckFailed(n)
	}
	return nil
}

// full runs the source's input into the check output, which reads every
// layer once. Failures the input reports as digest mismatches become
// findings; so do read failures once the metadata checks have found the
// errors that explain them.
func (c *CheckCmd) full(a *app, src uri.URI, env stages.Env, report *check.Report, meta check.Meta, parsed *check.Parsed) error {
	in, err := catalog.NewInput(src, env)
	if err != nil {
		return err
	}
	p := &engine.Pipeline{Input: in, InputName: "input " + src.Scheme,
		Output: check.NewOutput(report, meta, parsed, env), OutputName: "check"}
	a.log.Info().Str("source", src.Redacted()).Msg("checking")
	err = p.Run(a.ctx)
	if a.g.Stats {
		a.printStats(p.Stats())
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) && a.ctx.Err() != nil {
		return err
	}
	if n, _ := report.Count(); n > 0 {
		// The metadata checks found what makes the input refuse the image.
		a.log.Warn().Err(err).Msg("layers not checked")
		report.Add(check.Info, "full-checks", "Layers were not checked: %v", err)
		return nil
	}
	if isNotFound(err) {
		report.Add(check.Error, "blob-missing", "%v", err)
		return nil
	}
	var de *elements.DigestError
	if errors.As(err, &de) {
		switch {
		case strings.Contains(de.What, "config"):
			report.Add(check.Error, "config-digest", "Config digest mismatch: expected %s, got %s", de.Want, de.Got)
		case strings.Contains(de.What, "diff ID"):
			report.Add(check.Error, "diff-id", "%s mismatch: expected %s, got %s", de.What, de.Want, de.Got)
		default:
			report.Add(check.Error, "layer-digest", "%s: digest mismatch: expected %s, got %s", de.What, de.Want, de.Got)
		}
		return nil
	}
	return err
}

// isNotFound reports a registry's 404 for a blob.
func isNotFound(err error) bool {
	var he *registry.HTTPError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}
