package search

import (
	"context"
	"fmt"
	"io"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
)

// Discard is an output that writes nothing: it reads every body to its
// end (so that a search filter in front of it sees every layer, and
// digests are checked) and closes it. The search command runs it behind
// the search filter.
type Discard struct{}

// Run consumes every element from in.
func (Discard) Run(ctx context.Context, in <-chan elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if el.Body != nil {
			_, err := io.Copy(io.Discard, el.Body)
			el.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", el, err)
			}
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}
