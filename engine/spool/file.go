package spool

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// File is a blob kept whole in an unlinked temporary file: appended to by
// one writer until it is sealed, then read any number of times, at once if
// need be (an image may use one layer twice; a registry serves one blob to
// many clients). Unlike Spool, whose consumer reads while the producer
// fills, a File is complete before anyone reads it.
//
// A File is reference counted: NewFile returns it with one reference, the
// creator's; Open and Hold take more; the last Release closes the file.
// Nothing is ever left on disk, whatever happens to the process.
type File struct {
	f    *os.File
	size int64 // bytes appended so far; fixed once sealed
	refs atomic.Int64
}

// NewFile creates an empty File in dir ("" for the system default),
// holding one reference.
func NewFile(dir string) (*File, error) {
	f, err := os.CreateTemp(dir, ".occystrap-blob-*")
	if err != nil {
		return nil, fmt.Errorf("create a temporary file: %w (set --temp-dir to a writable directory)", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink temporary file: %w", err)
	}
	b := &File{f: f}
	b.refs.Store(1)
	return b, nil
}

// Write appends p. Only the creator writes, before anyone reads.
func (b *File) Write(p []byte) (int, error) {
	n, err := b.f.WriteAt(p, b.size)
	b.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("write temporary file: %w", err)
	}
	return n, nil
}

// Size returns the bytes written.
func (b *File) Size() int64 { return b.size }

// OSFile returns the underlying file, for copies in the kernel; it is
// valid while a reference is held.
func (b *File) OSFile() *os.File { return b.f }

// Hold takes one more reference.
func (b *File) Hold() { b.refs.Add(1) }

// Release lets go of one reference; the last one closes the file.
func (b *File) Release() {
	if b.refs.Add(-1) == 0 {
		b.f.Close()
	}
}

// Open returns a reader of the whole File (it also seeks and reads at
// offsets). It holds a reference until it is closed; closing it more than
// once is harmless.
func (b *File) Open() *FileReader {
	b.Hold()
	return &FileReader{SectionReader: io.NewSectionReader(b.f, 0, b.size), b: b}
}

// FileReader reads a File; see File.Open.
type FileReader struct {
	*io.SectionReader
	b    *File
	once sync.Once
}

// File returns the file the reader reads, for copies in the kernel; it is
// valid until the reader is closed.
func (r *FileReader) File() *os.File { return r.b.f }

// Close releases the reader's reference to its File.
func (r *FileReader) Close() error {
	r.once.Do(r.b.Release)
	return nil
}
