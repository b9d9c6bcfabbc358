package tarball

import (
	"context"

	"fmt"
	"github.com/occystrap/occystrap/elements"
	"io"
	"os"
	"strconv"
	"strings"
)

const (
	blockSize  = 512
	recordSize = 20 * blockSize // what Python's tarfile and GNU tar pad to
	copyBuf    = 1 << 20        // large reads keep hashing and syscalls cheap
)

// archive writes a USTAR archive of regular files with fixed, neutral
// headers (mode 0644, uid/gid 0, no user names, mtime 0), as the original
// tool did. Members whose size is unknown in advance are written with a
// placeholder header that is patched once the data is written, so layers
// stream from input to file without a temporary copy.
type archive struct {
	f   *os.File
	off int64
	buf []byte
}

func newArchive(f *os.File) *archive {
	return &archive{f: f, buf: make([]byte, copyBuf)}
}

// add writes a member whose bytes are in memory.
func (a *archive) add(name string, data []byte) error {
	hdr, err := header(name, int64(len(data)))
	if err != nil {
		return err
	}
	if err := a.write(hdr); err != nil {
		return err
	}
	if err := a.write(data); err != nil {
		return err
	}
	return a.pad(int64(len(data)))
}

// addStream writes a member from r, whatever its length, and returns the
// number of bytes written. The member's name is asked for once r is read
// to its end (its header is written then, over a blank block). It checks
// ctx between reads.
func (a *archive) addStream(ctx context.Context, nameOf func() (string, error), r io.Reader) (int64, error) {
	start := a.off
	if err := a.write(make([]byte, blockSize)); err != nil {
		return 0, err
	}
	n, err := elements.CopyContext(ctx, writerFunc(func(b []byte) (int, error) { return len(b), a.write(b) }), r, a.buf)
	if err != nil {
		return n, err
	}
	if err := a.pad(n); err != nil {
		return n, err
	}
	name, err := nameOf()
	if err != nil {
		return n, err
	}
	hdr, err := header(name, n)
	if err != nil {
		return n, err
	}
	if _, err := a.f.WriteAt(hdr, start); err != nil {
		return n, fmt.Errorf("write %s: %w", a.f.Name(), err)
	}
	return n, nil
}

// addRange writes a member whose bytes are a range of another file,
// copying them in the kernel where possible (elements.CopyRange), while
// verify reads the same bytes through their digest check. Both must
// succeed for the member to count.
func (a *archive) addRange(ctx context.Context, name string, src elements.FileRange, verify func() error, progress func(int64)) (int64, error) {
	hdr, err := header(name, src.Length)
	if err != nil {
		return 0, err
	}
	if err := a.write(hdr); err != nil {
		return 0, err
	}
	verified := make(chan error, 1)
	go func() { verified <- verify() }()
	n, err := elements.CopyRange(a.f, a.off, src, func(n int64) error {
		progress(n)
		return ctx.Err()
	})
	a.off += n
	if verr := <-verified; verr != nil {
		return n, verr
	}
	if err != nil {
		return n, err
	}
	return n, a.pad(n)
}

// truncate drops everything from off on (a member written in vain).
func (a *archive) truncate(off int64) error {
	if err := a.f.Truncate(off); err != nil {
		return fmt.Errorf("write %s: %w", a.f.Name(), err)
	}
	a.off = off
	return nil
}

// close writes the end-of-archive marker and pads to a whole record.
func (a *archive) close() error {
	end := a.off + 2*blockSize
	if r := end % recordSize; r != 0 {
		end += recordSize - r
	}
	return a.write(make([]byte, end-a.off))
}

func (a *archive) write(b []byte) error {
	n, err := a.f.WriteAt(b, a.off)
	a.off += int64(n)
	if err != nil {
		return fmt.Errorf("write %s: %w", a.f.Name(), err)
	}
	return nil
}

func (a *archive) pad(n int64) error {
	if r := n % blockSize; r != 0 {
		return a.write(make([]byte, blockSize-r))
	}
	return nil
}

// writerFunc adapts a function to io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// maxOctalSize is the largest size the 11-digit octal field holds; larger
// sizes use the base-256 form that GNU tar, Go and Docker read.
const maxOctalSize = 1<<33 - 1

// header returns the 512-byte USTAR header of a regular file.
func header(name string, size int64) ([]byte, error) {
	h := make([]byte, blockSize)
	prefix := ""
	if len(name) > 100 {
		// Split at a slash so that the prefix (155) and name (100) fit.
		i := strings.LastIndexByte(name[:min(len(name), 156)], '/')
		if i <= 0 || len(name)-i-1 > 100 || i == len(name)-1 {
			return nil, fmt.Errorf("member name %q is too long for a tar header", name)
		}
		prefix, name = name[:i], name[i+1:]
	}
	copy(h[0:100], name)
	octal(h[100:108], 0o644)
	octal(h[108:116], 0)
	octal(h[116:124], 0)
	if size > maxOctalSize {
		h[124] = 0x80
		for i := 135; i > 124 && size > 0; i-- {
			h[i] = byte(size)
			size >>= 8
		}
	} else {
		octal(h[124:136], size)
	}
	octal(h[136:148], 0)
	h[156] = '0'
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	copy(h[345:500], prefix)
	// The checksum is computed with its own field as spaces.
	copy(h[148:156], "        ")
	var sum int64
	for _, b := range h {
		sum += int64(b)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h, nil
}

// octal writes v as zero-padded octal followed by a NUL, filling field.
func octal(field []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	for len(s) < len(field)-1 {
		s = "0" + s
	}
	copy(field, s)
	field[len(field)-1] = 0
}
