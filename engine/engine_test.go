package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
)

// bodies counts opens and closes of element bodies.
type bodies struct{ opened, closed atomic.Int64 }

type body struct {
	io.Reader
	b    *bodies
	done atomic.Bool
}

func (b *bodies) new(s string) io.ReadCloser {
	b.opened.Add(1)
	return &body{Reader: strings.NewReader(s), b: b}
}

func (x *body) Close() error {
	if x.done.Swap(true) {
		panic("body closed twice")
	}
	x.b.closed.Add(1)
	return nil
}

// input sends n layers, or fails after failAt of them.
type input struct {
	b      *bodies
	n      int
	failAt int
}

func (in *input) Run(ctx context.Context, out chan<- elements.Element) error {
	for i := range in.n {
		if i == in.failAt {
			return errors.New("input failed")
		}
		if err := flow.Send(ctx, out, elements.Element{Kind: elements.KindLayer, Index: i, Body: in.b.new(fmt.Sprint(i))}); err != nil {
			return err
		}
	}
	return nil
}

// passFilter passes elements on, or fails on element failAt.
type passFilter struct{ failAt int }

func (f *passFilter) Run(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil || !ok {
			return err
		}
		if el.Index == f.failAt {
			el.Close()
			return errors.New("filter failed")
		}
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
}

// output reads every body, fails at failAt, or stops early at stopAt
// without error (leaving the engine to drain the rest).
type output struct {
	failAt, stopAt int
	got            []int
}

func (o *output) Run(ctx context.Context, in <-chan elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil || !ok {
			return err
		}
		if el.Index == o.stopAt {
			el.Close()
			return nil
		}
		io.Copy(io.Discard, el.Body)
		el.Close()
		if el.Index == o.failAt {
			return errors.New("output failed")
		}
		o.got = append(o.got, el.Index)
	}
}

func TestPipelineClosesEveryBody(t *testing.T) {
	const n = 100
	for _, tc := range []struct {
		name                                 string
		inFail, filterFail, outFail, outStop int
		wantErr                              string
	}{
		{"success", -1, -1, -1, -1, ""},
		{"input fails", 40, -1, -1, -1, "input failed"},
		{"filter fails", -1, 10, -1, -1, "filter failed"},
		{"output fails", -1, -1, 5, -1, "output failed"},
		{"output stops early", -1, -1, -1, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			var b bodies
			out := &output{failAt: tc.outFail, stopAt: tc.outStop}
			p := &Pipeline{
				Input:   &input{b: &b, n: n, failAt: tc.inFail},
				Filters: []stages.Filter{&passFilter{failAt: tc.filterFail}, &passFilter{failAt: -1}},
				Output:  out,
			}
			err := p.Run(context.Background())
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
				t.Fatalf("Run: %v, want %q", err, tc.wantErr)
			}
			if o, c := b.opened.Load(), b.closed.Load(); o != c {
				t.Fatalf("%d bodies opened, %d closed", o, c)
			}
			if tc.wantErr == "" && tc.outStop < 0 && len(out.got) != n {
				t.Fatalf("output got %d elements, want %d", len(out.got), n)
			}
			for i, v := range out.got {
				if v != i {
					t.Fatalf("element %d arrived as %d: out of order", i, v)
				}
			}
			// Every stage goroutine has returned.
			deadline := time.Now().Add(2 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if g := runtime.NumGoroutine(); g > before {
				t.Fatalf("%d goroutines left running (was %d)", g, before)
			}
			if tc.wantErr == "" {
				st := p.Stats()
				if len(st) != 4 {
					t.Fatalf("%d stage reports, want 4", len(st))
				}
			}
		})
	}
}

func TestPipelineCancelled(t *testing.T) {
	var b bodies
	ctx, cancel := context.WithCancel(context.Background())
	blocking := outputFunc(func(ctx context.Context, in <-chan elements.Element) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	})
	p := &Pipeline{Input: &input{b: &b, n: 1000, failAt: -1}, Output: blocking}
	if err := p.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if o, c := b.opened.Load(), b.closed.Load(); o != c {
		t.Fatalf("%d bodies opened, %d closed", o, c)
	}
}

type outputFunc func(ctx context.Context, in <-chan elements.Element) error

func (f outputFunc) Run(ctx context.Context, in <-chan elements.Element) error { return f(ctx, in) }
