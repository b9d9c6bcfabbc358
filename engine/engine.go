// Package engine runs a pipeline: one input, any number of filters and one
// output, each a goroutine stage, joined by bounded channels of elements.
// The first error cancels every stage; every body left in a channel is
// closed; per-stage statistics are kept for a report.
package engine

import (
	"context"
	"fmt"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"golang.org/x/sync/errgroup"
)

// ChannelDepth is the capacity of each channel between stages. One element
// of slack lets a stage hand over an element while its neighbour finishes
// the previous one; more would only hold more open bodies, and memory is
// bounded by the byte budget, not by channel depth.
const ChannelDepth = 1

// Pipeline is one input, its filters in order, and one output.
type Pipeline struct {
	Input       stages.Input
	InputName   string // names for the stats report
	Filters     []stages.Filter
	FilterNames []string
	Output      stages.Output
	OutputName  string

	stats []*flow.Stats
}

// Run runs every stage until the output has consumed the last element or a
// stage fails. It returns the first error. When Run returns, every stage
// goroutine has returned and every body still in a channel has been closed.
func (p *Pipeline) Run(ctx context.Context) error {
	if p.Input == nil || p.Output == nil {
		return fmt.Errorf("pipeline needs an input and an output")
	}
	p.stats = make([]*flow.Stats, 0, len(p.Filters)+2)
	// Each stage cancels the pipeline with its error *before* its output
	// channel is closed, so that a stage downstream that sees the channel
	// close also sees the failure, and never mistakes a failed upstream for
	// a finished one.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g, ctx := errgroup.WithContext(ctx)
	fail := func(err error) error {
		if err != nil {
			cancel(err)
		}
		return err
	}

	stage := func(name string) (context.Context, *flow.Stats) {
		st := &flow.Stats{Name: name}
		p.stats = append(p.stats, st)
		return flow.WithStats(ctx, st), st
	}

	out := make(chan elements.Element, ChannelDepth)
	{
		sctx, st := stage(nameOr(p.InputName, "input"))
		ch := out
		g.Go(func() error {
			st.Begin()
			defer st.Finish()
			defer close(ch)
			return fail(p.Input.Run(sctx, ch))
		})
	}
	for i, f := range p.Filters {
		in := out
		out = make(chan elements.Element, ChannelDepth)
		sctx, st := stage(nameOr(at(p.FilterNames, i), fmt.Sprintf("filter %d", i+1)))
		ch := out
		g.Go(func() error {
			st.Begin()
			defer st.Finish()
			defer close(ch)
			defer flow.Drain(in)
			return fail(f.Run(sctx, in, ch))
		})
	}
	{
		in := out
		sctx, st := stage(nameOr(p.OutputName, "output"))
		g.Go(func() error {
			st.Begin()
			defer st.Finish()
			defer flow.Drain(in)
			return fail(p.Output.Run(sctx, in))
		})
	}
	return g.Wait()
}

// Stats returns a report for each stage of the last Run, in pipeline order.
func (p *Pipeline) Stats() []flow.StageReport {
	reports := make([]flow.StageReport, len(p.stats))
	var in int64
	for i, st := range p.stats {
		reports[i] = st.Report(in)
		in = reports[i].BytesOut
	}
	return reports
}

func nameOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}
