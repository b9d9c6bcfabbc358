// Package staging makes outputs all-or-nothing: a file or directory is
// written under a temporary name beside its destination and renamed into
// place only when the whole of it is written. Abort removes the temporary.
package staging

import (
	"fmt"
	"os"
	"path/filepath"
)

// File is an *os.File being written under a temporary name.
type File struct {
	*os.File
	dest string
	done bool
}

// NewFile creates a temporary file in the directory of dest (which must
// exist), so that Commit can rename it atomically.
func NewFile(dest string) (*File, error) {
	dir, base := filepath.Split(dest)
	if base == "" {
		return nil, fmt.Errorf("%q names a directory, not a file", dest)
	}
	if dir == "" {
		dir = "."
	}
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory: give a file name for the tarball", dest)
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	return &File{File: f, dest: dest}, nil
}

// Commit closes the file, gives it mode 0644 (less the umask is not applied:
// the tarball is data) and renames it to its destination.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("commit %s: already finished", f.dest)
	}
	f.done = true
	if err := f.File.Chmod(0o644); err != nil {
		f.File.Close()
		os.Remove(f.Name())
		return fmt.Errorf("commit %s: %w", f.dest, err)
	}
	if err := f.File.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("commit %s: %w", f.dest, err)
	}
	if err := os.Rename(f.Name(), f.dest); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("commit %s: %w", f.dest, err)
	}
	return nil
}

// Abort closes and removes the temporary file unless Commit already ran.
// It is safe to defer.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.Name())
}
