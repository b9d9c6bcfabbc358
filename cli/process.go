package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/catalog"
	"github.com/occystrap/occystrap/uri"
)

// ProcessCmd is `occystrap process SOURCE DESTINATION [-f FILTER]...`.
type ProcessCmd struct {
	Source      string   `arg:"" help:"Where the image comes from, as SCHEME://... (schemes listed below)."`
	Destination string   `arg:"" help:"Where the image goes, as SCHEME://...."`
	Filter      []string `short:"f" name:"filter" sep:"none" help:"Filter to apply, as NAME or NAME:key=value[,key=value...]; repeat for a chain, applied in the order given."`
}

// Help lists the schemes and filters under `occystrap process --help`.
func (p *ProcessCmd) Help() string {
	return "Examples:\n  occystrap process tar://image.tar tar://copy.tar\n  occystrap process tar://image.tar \"dir://out?expand=true\"\n\n" + schemesHelp()
}

// Run parses the URIs and filters, builds the pipeline and runs it.
func (p *ProcessCmd) Run(a *app) error {
	return a.process(p.Source, p.Destination, p.Filter)
}

// process runs one pipeline; legacy commands come here too.
func (a *app) process(source, destination string, filterSpecs []string) error {
	src, err := uri.Parse(source, uri.Source)
	if err != nil {
		return usageError{err}
	}
	dst, err := uri.Parse(destination, uri.Dest)
	if err != nil {
		return usageError{err}
	}
	env := a.env()
	p := &engine.Pipeline{InputName: "input " + src.Scheme, OutputName: "output " + dst.Scheme}
	for i, s := range filterSpecs {
		spec, err := uri.ParseFilter(s)
		if err != nil {
			return usageError{err}
		}
		fEnv := env
		fEnv.LateLayers = i == len(filterSpecs)-1 && catalog.TakesLateLayers(dst)
		f, err := catalog.NewFilter(spec, fEnv)
		if err != nil {
			if errors.Is(err, uri.ErrInvalidValue) { // a pattern that does not compile
				return usageError{err}
			}
			return err
		}
		p.Filters = append(p.Filters, f)
		p.FilterNames = append(p.FilterNames, "filter "+spec.Name)
	}
	inEnv := env
	inEnv.KeepCompressed = len(p.Filters) == 0 && catalog.KeepsCompressed(dst)
	if p.Input, err = catalog.NewInput(src, inEnv); err != nil {
		return err
	}
	if p.Output, err = catalog.NewOutput(dst, env); err != nil {
		return err
	}
	preludeEnv := env
	if pi, ok := p.Input.(interface{ Parallel() int }); ok {
		preludeEnv.Parallel = pi.Parallel() // the source's max_workers
	}
	if f := catalog.OutputPrelude(dst, preludeEnv); f != nil {
		p.Filters = append(p.Filters, f)
		p.FilterNames = append(p.FilterNames, "decompress")
	}
	a.log.Info().Str("source", src.Redacted()).Str("destination", dst.Redacted()).Msg("processing")
	start := time.Now()
	err = p.Run(a.ctx)
	if f, ok := env.Progress.(finisher); ok {
		f.finish(err)
	}
	if a.g.Stats {
		a.printStats(p.Stats())
	}
	if err != nil {
		return err
	}
	verified, err := a.verify(p.Output)
	if err != nil {
		return err
	}
	var res stages.Result
	r, hasResult := p.Output.(stages.Resulter)
	if hasResult {
		res = r.Result()
		note := ""
		if verified {
			note = ", verified OK"
		}
		a.log.Info().Msgf("Summary: %d layers, %.1f MB, %.1fs%s", res.Layers, float64(res.Bytes)/1e6, time.Since(start).Seconds(), note)
	}
	if a.g.OutputFormat == "json" {
		out := struct {
			stages.Result
			Seconds  float64 `json:"seconds"`
			Verified bool    `json:"verified"`
		}{res, time.Since(start).Seconds(), verified}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return nil
}

// verify reads back what the output wrote (--verify, on by default;
// --verify-full reads every layer too), when the output can. It reports
// whether it did.
func (a *app) verify(out stages.Output) (bool, error) {
	v, ok := out.(stages.Verifier)
	if !ok || !(a.g.Verify || a.g.VerifyFull) {
		return false, nil
	}
	start := time.Now()
	res, err := v.Verify(a.ctx, a.g.VerifyFull)
	if err != nil {
		return false, fmt.Errorf("%w (the output was written; --no-verify skips this check)", err)
	}
	a.log.Info().Dur("took", time.Since(start).Round(time.Millisecond)).Bool("full", a.g.VerifyFull).Msg(res.Message)
	return true, nil
}

func (a *app) printStats(reports []flow.StageReport) {
	tw := tabwriter.NewWriter(a.stderr, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\telements in\telements out\tbytes in\tbytes out\tbusy\twaiting for input\twaiting for output\t")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.Name, r.Received, r.Sent, r.BytesIn, r.BytesOut,
			r.Busy.Round(time.Millisecond), r.WaitIn.Round(time.Millisecond), r.WaitOut.Round(time.Millisecond))
	}
	tw.Flush()
}

// schemesHelp lists the schemes and filters for --help, marking those this
// version does not implement yet.
func schemesHelp() string {
	var b strings.Builder
	for _, role := range []uri.Role{uri.Source, uri.Dest} {
		if role == uri.Source {
			b.WriteString("Sources:\n")
		} else {
			b.WriteString("Destinations:\n")
		}
		for _, s := range uri.Schemes(role) {
			note := ""
			if !catalog.Implemented(s.Name, role) {
				note = " (not implemented yet)"
			}
			fmt.Fprintf(&b, "  %-36s %s%s\n", s.Form, s.Summary, note)
			for _, o := range s.Options {
				fmt.Fprintf(&b, "      ?%s: %s\n", o.Name, o.Help)
			}
		}
	}
	b.WriteString("Filters (-f):\n")
	for _, f := range uri.Filters() {
		note := ""
		if !catalog.FilterImplemented(f.Name) {
			note = " (not implemented yet)"
		}
		fmt.Fprintf(&b, "  %-36s %s%s\n", f.Form, f.Summary, note)
	}
	return b.String()
}
