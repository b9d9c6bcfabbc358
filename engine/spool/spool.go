// Package spool decouples a producer of bytes from their consumer through
// an unlinked temporary file: the producer writes at its own pace (a
// download runs at network speed whatever the consumer does) while the
// consumer reads what has arrived so far and waits for the rest. Memory use
// is a small buffer whatever the size; disk use is the bytes spooled.
//
// This is what lets an input fetch layers in parallel while its output
// still receives them one at a time, in image order, as streams.
package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// ErrClosed is returned by reads after Close.
var ErrClosed = errors.New("spool: closed")

// Spool is one producer/consumer pair over an unlinked temporary file.
// Fill runs the producer; the value returned by Reader is the consumer.
type Spool struct {
	f *os.File

	mu      sync.Mutex
	cond    *sync.Cond
	written int64 // bytes in the file so far
	done    bool  // the producer finished (err says how)
	err     error // the producer's error, nil on success
	closed  bool  // the consumer closed: the producer must stop

	cancel context.CancelFunc
	ctx    context.Context
}

// New creates a spool file in dir ("" for the system default). The file is
// unlinked at once, so nothing is left on disk whatever happens; it is freed
// when the spool is closed. ctx bounds the producer: cancelling it, or
// closing the reader, stops Fill.
func New(ctx context.Context, dir string) (*Spool, error) {
	f, err := os.CreateTemp(dir, ".occystrap-spool-*")
	if err != nil {
		return nil, fmt.Errorf("create spool file: %w (set --temp-dir to a writable directory)", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink spool file: %w", err)
	}
	s := &Spool{f: f}
	s.cond = sync.NewCond(&s.mu)
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s, nil
}

// Context returns the producer's context: it is done when the spool's
// parent context is, or when the reader is closed. The producer should read
// its source with it.
func (s *Spool) Context() context.Context { return s.ctx }

// Fill copies src into the spool until EOF or an error, then records the
// outcome for the reader: the reader sees src's error (if any) once it has
// read every byte before it. Fill does not close src. It returns the bytes
// copied and src's error.
func (s *Spool) Fill(src io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	var err error
	for {
		if cerr := s.ctx.Err(); cerr != nil {
			err = context.Cause(s.ctx)
			break
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, werr := s.f.WriteAt(buf[:m], n); werr != nil {
				err = fmt.Errorf("write spool file: %w", werr)
				break
			}
			n += int64(m)
			s.mu.Lock()
			s.written = n
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	s.Finish(err)
	return n, err
}

// Finish records that the producer is done; err nil means every byte is in.
// Fill calls it; a producer writing by other means calls it itself.
func (s *Spool) Finish(err error) {
	s.mu.Lock()
	if !s.done {
		s.done, s.err = true, err
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Reader returns the consumer side. It must be closed exactly once; closing
// it stops the producer and frees the file.
func (s *Spool) Reader() io.ReadCloser { return &reader{s: s} }

type reader struct {
	s   *Spool
	off int64
}

// stopWaiting wakes readers blocked in Read when ctx is done.
func (s *Spool) stopWaiting() func() bool {
	return context.AfterFunc(s.ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
}

func (r *reader) Read(p []byte) (int, error) {
	s := r.s
	if len(p) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	var stop func() bool
	for !s.closed && !s.done && s.written <= r.off && s.ctx.Err() == nil {
		if stop == nil {
			stop = s.stopWaiting()
		}
		s.cond.Wait()
	}
	closed, done, written, ferr := s.closed, s.done, s.written, s.err
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	switch {
	case closed:
		return 0, ErrClosed
	case written > r.off:
		// bytes are available: read them before reporting any error
	case done && ferr == nil:
		return 0, io.EOF
	case done:
		return 0, ferr
	default:
		return 0, context.Cause(s.ctx)
	}
	if int64(len(p)) > written-r.off {
		p = p[:written-r.off]
	}
	n, err := s.f.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (r *reader) Close() error {
	s := r.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.cancel()
	return s.f.Close()
}
