package elements

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// FileRange says where an element's body bytes lie in a file, when they
// are an unmodified byte range of one (a layer inside a tarball). An output
// that wants those exact bytes may copy them in the kernel with CopyRange
// instead of through user space; it must still read the Body to its end,
// because that is what verifies the bytes and releases the file.
//
// A FileRange is valid until the element's Body is closed. A stage that
// changes an element's Body must clear its Source.
type FileRange struct {
	File   *os.File
	Offset int64
	Length int64
}

// maxCopyChunk bounds one copy_file_range call so that cancellation and
// progress are checked between chunks.
const maxCopyChunk = 64 << 20

// CopyRange copies src into dst at dstOff, in the kernel where the file
// systems allow it (copy_file_range, which also lets copy-on-write file
// systems share the blocks), and through a buffer otherwise. It returns the
// number of bytes copied. progress, if not nil, is called after each chunk
// and may stop the copy by returning an error.
func CopyRange(dst *os.File, dstOff int64, src FileRange, progress func(n int64) error) (int64, error) {
	srcOff, end := src.Offset, src.Offset+src.Length
	var done int64
	for srcOff < end {
		n, err := unix.CopyFileRange(int(src.File.Fd()), &srcOff, int(dst.Fd()), &dstOff, int(min(end-srcOff, maxCopyChunk)), 0)
		if err != nil {
			if done == 0 && fallback(err) {
				return copyBuffered(dst, dstOff, src, progress)
			}
			return done, fmt.Errorf("copy %s: %w", src.File.Name(), err)
		}
		if n == 0 {
			return done, fmt.Errorf("copy %s: %w", src.File.Name(), io.ErrUnexpectedEOF)
		}
		done += int64(n)
		if progress != nil {
			if err := progress(int64(n)); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// fallback reports whether copy_file_range cannot work for these files
// (another file system, an old kernel, a special file) rather than failed.
func fallback(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF) || errors.Is(err, unix.EPERM)
}

func copyBuffered(dst *os.File, dstOff int64, src FileRange, progress func(n int64) error) (int64, error) {
	buf := make([]byte, 1<<20)
	r := io.NewSectionReader(src.File, src.Offset, src.Length)
	var done int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := dst.WriteAt(buf[:n], dstOff+done); err != nil {
				return done, err
			}
			done += int64(n)
			if progress != nil {
				if err := progress(int64(n)); err != nil {
					return done, err
				}
			}
		}
		if rerr == io.EOF {
			if done < src.Length {
				return done, fmt.Errorf("copy %s: %w", src.File.Name(), io.ErrUnexpectedEOF)
			}
			return done, nil
		}
		if rerr != nil {
			return done, rerr
		}
	}
}
