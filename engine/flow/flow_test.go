package flow

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
)

func TestOrderedEmitsInSubmissionOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		jobs   int
		window int
	}{
		{"serial", 50, 1},
		{"window 4", 200, 4},
		{"window larger than jobs", 10, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			o := NewOrdered[int](tc.window, nil)
			var inFlight, maxInFlight atomic.Int64
			go func() {
				defer o.Close()
				for i := range tc.jobs {
					err := o.Submit(ctx, func(context.Context) (int, error) {
						n := inFlight.Add(1)
						for {
							m := maxInFlight.Load()
							if n <= m || maxInFlight.CompareAndSwap(m, n) {
								break
							}
						}
						// Finish in a random order.
						time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
						inFlight.Add(-1)
						return i, nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
			for want := 0; ; want++ {
				v, ok, err := o.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					if want != tc.jobs {
						t.Fatalf("got %d results, want %d", want, tc.jobs)
					}
					break
				}
				if v != want {
					t.Fatalf("result %d is %d: out of order", want, v)
				}
			}
			// The window bounds jobs in flight or waiting to be taken.
			if m := maxInFlight.Load(); m > int64(tc.window) {
				t.Errorf("%d jobs ran at once, window is %d", m, tc.window)
			}
		})
	}
}

func TestOrderedErrorAndAbortDiscards(t *testing.T) {
	ctx := context.Background()
	var discarded atomic.Int64
	o := NewOrdered[int](8, func(int) { discarded.Add(1) })
	boom := errors.New("boom")
	for i := range 8 {
		o.Submit(ctx, func(context.Context) (int, error) {
			if i == 2 {
				return 0, boom
			}
			return i, nil
		})
	}
	o.Close()
	for i := 0; ; i++ {
		_, _, err := o.Next(ctx)
		if err != nil {
			if !errors.Is(err, boom) || i != 2 {
				t.Fatalf("result %d: err %v, want boom at 2", i, err)
			}
			break
		}
	}
	o.Abort()
	if got := discarded.Load(); got != 5 {
		t.Errorf("discarded %d results, want the 5 never taken", got)
	}
}

func TestBudgetBoundsBytesInFlight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		total int64
		sizes []int64
	}{
		{"small reservations", 100, []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}},
		{"one reservation larger than the budget is clamped", 100, []int64{1000, 10, 500, 99}},
		{"zero and negative sizes take one byte", 3, []int64{0, -1, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(tc.total)
			var inUse, peak atomic.Int64
			var wg sync.WaitGroup
			for _, n := range tc.sizes {
				for range 5 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						release, err := b.Acquire(context.Background(), n)
						if err != nil {
							t.Error(err)
							return
						}
						c := min(max(n, 1), tc.total)
						cur := inUse.Add(c)
						for {
							p := peak.Load()
							if cur <= p || peak.CompareAndSwap(p, cur) {
								break
							}
						}
						time.Sleep(50 * time.Microsecond)
						inUse.Add(-c)
						release()
						release() // a second call must not give bytes back twice
					}()
				}
			}
			wg.Wait()
			if p := peak.Load(); p > tc.total {
				t.Errorf("peak %d bytes in flight, budget %d", p, tc.total)
			}
			// Everything was given back: the whole budget can be taken again.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := b.Acquire(ctx, tc.total); err != nil {
				t.Errorf("budget not fully released: %v", err)
			}
		})
	}
}

func TestBudgetAcquireCancelled(t *testing.T) {
	b := NewBudget(10)
	release, _ := b.Acquire(context.Background(), 10)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Acquire(ctx, 1); err == nil {
		t.Fatal("Acquire on a full budget with a cancelled context succeeded")
	}
}

type closeCounter struct {
	io.Reader
	closed atomic.Int64
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

func TestSendClosesBodyWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	body := &closeCounter{Reader: strings.NewReader("x")}
	out := make(chan elements.Element) // nobody receives
	if err := Send(ctx, out, elements.Element{Body: body}); err == nil {
		t.Fatal("Send succeeded on a cancelled context")
	}
	if body.closed.Load() != 1 {
		t.Fatalf("body closed %d times, want 1", body.closed.Load())
	}
}

func TestWithReleaseReleasesOnce(t *testing.T) {
	var n int
	rc := WithRelease(io.NopCloser(strings.NewReader("")), func() { n++ })
	rc.Close()
	rc.Close()
	if n != 1 {
		t.Fatalf("release called %d times, want 1", n)
	}
}

func TestStatsCountElementsAndBytes(t *testing.T) {
	st := &Stats{Name: "s"}
	ctx := WithStats(context.Background(), st)
	st.Begin()
	out := make(chan elements.Element, 1)
	if err := Send(ctx, out, elements.Element{Body: io.NopCloser(strings.NewReader("hello"))}); err != nil {
		t.Fatal(err)
	}
	el := <-out
	io.Copy(io.Discard, el.Body)
	st.Finish()
	r := st.Report(0)
	if r.Sent != 1 || r.BytesOut != 5 {
		t.Fatalf("report %+v: want 1 element and 5 bytes out", r)
	}
}
