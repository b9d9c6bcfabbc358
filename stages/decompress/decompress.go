// Package decompress is the stage that turns compressed layers into tar
// streams ahead of an output that needs them (tarballs, directories), a
// few layers at a time in parallel. gzip and zstd streams cannot be split,
// so one layer decompresses on one core; an output that did it itself
// would decompress one layer after another. This stage decompresses up to
// N layers at once, each into a spool file (see engine/spool) that the
// output reads as it fills, and hands the layers on in image order.
//
// Layers that are already uncompressed, and every other element, pass
// through untouched (keeping their file ranges for kernel copies). The
// catalog puts this stage in front of the outputs that need tar streams;
// outputs that keep compressed bytes (a registry push) do not get it.
package decompress

import (
	"context"
	"fmt"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/engine/spool"
	"github.com/occystrap/occystrap/stages"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"
)

// Stage decompresses layers ahead of the next stage.
type Stage struct {
	parallel int
	tempDir  string
	log      zerolog.Logger
}

// New returns the stage, decompressing up to parallel layers at once and
// spooling into tempDir ("" for the system default).
func New(parallel int, env stages.Env) *Stage {
	return &Stage{parallel: max(parallel, 1), tempDir: env.TempDir, log: env.Log}
}

// Run passes elements from in to out in order, with compressed layers
// replaced by their verified tar streams.
func (s *Stage) Run(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element) error {
	pipelineCtx := ctx // spools outlive Run: the output reads the last ones after it
	busy := semaphore.NewWeighted(int64(s.parallel))
	return flow.Map(ctx, in, out, 2*s.parallel, func(ctx context.Context, el elements.Element) (elements.Element, bool, error) {
		res, err := s.start(ctx, pipelineCtx, busy, el)
		return res, true, err
	})
}

// start begins decompressing el into a spool (if it is a compressed layer)
// and returns the element that reads it.
func (s *Stage) start(ctx, pipelineCtx context.Context, busy *semaphore.Weighted, el elements.Element) (elements.Element, error) {
	if el.Kind != elements.KindLayer || el.Body == nil || elements.CompressionOf(el.MediaType) == elements.None {
		return el, nil
	}
	if err := busy.Acquire(ctx, 1); err != nil {
		el.Close()
		return elements.Element{}, context.Cause(ctx)
	}
	sp, err := spool.New(pipelineCtx, s.tempDir)
	if err != nil {
		busy.Release(1)
		el.Close()
		return elements.Element{}, err
	}
	tarStream, err := elements.OpenTar(el) // verifies the diff ID, owns the body
	if err != nil {
		busy.Release(1)
		sp.Finish(err)
		sp.Reader().Close()
		return elements.Element{}, err
	}
	go func() {
		defer busy.Release(1)
		defer tarStream.Close()
		// Fill stops at its next read once the reader is closed or the
		// pipeline cancelled; the source's own reads wake on cancellation.
		if _, err := sp.Fill(tarStream); err != nil && sp.Context().Err() == nil {
			s.log.Debug().Err(err).Str("layer", el.Name).Msg("decompressing failed")
		}
	}()
	out := el
	out.Body = sp.Reader()
	out.MediaType = elements.LayerMediaType(elements.None)
	out.Size = -1
	out.Source = nil
	if el.DiffID != "" {
		out.Digest = el.DiffID // verified on the way into the spool
	} else {
		out.Digest = ""
	}
	return out, nil
}

// String names the stage in statistics.
func (s *Stage) String() string { return fmt.Sprintf("decompress (%d at a time)", s.parallel) }
