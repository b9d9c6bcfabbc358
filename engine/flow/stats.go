package flow

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// Stats counts what one stage did: elements received and sent, body bytes
// sent downstream (counted as the next stage reads them), and the time the
// stage spent blocked waiting for input and for room downstream. It is safe
// for concurrent use.
type Stats struct {
	Name     string
	received atomic.Int64
	sent     atomic.Int64
	bytesOut atomic.Int64
	waitIn   atomic.Int64 // nanoseconds
	waitOut  atomic.Int64 // nanoseconds
	start    atomic.Int64 // unix nanoseconds
	end      atomic.Int64 // unix nanoseconds
}

// StageReport is a snapshot of a stage's Stats.
type StageReport struct {
	Name     string        `json:"name"`
	Received int64         `json:"elements_in"`
	Sent     int64         `json:"elements_out"`
	BytesIn  int64         `json:"bytes_in"`
	BytesOut int64         `json:"bytes_out"`
	Wall     time.Duration `json:"wall_ns"`
	Busy     time.Duration `json:"busy_ns"`
	WaitIn   time.Duration `json:"wait_in_ns"`
	WaitOut  time.Duration `json:"wait_out_ns"`
}

// Begin marks the stage as started.
func (s *Stats) Begin() { s.start.Store(time.Now().UnixNano()) }

// Finish marks the stage as finished.
func (s *Stats) Finish() { s.end.Store(time.Now().UnixNano()) }

// AddBytesOut counts n body bytes sent by a stage that does not use Send's
// counting (for example an output writing to its destination).
func (s *Stats) AddBytesOut(n int64) { s.bytesOut.Add(n) }

// Report returns a snapshot. bytesIn is the bytes the previous stage sent,
// which the caller knows; this stage's own counter holds its bytes out.
func (s *Stats) Report(bytesIn int64) StageReport {
	r := StageReport{
		Name:     s.Name,
		Received: s.received.Load(),
		Sent:     s.sent.Load(),
		BytesIn:  bytesIn,
		BytesOut: s.bytesOut.Load(),
		WaitIn:   time.Duration(s.waitIn.Load()),
		WaitOut:  time.Duration(s.waitOut.Load()),
	}
	if st, en := s.start.Load(), s.end.Load(); st != 0 {
		if en == 0 {
			en = time.Now().UnixNano()
		}
		r.Wall = time.Duration(en - st)
	}
	r.Busy = max(r.Wall-r.WaitIn-r.WaitOut, 0)
	return r
}

type statsKey struct{}

// WithStats returns a context carrying s, which Send and Recv update.
func WithStats(ctx context.Context, s *Stats) context.Context {
	return context.WithValue(ctx, statsKey{}, s)
}

// StatsFrom returns the Stats ctx carries, or nil.
func StatsFrom(ctx context.Context) *Stats {
	s, _ := ctx.Value(statsKey{}).(*Stats)
	return s
}

type countingBody struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingBody) Close() error { return c.rc.Close() }
