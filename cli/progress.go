package cli

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/occystrap/occystrap/stages"
	"github.com/rs/zerolog"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// logInterval is how often progress is logged when stderr is not a
// terminal: often enough to show life in CI logs, rarely enough not to
// flood them.
const logInterval = 10 * time.Second

// newProgress returns bars on a terminal and periodic log lines elsewhere.
func newProgress(a *app) stages.Progress {
	if a.tty && !a.g.Debug {
		ctx, cancel := context.WithCancel(a.ctx)
		return &barProgress{p: mpb.NewWithContext(ctx, mpb.WithOutput(a.stderr), mpb.WithWidth(40), mpb.WithAutoRefresh()), cancel: cancel}
	}
	return &logProgress{log: a.log}
}

// finisher is implemented by progress displays that must be stopped.
type finisher interface {
	finish(err error)
}

// barProgress draws one mpb bar per piece of work, and a bar for all of
// them together at the bottom once there is more than one.
type barProgress struct {
	p      *mpb.Progress
	cancel func()

	mu      sync.Mutex
	count   int
	overall *mpb.Bar
	total   int64 // sum of the known totals
	unknown bool  // some piece of work has no known total
	bars    []*mpb.Bar
}

// finish waits for the bars to be drawn to the end; after a failure it
// cancels them first, since Wait would otherwise block on unfinished bars.
func (b *barProgress) finish(err error) {
	b.mu.Lock()
	// A stage that never ended its piece of work (a body closed unread)
	// must not keep Wait from returning: drop its bar. Abort does nothing
	// to bars already complete.
	for _, bar := range b.bars {
		bar.Abort(true)
	}
	if b.overall != nil {
		if err == nil {
			b.overall.SetTotal(-1, true) // complete at whatever was counted
		} else {
			b.overall.Abort(false)
		}
	}
	b.mu.Unlock()
	if err != nil {
		b.cancel()
	}
	b.p.Wait()
	b.cancel()
}

func (b *barProgress) Track(name string, total int64) stages.Tracker {
	if len(name) > 16 {
		name = name[:16]
	}
	// Bars are made with no total and given it afterwards: mpb completes a
	// bar made with a total only when its count reaches that total, and
	// then ignores SetTotal, so a piece of work that counts a different
	// number of bytes than announced (a compressed size announced, the
	// tar stream counted) would keep Wait from ever returning.
	bar := b.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.OnComplete(decor.Name(""), " done")),
		mpb.BarRemoveOnComplete(),
	)
	if total > 0 {
		bar.SetTotal(total, false)
	}
	b.mu.Lock()
	b.bars = append(b.bars, bar)
	b.mu.Unlock()
	return &barTracker{bar: bar, total: total, all: b.track(total)}
}

// track counts one more piece of work in the overall bar, which it creates
// for the second piece.
func (b *barProgress) track(total int64) *barProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count++
	if total > 0 {
		b.total += total
	} else {
		b.unknown = true
	}
	if b.count == 2 && b.overall == nil {
		b.overall = b.p.AddBar(0,
			mpb.BarPriority(1<<30), // always the last line
			mpb.PrependDecorators(decor.Name("total", decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
			mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f")),
		)
		b.overall.SetTotal(b.total, false)
	} else if b.overall != nil && total > 0 {
		b.overall.SetTotal(b.total, false)
	}
	return b
}

// add counts bytes done in the overall bar.
func (b *barProgress) add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overall == nil {
		return
	}
	if b.unknown && b.overall.Current()+n >= b.total {
		b.total = b.overall.Current() + n + 1
		b.overall.SetTotal(b.total, false)
	}
	b.overall.IncrInt64(n)
}

type barTracker struct {
	bar   *mpb.Bar
	total int64
	n     int64
	all   *barProgress
}

func (t *barTracker) Add(n int64) {
	t.n += n
	if t.total <= 0 {
		t.bar.SetTotal(t.n+1, false)
	}
	t.bar.IncrInt64(n)
	t.all.add(n)
}

func (t *barTracker) Done(err error) {
	if err != nil {
		t.bar.Abort(true)
		return
	}
	t.bar.SetTotal(t.n, true)
}

// logProgress logs each piece of work's progress every logInterval.
type logProgress struct {
	log zerolog.Logger
}

func (l *logProgress) Track(name string, total int64) stages.Tracker {
	t := &logTracker{name: name, total: total, log: l.log}
	ctx, cancel := context.WithCancel(context.Background())
	t.stop = cancel
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(logInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				ev := t.log.Info().Str("item", t.name).Int64("bytes", t.n.Load())
				if t.total > 0 {
					ev = ev.Int64("of", t.total).Int64("percent", 100*t.n.Load()/t.total)
				}
				ev.Msg("in progress")
			}
		}
	}()
	return t
}

type logTracker struct {
	name  string
	total int64
	n     atomic.Int64
	log   zerolog.Logger
	stop  func()
	wg    sync.WaitGroup
}

func (t *logTracker) Add(n int64) { t.n.Add(n) }

func (t *logTracker) Done(error) {
	t.stop()
	t.wg.Wait()
}
