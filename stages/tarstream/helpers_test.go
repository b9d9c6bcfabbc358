package tarstream

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pass runs a Rewriter over in, calling fn for each entry (nil: keep
// all), and returns the output, whether it changed, and the error.
func pass(in []byte, fn func(rw *Rewriter, e *Entry) error) ([]byte, bool, error) {
	var out bytes.Buffer
	rw := NewRewriter(bytes.NewReader(in), &out)
	for {
		e, err := rw.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out.Bytes(), rw.Changed(), err
		}
		if fn != nil {
			if err := fn(rw, e); err != nil {
				return out.Bytes(), rw.Changed(), err
			}
		}
	}
	err := rw.Close()
	return out.Bytes(), rw.Changed(), err
}

// entries lists the entries of in as the Rewriter sees them.
func entries(t *testing.T, in []byte) []*Entry {
	t.Helper()
	var es []*Entry
	if _, _, err := pass(in, func(rw *Rewriter, e *Entry) error {
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

// goEntry is an entry as archive/tar reads it, with its data's hash.
type goEntry struct {
	hdr  *tar.Header
	data [32]byte
	size int64
}

// readGo reads in with archive/tar.
func readGo(t *testing.T, in []byte) []goEntry {
	t.Helper()
	var es []goEntry
	tr := tar.NewReader(bytes.NewReader(in))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		hs := sha256.New()
		n, err := io.Copy(hs, tr)
		if err != nil {
			t.Fatalf("archive/tar data of %s: %v", h.Name, err)
		}
		var sum [32]byte
		copy(sum[:], hs.Sum(nil))
		es = append(es, goEntry{hdr: h, data: sum, size: n})
	}
}

// compareWithGo checks that the Rewriter's view of in matches archive/tar's.
func compareWithGo(t *testing.T, in []byte) {
	t.Helper()
	ours := entries(t, in)
	theirs := readGo(t, in)
	if len(ours) != len(theirs) {
		t.Fatalf("%d entries, archive/tar has %d", len(ours), len(theirs))
	}
	for i, e := range ours {
		h := theirs[i].hdr
		if e.Name != h.Name || e.Typeflag != h.Typeflag {
			t.Errorf("entry %d: %q %q, archive/tar %q %q", i, e.Name, e.Typeflag, h.Name, h.Typeflag)
			continue
		}
		if len(e.PAX) != len(h.PAXRecords) || (len(e.PAX) > 0 && !maps.Equal(e.PAX, h.PAXRecords)) {
			t.Errorf("%s: PAX %q, archive/tar %q", e.Name, e.PAX, h.PAXRecords)
		}
		if e.Typeflag == 'g' {
			continue
		}
		if e.Linkname != h.Linkname || e.Size != h.Size || e.Mode != h.Mode ||
			e.Uid != h.Uid || e.Gid != h.Gid || e.Uname != h.Uname || e.Gname != h.Gname ||
			!e.ModTime.Equal(h.ModTime) || e.Devmajor != h.Devmajor || e.Devminor != h.Devminor {
			t.Errorf("%s: got %+v\narchive/tar %+v", e.Name, *e, *h)
		}
	}
}

// normalise sets every entry's time to ts.
func normalise(t *testing.T, in []byte, ts int64) ([]byte, bool) {
	t.Helper()
	out, changed, err := pass(in, func(rw *Rewriter, e *Entry) error {
		e.SetModTime(ts)
		return rw.Keep()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, changed
}

// checkNormalised checks with archive/tar that out has in's entries with
// every time at ts and nothing else changed.
func checkNormalised(t *testing.T, in, out []byte, ts int64) {
	t.Helper()
	before, after := readGo(t, in), readGo(t, out)
	if len(before) != len(after) {
		t.Fatalf("%d entries after normalising, %d before", len(after), len(before))
	}
	// No old time is left anywhere in the bytes: not in any header's time
	// fields (octal), extended headers' own headers included, nor in PAX
	// records.
	for _, b := range before {
		for _, tm := range []time.Time{b.hdr.ModTime, b.hdr.AccessTime, b.hdr.ChangeTime} {
			if sec := tm.Unix(); !tm.IsZero() && sec != ts && sec > 1<<20 && sec < 1<<33 { // small values could be sizes
				if o := fmt.Sprintf("%011o\x00", sec); bytes.Contains(out, []byte(o)) {
					t.Errorf("%s: old time %v left in a header", b.hdr.Name, tm)
				}
			}
		}
		for _, k := range []string{"mtime", "atime", "ctime", "LIBARCHIVE.creationtime"} {
			if v, ok := b.hdr.PAXRecords[k]; ok && v != strconv.FormatInt(ts, 10) &&
				bytes.Contains(out, []byte(" "+k+"="+v+"\n")) {
				t.Errorf("%s: old %s record left", b.hdr.Name, k)
			}
		}
	}
	want := time.Unix(ts, 0)
	for i, a := range after {
		b := before[i]
		h := a.hdr
		if h.Name != b.hdr.Name || h.Typeflag != b.hdr.Typeflag || h.Linkname != b.hdr.Linkname ||
			h.Size != b.hdr.Size || h.Mode != b.hdr.Mode || h.Uid != b.hdr.Uid || h.Gid != b.hdr.Gid ||
			h.Uname != b.hdr.Uname || h.Gname != b.hdr.Gname ||
			h.Devmajor != b.hdr.Devmajor || h.Devminor != b.hdr.Devminor {
			t.Errorf("entry %d changed: %+v\nwas %+v", i, *h, *b.hdr)
		}
		if a.data != b.data || a.size != b.size {
			t.Errorf("%s: data changed", h.Name)
		}
		// Every record but the times is kept: xattrs (SCHILY.xattr.*),
		// ACLs, sparse maps, names, ids...
		for k, v := range b.hdr.PAXRecords {
			switch k {
			case "mtime", "atime", "ctime", "LIBARCHIVE.creationtime":
				continue
			}
			if h.PAXRecords[k] != v {
				t.Errorf("%s: PAX record %s lost or changed", h.Name, k)
			}
		}
		for _, k := range []string{"atime", "ctime", "LIBARCHIVE.creationtime"} {
			if _, ok := h.PAXRecords[k]; ok {
				t.Errorf("%s: PAX %s record left", h.Name, k)
			}
		}
		if v, ok := h.PAXRecords["mtime"]; ok && v != strconv.FormatInt(ts, 10) {
			t.Errorf("%s: PAX mtime %q", h.Name, v)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if !h.ModTime.Equal(want) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, want)
		}
		for _, at := range []time.Time{h.AccessTime, h.ChangeTime} {
			if !at.IsZero() && !at.Equal(want) {
				t.Errorf("%s: atime/ctime %v left", h.Name, at)
			}
		}
	}
}

// gnuTarTimes lists in with GNU tar and checks every member's time is ts.
func gnuTarTimes(t *testing.T, data []byte, ts int64) {
	t.Helper()
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tar", "--full-time", "--numeric-owner", "-tvf", p)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("tar -tvf: %v: %s", err, stderr.String())
	}
	want := time.Unix(ts, 0).UTC().Format("2006-01-02 15:04:05")
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(line, want) {
			t.Errorf("tar -tvf: %q has not %s", line, want)
		}
	}
}

// python returns the python3 interpreter, or skips.
func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	return p
}

// runPython runs a script with args and returns its stdout.
func runPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(python(t), append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v: %s", err, stderr.String())
	}
	return string(out)
}

func isTruncation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "truncated") && errors.Is(err, io.ErrUnexpectedEOF)
}
