package flow

import (
	"context"

	"github.com/occystrap/occystrap/elements"
)

// Map is the loop of a stage that works on several elements at once but
// must keep their order: it receives each element from in, runs job on it
// in its own goroutine (at most window jobs in flight or waiting to be
// sent), and sends the results on out in the order the elements came.
// job owns the element it is given; it returns the element to send, or
// send=false to send nothing for it.
//
// The first error (from a job, a send or ctx) stops everything: jobs see
// their context cancelled, results not yet sent are closed, and Map
// returns that error once every job has returned.
func Map(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element, window int,
	job func(ctx context.Context, el elements.Element) (res elements.Element, send bool, err error)) error {
	type result struct {
		el   elements.Element
		send bool
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ord := NewOrdered(window, func(r result) { r.el.Close() })
	recvErr := make(chan error, 1)
	go func() {
		defer ord.Close()
		for {
			el, ok, err := Recv(ctx, in)
			if err != nil || !ok {
				recvErr <- err
				return
			}
			if err := ord.Submit(ctx, func(ctx context.Context) (result, error) {
				res, send, err := job(ctx, el)
				return result{res, send}, err
			}); err != nil {
				el.Close()
				recvErr <- err
				return
			}
		}
	}()
	for {
		r, ok, err := ord.Next(ctx)
		if err == nil && ok && r.send {
			err = Send(ctx, out, r.el)
		}
		if err != nil {
			cancel()
			ord.Abort()
			<-recvErr
			return err
		}
		if !ok {
			break
		}
	}
	return <-recvErr
}
