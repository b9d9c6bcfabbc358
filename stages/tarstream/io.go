package tarstream

import (
	"io"
)

const (
	inBufSize   = 256 << 10 // input buffer: headers are parsed in it, data is written from it
	outBufSize  = 64 << 10  // output buffer for headers and small files
	directWrite = 16 << 10  // writes at least this large bypass the output buffer
)

// input is a buffered reader that knows its offset and hands out slices of
// its buffer, so that data can be written on without a second copy.
type input struct {
	r      io.Reader
	buf    []byte
	lo, hi int   // buffered bytes are buf[lo:hi]
	off    int64 // input offset of buf[lo]
	err    error // sticky read error, io.EOF at the end of the input
}

func (in *input) buffered() int { return in.hi - in.lo }

// fill reads until at least n bytes (n <= len(buf)) are buffered. It
// returns nil when they are, else the read error (io.EOF at the end).
func (in *input) fill(n int) error {
	if in.hi-in.lo >= n {
		return nil
	}
	if in.lo == in.hi {
		in.lo, in.hi = 0, 0
	} else if len(in.buf)-in.lo < n {
		copy(in.buf, in.buf[in.lo:in.hi])
		in.hi -= in.lo
		in.lo = 0
	}
	empty := 0
	for in.hi-in.lo < n && in.err == nil {
		m, err := in.r.Read(in.buf[in.hi:])
		if m < 0 || m > len(in.buf)-in.hi {
			m, err = 0, io.ErrNoProgress
		}
		in.hi += m
		switch {
		case err != nil:
			in.err = err
		case m == 0:
			if empty++; empty >= 100 {
				in.err = io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
	if in.hi-in.lo >= n {
		return nil
	}
	return in.err
}

// peek returns the next n bytes (n <= len(buf)) without consuming them, or
// what there is with the read error.
func (in *input) peek(n int) ([]byte, error) {
	err := in.fill(n)
	if err != nil {
		return in.buf[in.lo:in.hi], err
	}
	return in.buf[in.lo : in.lo+n], nil
}

// consume drops n buffered bytes.
func (in *input) consume(n int) {
	in.lo += n
	in.off += int64(n)
}

// readFull fills p. At the end of the input it returns how much it read
// and io.EOF (nothing read) or io.ErrUnexpectedEOF.
func (in *input) readFull(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if err := in.fill(1); err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		k := copy(p[n:], in.buf[in.lo:in.hi])
		in.consume(k)
		n += k
	}
	return n, nil
}

// copyN passes n bytes to out (out nil: discards them). At the end of the
// input it returns how much it passed and io.ErrUnexpectedEOF.
func (in *input) copyN(out *output, n int64) (int64, error) {
	var done int64
	for done < n {
		if err := in.fill(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
		k := in.hi - in.lo
		if int64(k) > n-done {
			k = int(n - done)
		}
		if out != nil {
			if err := out.write(in.buf[in.lo : in.lo+k]); err != nil {
				return done, err
			}
		}
		in.consume(k)
		done += int64(k)
	}
	return done, nil
}

// copyAll passes everything left in the input to out.
func (in *input) copyAll(out *output) error {
	for {
		if err := in.fill(1); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := out.write(in.buf[in.lo:in.hi]); err != nil {
			return err
		}
		in.consume(in.hi - in.lo)
	}
}

// output buffers small writes (headers, small files) and writes large ones
// straight through. Its errors are sticky and wrapped as writeError.
type output struct {
	w   io.Writer
	buf []byte
	err error
}

// writeError marks errors from the destination, so that they are not
// reported as problems of the archive.
type writeError struct{ err error }

func (e *writeError) Error() string { return "tarstream: write: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func (o *output) write(p []byte) error {
	if o.err != nil {
		return o.err
	}
	if len(p) >= directWrite {
		if len(o.buf) > 0 && o.flush() != nil {
			return o.err
		}
		o.put(p)
		return o.err
	}
	if len(o.buf)+len(p) > cap(o.buf) && o.flush() != nil {
		return o.err
	}
	o.buf = append(o.buf, p...)
	return nil
}

// zeros writes n zero bytes (n < blockSize).
func (o *output) zeros(n int) error {
	return o.write(zeroBlock[:n])
}

func (o *output) put(p []byte) {
	n, err := o.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		o.err = &writeError{err}
	}
}

// flush writes what is buffered.
func (o *output) flush() error {
	if o.err == nil && len(o.buf) > 0 {
		o.put(o.buf)
		o.buf = o.buf[:0]
	}
	return o.err
}

var zeroBlock [blockSize]byte
