// Package pipe is a buffered in-memory pipe: what is written to one end is
// read from the other, through a few fixed-size chunks, so that the writer
// and the reader run at the same time instead of taking turns as with
// io.Pipe (whose every Write waits for a Read). Memory is bounded: at most
// depth+1 chunks exist at once, recycled.
//
// It is written here rather than taken from a library because it is a few
// lines of channels, and what matters (a fixed memory bound, chunks
// recycled, the reader's Close stopping a blocked writer) is easy to see
// and test in them.
package pipe

import (
	"io"
	"sync"
)

// New returns the two ends of a pipe of depth chunks of chunkSize bytes.
func New(chunkSize, depth int) (*Reader, *Writer) {
	chunkSize, depth = max(chunkSize, 1), max(depth, 1)
	p := &pipe{
		full:   make(chan []byte, depth),
		free:   make(chan []byte, depth+1),
		closed: make(chan struct{}),
		size:   chunkSize,
	}
	return &Reader{p: p}, &Writer{p: p}
}

type pipe struct {
	full   chan []byte   // chunks written, in order
	free   chan []byte   // chunks read, for reuse
	closed chan struct{} // closed when the reader is closed
	size   int

	mu  sync.Mutex
	err error // the writer's close error, io.EOF for a clean close
}

// Writer is the writing end of a pipe. It is not safe for concurrent use.
type Writer struct {
	p     *pipe
	cur   []byte
	shut  bool
	count int // chunks made so far
}

// Write copies b into the pipe, blocking while every chunk is full. It
// fails with io.ErrClosedPipe once the reader is closed.
func (w *Writer) Write(b []byte) (int, error) {
	if w.shut {
		return 0, io.ErrClosedPipe
	}
	n := 0
	for len(b) > 0 {
		if w.cur == nil {
			if err := w.take(); err != nil {
				return n, err
			}
		}
		k := copy(w.cur[len(w.cur):cap(w.cur)], b)
		w.cur = w.cur[:len(w.cur)+k]
		b, n = b[k:], n+k
		if len(w.cur) == cap(w.cur) {
			if err := w.send(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// take gets an empty chunk: a recycled one, or a new one while fewer than
// depth+1 exist.
func (w *Writer) take() error {
	select {
	case c := <-w.p.free:
		w.cur = c[:0]
		return nil
	default:
	}
	if w.count < cap(w.p.free) {
		w.count++
		w.cur = make([]byte, 0, w.p.size)
		return nil
	}
	select {
	case c := <-w.p.free:
		w.cur = c[:0]
		return nil
	case <-w.p.closed:
		return io.ErrClosedPipe
	}
}

func (w *Writer) send() error {
	select {
	case w.p.full <- w.cur:
		w.cur = nil
		return nil
	case <-w.p.closed:
		return io.ErrClosedPipe
	}
}

// Close flushes what is buffered; the reader sees io.EOF after it.
func (w *Writer) Close() error { return w.CloseWithError(nil) }

// CloseWithError flushes what is buffered and ends the stream: the reader
// gets err (io.EOF if nil) after the last byte. Only the first call counts.
func (w *Writer) CloseWithError(err error) error {
	if w.shut {
		return nil
	}
	w.shut = true
	if err == nil {
		err = io.EOF
	}
	if err == io.EOF && len(w.cur) > 0 {
		if serr := w.send(); serr != nil {
			err = serr
		}
	}
	w.p.mu.Lock()
	w.p.err = err
	w.p.mu.Unlock()
	close(w.p.full)
	return nil
}

// Reader is the reading end of a pipe. It is not safe for concurrent use.
type Reader struct {
	p    *pipe
	cur  []byte // unread part of the current chunk
	buf  []byte // the current chunk, to recycle
	shut bool
}

// Read returns bytes written, in order, blocking until some are; after
// the writer's close it returns its error (io.EOF for a clean close).
func (r *Reader) Read(b []byte) (int, error) {
	if r.shut {
		return 0, io.ErrClosedPipe
	}
	for len(r.cur) == 0 {
		if r.buf != nil {
			r.p.free <- r.buf // never blocks: at most depth+1 chunks exist
			r.buf = nil
		}
		c, ok := <-r.p.full
		if !ok {
			r.p.mu.Lock()
			err := r.p.err
			r.p.mu.Unlock()
			return 0, err
		}
		r.cur, r.buf = c, c
	}
	n := copy(b, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close tells the writer to stop: its blocked and later Writes fail with
// io.ErrClosedPipe.
func (r *Reader) Close() error {
	if !r.shut {
		r.shut = true
		close(r.p.closed)
	}
	return nil
}
