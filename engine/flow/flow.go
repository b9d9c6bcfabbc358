// Package flow holds the concurrency primitives every stage uses: Send and
// Recv over element channels (cancellable, counted in the stage's Stats), an
// ordering barrier (Ordered) that emits parallel results in submission order,
// and a byte Budget that bounds the bytes in flight.
package flow

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/occystrap/occystrap/elements"
)

// Send sends el on out, or gives up when ctx is done. Send always takes
// ownership of el: if it cannot send, it closes el's Body and returns the
// context's error. The time spent blocked and the element are counted in the
// Stats that ctx carries, if any.
func Send(ctx context.Context, out chan<- elements.Element, el elements.Element) error {
	st := StatsFrom(ctx)
	if st != nil && el.Body != nil {
		el.Body = &countingBody{rc: el.Body, n: &st.bytesOut}
	}
	start := time.Now()
	select {
	case out <- el:
		if st != nil {
			st.waitOut.Add(int64(time.Since(start)))
			st.sent.Add(1)
		}
		return nil
	case <-ctx.Done():
		el.Close()
		return context.Cause(ctx)
	}
}

// Recv receives the next element from in. ok is false when in is closed and
// drained. err is set when ctx is done first. Blocked time is counted in the
// Stats that ctx carries, if any.
func Recv(ctx context.Context, in <-chan elements.Element) (el elements.Element, ok bool, err error) {
	st := StatsFrom(ctx)
	start := time.Now()
	select {
	case el, ok = <-in:
		if st != nil {
			st.waitIn.Add(int64(time.Since(start)))
			if ok {
				st.received.Add(1)
			}
		}
		return el, ok, nil
	case <-ctx.Done():
		return elements.Element{}, false, context.Cause(ctx)
	}
}

// Drain closes the body of every element left in in until it is closed.
// The engine calls it after a stage returns so that senders upstream are
// never left blocked and no body is left open.
func Drain(in <-chan elements.Element) {
	for el := range in {
		el.Close()
	}
}

// WithRelease returns rc wrapped so that release is called exactly once,
// when the body is closed. It is how budget reservations follow a body to
// whichever stage finally consumes it.
func WithRelease(rc io.ReadCloser, release func()) io.ReadCloser {
	return &releasingBody{ReadCloser: rc, release: release}
}

type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (r *releasingBody) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(r.release)
	return err
}
