package cli

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestBarsNeverHang: the terminal progress display returns from finish
// whatever the trackers did: counted fewer or more bytes than announced,
// announced nothing, or never said Done. (mpb waits for every bar, and a
// bar made with a total only completes when its count reaches it.)
func TestBarsNeverHang(t *testing.T) {
	for _, fail := range []bool{false, true} {
		var buf bytes.Buffer
		a := &app{ctx: context.Background(), stderr: &buf, log: zerolog.Nop(), g: &Globals{}, tty: true}
		p := newProgress(a)
		if _, ok := p.(*barProgress); !ok {
			t.Fatalf("newProgress on a terminal gave %T", p)
		}
		short := p.Track("short", 1000) // counts less than announced
		short.Add(10)
		short.Done(nil)
		long := p.Track("long", 10) // counts more
		long.Add(500)
		long.Done(nil)
		unknown := p.Track("unknown", -1)
		unknown.Add(7)
		unknown.Done(nil)
		p.Track("never done", 100).Add(1)
		done := make(chan struct{})
		go func() {
			var err error
			if fail {
				err = context.Canceled
			}
			p.(finisher).finish(err)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("finish(fail=%v) did not return", fail)
		}
	}
}
