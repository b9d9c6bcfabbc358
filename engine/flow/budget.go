package flow

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// Budget bounds the bytes held in flight across a pipeline: a stage that
// buffers or prefetches a body reserves its size first and releases it when
// the body is consumed (see WithRelease). Reservations larger than the whole
// budget are clamped to it, so one huge layer waits for the budget to empty
// rather than forever. It is safe for concurrent use.
type Budget struct {
	total int64
	sem   *semaphore.Weighted
}

// NewBudget returns a Budget of total bytes (at least 1).
func NewBudget(total int64) *Budget {
	total = max(total, 1)
	return &Budget{total: total, sem: semaphore.NewWeighted(total)}
}

// Total returns the budget's size in bytes.
func (b *Budget) Total() int64 { return b.total }

// Acquire reserves n bytes (clamped to [1, Total]) and returns the function
// that gives them back; it may be called more than once, only the first call
// counts. Reserve in image order, before dispatching work: reserving inside
// parallel workers can deadlock an ordering barrier.
func (b *Budget) Acquire(ctx context.Context, n int64) (release func(), err error) {
	n = min(max(n, 1), b.total)
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	var done bool
	return func() {
		if !done {
			done = true
			b.sem.Release(n)
		}
	}, nil
}
