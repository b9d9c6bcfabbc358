package elements_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/occystrap/occystrap/elements"
)

// shmDir returns a directory on /dev/shm (a tmpfs, normally another file
// system than the test's temporary directory), or skips the test.
func shmDir(t *testing.T) string {
	t.Helper()
	fi, err := os.Stat("/dev/shm")
	if err != nil || !fi.IsDir() {
		t.Skip("/dev/shm is missing")
	}
	d, err := os.MkdirTemp("/dev/shm", "occystrap-test-*")
	if err != nil {
		t.Skipf("/dev/shm is not writable: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeTemp(t *testing.T, dir, name string, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestCopyRange(t *testing.T) {
	tmp := t.TempDir()
	const srcLen = 3<<20 + 12345
	src := randomBytes(srcLen, 1)
	filler := bytes.Repeat([]byte{0xAA}, 4096)
	type dirs struct{ name, src, dst string }
	places := []dirs{{"same file system", tmp, tmp}}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm := shmDir(t)
		places = append(places, dirs{"to /dev/shm", tmp, shm}, dirs{"from /dev/shm", shm, tmp})
	} else {
		t.Log("/dev/shm is missing: only the same-file-system case runs")
	}
	ranges := []struct {
		name           string
		off, len, dOff int64
	}{
		{"whole file at 0", 0, srcLen, 0},
		{"middle at an offset", 1000, 2<<20 + 7, 513},
		{"unaligned small", 4097, 1, 4095},
		{"tail past the filler", srcLen - 5000, 5000, 10000},
		{"empty", 17, 0, 100},
	}
	for _, pl := range places {
		for _, rg := range ranges {
			t.Run(pl.name+"/"+rg.name, func(t *testing.T) {
				sf := writeTemp(t, pl.src, "src-"+rg.name, src)
				df := writeTemp(t, pl.dst, "dst-"+rg.name, filler)
				var progress int64
				calls := 0
				n, err := elements.CopyRange(df, rg.dOff, elements.FileRange{File: sf, Offset: rg.off, Length: rg.len}, func(k int64) error {
					if k <= 0 {
						t.Errorf("progress reported %d bytes", k)
					}
					progress += k
					calls++
					return nil
				})
				if err != nil {
					t.Fatalf("CopyRange: %v", err)
				}
				if n != rg.len {
					t.Errorf("copied %d bytes, want %d", n, rg.len)
				}
				if progress != rg.len {
					t.Errorf("progress summed to %d, want %d", progress, rg.len)
				}
				if rg.len == 0 && calls != 0 {
					t.Errorf("progress called %d times for an empty range", calls)
				}
				got, err := os.ReadFile(df.Name())
				if err != nil {
					t.Fatal(err)
				}
				want := append([]byte{}, filler...)
				if end := rg.dOff + rg.len; int64(len(want)) < end {
					want = append(want, make([]byte, end-int64(len(want)))...)
				}
				copy(want[rg.dOff:], src[rg.off:rg.off+rg.len])
				if !bytes.Equal(got, want) {
					t.Errorf("destination differs from the expected %d bytes (got %d bytes)", len(want), len(got))
				}
			})
		}
	}
}

func TestCopyRangeNilProgress(t *testing.T) {
	tmp := t.TempDir()
	src := randomBytes(100000, 2)
	sf := writeTemp(t, tmp, "src", src)
	df := writeTemp(t, tmp, "dst", nil)
	n, err := elements.CopyRange(df, 0, elements.FileRange{File: sf, Offset: 10, Length: 99990}, nil)
	if err != nil || n != 99990 {
		t.Fatalf("CopyRange = %d, %v", n, err)
	}
	got, _ := os.ReadFile(df.Name())
	if !bytes.Equal(got, src[10:]) {
		t.Error("destination differs from the source range")
	}
}

func TestCopyRangeProgressStops(t *testing.T) {
	tmp := t.TempDir()
	places := []struct{ name, src, dst string }{{"same file system", tmp, tmp}}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		places = append(places, struct{ name, src, dst string }{"to /dev/shm", tmp, shmDir(t)})
	}
	stop := errors.New("stop here")
	const size = 3<<20 + 17 // several chunks of the buffered fallback
	src := randomBytes(size, 3)
	for _, pl := range places {
		t.Run(pl.name, func(t *testing.T) {
			sf := writeTemp(t, pl.src, "src", src)
			df := writeTemp(t, pl.dst, "dst", nil)
			calls := 0
			var reported int64
			n, err := elements.CopyRange(df, 0, elements.FileRange{File: sf, Offset: 0, Length: size}, func(k int64) error {
				calls++
				reported += k
				return stop
			})
			if !errors.Is(err, stop) {
				t.Fatalf("CopyRange error = %v, want the progress error", err)
			}
			if calls != 1 {
				t.Errorf("progress called %d times after returning an error, want 1", calls)
			}
			if n != reported {
				t.Errorf("CopyRange reports %d bytes, progress saw %d", n, reported)
			}
			if n <= 0 || n > size {
				t.Errorf("copied %d bytes", n)
			}
			if pl.src != pl.dst && n >= size {
				t.Errorf("the buffered copy did not stop early: %d of %d bytes", n, size)
			}
		})
	}
}

// TestCopyRangeShortSource: a range that runs past the end of its file
// cannot be copied whole, and CopyRange must say so whichever path it takes.
func TestCopyRangeShortSource(t *testing.T) {
	tmp := t.TempDir()
	places := []struct{ name, src, dst string }{{"same file system", tmp, tmp}}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		places = append(places, struct{ name, src, dst string }{"to /dev/shm", tmp, shmDir(t)})
	}
	src := randomBytes(1000, 4)
	for _, pl := range places {
		t.Run(pl.name, func(t *testing.T) {
			if pl.src != pl.dst {
			}
			sf := writeTemp(t, pl.src, "src", src)
			df := writeTemp(t, pl.dst, "dst", nil)
			n, err := elements.CopyRange(df, 0, elements.FileRange{File: sf, Offset: 500, Length: 1000}, nil)
			if err == nil {
				t.Fatalf("CopyRange of a range past EOF = %d, nil; want an error", n)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", err)
			}
		})
	}
}
