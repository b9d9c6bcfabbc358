package unpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const (
	rangeBuf = 64 << 10 // ApplyFile's read buffer (headers and small files)
	// kernelCopyMin is the least file size copied with copy_file_range;
	// smaller files are read from the buffer, which usually holds them
	// already, and written.
	kernelCopyMin = rangeBuf
	copyChunk     = 16 << 20 // one copy_file_range call, at most; ctx is checked between
)

// rangeReader reads a byte range of a file through a buffer, and seeks.
// Its position is the count of bytes handed out (plus seeks), whatever it
// has buffered ahead: after archive/tar's Next returns a regular file, the
// position is where the file's data starts, since tar.Reader reads its
// input without buffering and skips data it was not asked for with Seek.
type rangeReader struct {
	f          *os.File
	base, size int64 // the range in f
	pos        int64 // relative to base; may pass size after a Seek
	buf        []byte
	start, end int64 // buf[:end-start] holds the range's bytes [start, end)
}

func (r *rangeReader) reset(f *os.File, off, n int64) {
	r.f, r.base, r.size, r.pos, r.start, r.end = f, off, n, 0, 0, 0
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.pos >= r.start && r.pos < r.end {
		n := copy(p, r.buf[r.pos-r.start:r.end-r.start])
		r.pos += int64(n)
		return n, nil
	}
	dst, direct := r.buf, len(p) >= len(r.buf)
	if direct {
		dst = p // a large read goes straight to the caller
	}
	dst = dst[:min(int64(len(dst)), r.size-r.pos)]
	n, err := r.f.ReadAt(dst, r.base+r.pos)
	if n == 0 {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF // the file is shorter than the range
		}
		return 0, err
	}
	if direct {
		r.pos += int64(n)
		return n, nil
	}
	r.start, r.end = r.pos, r.pos+int64(n)
	c := copy(p, r.buf[:n])
	r.pos += int64(c)
	return c, nil
}

func (r *rangeReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if off < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.pos = off
	return off, nil
}

// errNoKernelCopy says that copy_file_range cannot copy between these
// files; nothing was copied.
var errNoKernelCopy = errors.New("copy_file_range not supported here")

// copyTo copies the next size bytes of the range, from the current
// position, to the file fd (at its offset) in the kernel. It does not move
// the position: the tar reader skips the data afterwards. Nothing is read
// beyond the range: data that would run past it is a truncated layer.
func (r *rangeReader) copyTo(ctx context.Context, fd int, size int64) error {
	if r.pos+size > r.size {
		return io.ErrUnexpectedEOF
	}
	srcOff, end := r.base+r.pos, r.base+r.pos+size
	first := true
	for srcOff < end {
		n, err := unix.CopyFileRange(int(r.f.Fd()), &srcOff, fd, nil, int(min(end-srcOff, copyChunk)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if first && noKernelCopy(err) {
				return errNoKernelCopy
			}
			return fmt.Errorf("copy_file_range: %w", err)
		}
		if n == 0 {
			return io.ErrUnexpectedEOF // the file is shorter than the range
		}
		first = false
		if srcOff < end {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// noKernelCopy reports whether a first copy_file_range error means the
// kernel cannot copy between these files (another file system, an old
// kernel, special files), rather than that the copy failed.
func noKernelCopy(err error) bool {
	switch err {
	case unix.EXDEV, unix.ENOSYS, unix.EINVAL, unix.EOPNOTSUPP, unix.EBADF, unix.EPERM:
		return true
	}
	return false
}
