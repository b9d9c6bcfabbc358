package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// viaFile makes applyLayers write each layer into a file, between other
// bytes, and apply it with ApplyFile.
var viaFile bool

// layerFile writes l into a new file after 1000 bytes of other data (so
// that the layer does not start on a block boundary) and before 4 KiB more,
// and returns the file, open, and the layer's offset in it.
func layerFile(t testing.TB, l []byte) (*os.File, int64) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "layer-*.tar")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	pre := bytes.Repeat([]byte{0xaa}, 1000)
	post := bytes.Repeat([]byte{0x55}, 4096)
	for _, b := range [][]byte{pre, l, post} {
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	return f, int64(len(pre))
}

// TestApplyFile runs the layer suites again through ApplyFile.
func TestApplyFile(t *testing.T) {
	viaFile = true
	t.Cleanup(func() { viaFile = false })
	t.Run("Layers", TestLayers)
	t.Run("Hostile", TestHostile)
	t.Run("HardlinkMissingTarget", TestHardlinkMissingTarget)
	t.Run("Owner", TestOwner)
	t.Run("Xattrs", TestXattrs)
	t.Run("Sparse", TestSparse)
}

// randomBody returns n bytes of deterministic noise.
func randomBody(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// bigLayers returns layers whose regular files are mostly large enough to
// be copied in the kernel, behind every kind of extended header.
func bigLayers(t testing.TB) [][]byte {
	t.Helper()
	long := strings.Repeat("long-directory-name/", 6) + "file-with-a-long-name.bin"
	sizes := []int{kernelCopyMin - 1, kernelCopyMin, kernelCopyMin + 1, 200000, 1 << 20, 3<<20 + 7, 5}
	var ents []ent
	ents = append(ents, dir("d/"))
	for i, n := range sizes {
		ents = append(ents, file("d/f"+strconv.Itoa(i), randomBody(n, uint64(i))))
	}
	ents = append(ents,
		file(long, randomBody(300000, 99)), // PAX (long name)
		ent{name: "d/pax", typ: tar.TypeReg, body: randomBody(100000, 98),
			pax: map[string]string{"SCHILY.xattr.user.test": "v"}, atime: defTime.Add(time.Hour)},
		hardlink("d/link", "d/f3"),
		file("d/ts", randomBody(70000, 97)).withTime(defTime.Add(1500*time.Millisecond)),
	)
	l1 := mkLayer(t, ents...)

	// A GNU-format layer: long names as 'L' entries.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	gnu := func(name string, body string) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: int64(len(body)),
			Mode: 0o640, ModTime: defTime, Format: tar.FormatGNU}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	gnu(strings.Repeat("gnu-long-name/", 10)+"x", randomBody(150000, 11))
	gnu("d/f3", randomBody(90000, 12)) // replaces a file with a hard link to it
	gnu("d/f0", "small now")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := buf.Bytes()

	l3 := mkLayer(t, wh("d/.wh.f4"), file("d/f5", randomBody(kernelCopyMin*3, 13)), file("e/new", randomBody(kernelCopyMin, 14)))
	return [][]byte{l1, l2, l3}
}

// tree records every path under root with its type, mode, owner, times,
// link count, content or link target.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		v := ""
		switch {
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			v = string(b)
		case d.Type()&fs.ModeSymlink != 0:
			v, _ = os.Readlink(p)
		}
		mtime, atime := time.Unix(st.Mtim.Unix()), time.Unix(st.Atim.Unix())
		if d.IsDir() && time.Since(mtime) < time.Hour {
			// Implicit directories are made now: their times differ.
			mtime, atime = time.Time{}, time.Time{}
		}
		m[rel] = strings.Join([]string{v, fs.FileMode(st.Mode).String(), strconv.FormatUint(uint64(st.Mode), 8),
			mtime.String(), atime.String(),
			strconv.Itoa(int(st.Nlink)), strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))}, "|")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, got, want map[string]string) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s missing", p)
		case g != w:
			t.Errorf("%s differs:\n got %.200q\nwant %.200q", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s should not be there", p)
		}
	}
}

// TestApplyFileMatchesApply checks that ApplyFile, with and without kernel
// copies, gives exactly the tree Apply gives.
func TestApplyFileMatchesApply(t *testing.T) {
	layers := bigLayers(t)
	_, want := testRoot(t)
	if err := applyLayers(t, want, testOpts(), layers...); err != nil {
		t.Fatal(err)
	}
	wantTree := tree(t, want)
	if len(wantTree) < 15 {
		t.Fatalf("only %d paths in the tree", len(wantTree))
	}
	for _, kernel := range []bool{true, false} {
		t.Run("kernel copy "+strconv.FormatBool(kernel), func(t *testing.T) {
			_, root := testRoot(t)
			u, err := New(root, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			u.noKernelCopy = !kernel
			for i, l := range layers {
				f, off := layerFile(t, l)
				if err := u.ApplyFile(context.Background(), i, f, off, int64(len(l))); err != nil {
					t.Fatal(err)
				}
			}
			if err := u.Finish(); err != nil {
				t.Fatal(err)
			}
			sameTree(t, tree(t, root), wantTree)
		})
	}
}

// TestApplyFileTruncated cuts the range short at every interesting place,
// including inside data that would be copied in the kernel: the layer must
// fail, never read past the range, and say it is truncated.
func TestApplyFileTruncated(t *testing.T) {
	body := randomBody(3*kernelCopyMin, 1)
	l := mkLayer(t, file("a", "x"), file("big", body), file("c", "y"))
	for _, cut := range []int{100, 512, 1024 + 100, 1536, 1536 + 1, 1536 + kernelCopyMin, 1536 + len(body) - 1} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			_, root := testRoot(t)
			u, err := New(root, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			// The bytes after the range are a valid copy of the rest, so
			// that reading past the range would go unnoticed.
			f, off := layerFile(t, l)
			err = u.ApplyFile(context.Background(), 3, f, off, int64(cut))
			if err == nil {
				t.Fatal("truncated layer applied without error")
			}
			if !strings.Contains(err.Error(), "layer 3") || !strings.Contains(err.Error(), "truncated") {
				t.Errorf("err = %v, want layer 3 and truncated in the message", err)
			}
			if b, err := os.ReadFile(filepath.Join(root, "big")); err == nil && len(b) == len(body) {
				t.Errorf("big was written whole from beyond the range")
			}
		})
	}
}

func TestApplyFileCancel(t *testing.T) {
	_, root := testRoot(t)
	u, err := New(root, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	l := mkLayer(t, file("f", randomBody(kernelCopyMin, 1)))
	f, off := layerFile(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := u.ApplyFile(ctx, 0, f, off, int64(len(l))); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	wantGone(t, root, "f")
}

func TestRangeReader(t *testing.T) {
	data := []byte(randomBody(200000, 5))
	f, off := layerFile(t, data)
	r := &rangeReader{buf: make([]byte, 4096)}
	r.reset(f, off, int64(len(data)))
	var got []byte
	for _, n := range []int{1, 511, 4096, 10000, 3, 0, 70000} {
		p := make([]byte, n)
		m, err := io.ReadFull(r, p)
		if err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
		got = append(got, p[:m]...)
		if pos, _ := r.Seek(0, io.SeekCurrent); pos != int64(len(got)) {
			t.Fatalf("position %d after reading %d bytes", pos, len(got))
		}
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatal("content differs")
	}
	if _, err := r.Seek(int64(len(data))-2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[len(data)-2:]) {
		t.Fatalf("end: %q, %v", rest, err)
	}
	if _, err := r.Seek(10, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("read past the end: %d, %v", n, err)
	}
	// A file shorter than the range.
	r.reset(f, off, 1<<30)
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short file: err = %v, want io.ErrUnexpectedEOF", err)
	}
}
