package flow

import (
	"context"
	"sync"
)

// Ordered runs jobs concurrently, at most a fixed number at a time, and hands
// back their results in the order the jobs were submitted, whatever order
// they finish in: the ordering barrier of a pipeline (modelled on pgzip's
// queue of result channels).
//
// One goroutine submits and one goroutine (possibly the same) takes results
// with Next. Submit blocks while the window of unfinished-or-untaken jobs is
// full, which is the backpressure. Close the Ordered when no more jobs will
// be submitted.
type Ordered[T any] struct {
	slots   chan struct{} // one per job submitted and not yet taken
	queue   chan chan result[T]
	discard func(T)
	wg      sync.WaitGroup
}

type result[T any] struct {
	v   T
	err error
}

// NewOrdered returns an Ordered that keeps at most window jobs (at least 1)
// in flight or waiting to be taken. discard, if not nil, is called on results
// that are never taken (after a failure or cancellation), so that they can
// release what they hold, such as open bodies.
func NewOrdered[T any](window int, discard func(T)) *Ordered[T] {
	window = max(window, 1)
	return &Ordered[T]{slots: make(chan struct{}, window), queue: make(chan chan result[T], window), discard: discard}
}

// Submit starts fn in its own goroutine once there is room in the window,
// or returns the context's error if ctx is done first.
func (o *Ordered[T]) Submit(ctx context.Context, fn func(context.Context) (T, error)) error {
	select {
	case o.slots <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	ch := make(chan result[T], 1)
	o.queue <- ch // never blocks: the slot guarantees room
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		v, err := fn(ctx)
		ch <- result[T]{v, err}
	}()
	return nil
}

// Close says no more jobs will be submitted; Next returns ok=false once the
// submitted ones are all taken.
func (o *Ordered[T]) Close() { close(o.queue) }

// Next waits for the oldest submitted job and returns its result. ok is false
// when Close was called and every result has been taken. A job's error is
// returned as err; ctx being done returns its error.
func (o *Ordered[T]) Next(ctx context.Context) (v T, ok bool, err error) {
	var ch chan result[T]
	select {
	case ch, ok = <-o.queue:
		if !ok {
			return v, false, nil
		}
	case <-ctx.Done():
		return v, false, context.Cause(ctx)
	}
	select {
	case r := <-ch:
		<-o.slots
		return r.v, true, r.err
	case <-ctx.Done():
		// The job will finish on its own; hand its result to discard.
		go func() {
			if r := <-ch; r.err == nil && o.discard != nil {
				o.discard(r.v)
			}
			<-o.slots
		}()
		return v, false, context.Cause(ctx)
	}
}

// Abort waits for every job still queued, discarding their results. Call it
// after a failure, once nothing more will be submitted (after Close), so that
// no goroutine or result outlives the Ordered. Jobs should watch their
// context so that this returns promptly.
func (o *Ordered[T]) Abort() {
	for ch := range o.queue {
		if r := <-ch; r.err == nil && o.discard != nil {
			o.discard(r.v)
		}
		<-o.slots
	}
	o.wg.Wait()
}
