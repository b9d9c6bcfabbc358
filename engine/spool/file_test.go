package spool

import (
	"io"
	"os"
	"testing"
)

// TestFile: a File reads back what was written, by several readers at
// once, leaves nothing in its directory, and closes its file only when
// the last reference goes.
func TestFile(t *testing.T) {
	dir := t.TempDir()
	f, err := NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the file is visible in its directory: %v", left)
	}
	for _, part := range []string{"hello, ", "world"} {
		if _, err := f.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if f.Size() != 12 {
		t.Errorf("Size %d, want 12", f.Size())
	}
	r1, r2 := f.Open(), f.Open()
	f.Release() // the creator lets go; the readers keep it open
	for i, r := range []*FileReader{r1, r2} {
		b, err := io.ReadAll(r)
		if err != nil || string(b) != "hello, world" {
			t.Errorf("reader %d: %q, %v", i, b, err)
		}
	}
	osf := r2.File()
	r1.Close()
	r1.Close() // harmless
	if _, err := osf.Stat(); err != nil {
		t.Errorf("closed while a reader is open: %v", err)
	}
	r2.Close()
	if _, err := osf.Stat(); err == nil {
		t.Errorf("still open after the last reference went")
	}
}
