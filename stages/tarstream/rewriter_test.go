package tarstream

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestKeepAllIsIdentity(t *testing.T) {
	archives := allArchives(t)
	for _, name := range sortedKeys(archives) {
		in := archives[name]
		t.Run(name, func(t *testing.T) {
			// Implicit keep (Next only), explicit Keep, Data read in full
			// or in part: the output is the input.
			modes := map[string]func(rw *Rewriter, e *Entry) error{
				"next": nil,
				"keep": func(rw *Rewriter, e *Entry) error { return rw.Keep() },
				"data": func(rw *Rewriter, e *Entry) error {
					n, err := io.Copy(io.Discard, rw.Data())
					if err == nil && n != e.DataSize {
						t.Errorf("%s: Data gave %d bytes, DataSize %d", e.Name, n, e.DataSize)
					}
					return err
				},
				"half": func(rw *Rewriter, e *Entry) error {
					if _, err := io.CopyN(io.Discard, rw.Data(), e.DataSize/2); err != nil {
						return err
					}
					return rw.Keep()
				},
			}
			for mode, fn := range modes {
				out, changed, err := pass(in, fn)
				if err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				if !bytes.Equal(out, in) {
					t.Fatalf("%s: output differs from input (%d bytes, %d in)", mode, len(out), len(in))
				}
				if changed {
					t.Errorf("%s: Changed is true", mode)
				}
			}
			// Short reads of every size from the reader.
			var out bytes.Buffer
			rw := NewRewriter(&shortReader{r: bytes.NewReader(in)}, &out)
			for {
				if _, err := rw.Next(); err != nil {
					if err != io.EOF {
						t.Fatal(err)
					}
					break
				}
			}
			if err := rw.Close(); err != nil || !bytes.Equal(out.Bytes(), in) {
				t.Fatalf("short reads: %v, identical %v", err, bytes.Equal(out.Bytes(), in))
			}
		})
	}
}

// shortReader returns 1, 2, 3... 1000, 1, 2... bytes per Read, and
// sometimes 0 bytes and no error.
type shortReader struct {
	r io.Reader
	n int
}

func (s *shortReader) Read(p []byte) (int, error) {
	s.n = (s.n + 1) % 1001
	return s.r.Read(p[:min(len(p), s.n)])
}

func TestParseMatchesArchiveTar(t *testing.T) {
	archives := allArchives(t)
	for _, name := range sortedKeys(archives) {
		t.Run(name, func(t *testing.T) { compareWithGo(t, archives[name]) })
	}
}

func TestDataMatchesArchiveTar(t *testing.T) {
	archives := allArchives(t)
	for _, name := range sortedKeys(archives) {
		in := archives[name]
		t.Run(name, func(t *testing.T) {
			theirs := readGo(t, in)
			i := 0
			_, _, err := pass(in, func(rw *Rewriter, e *Entry) error {
				h := sha256.New()
				n, err := io.Copy(h, rw.Data())
				if err != nil {
					return err
				}
				g := theirs[i]
				i++
				sparse := e.Typeflag == 'S' || isPAXSparse(e.PAX)
				if n != e.DataSize {
					t.Errorf("%s: %d bytes of data, DataSize %d", e.Name, n, e.DataSize)
				}
				if !sparse && e.Typeflag != 'g' && (n != g.size || [32]byte(h.Sum(nil)) != g.data) {
					t.Errorf("%s: data differs from archive/tar's (%d bytes, %d)", e.Name, n, g.size)
				}
				if sparse && g.size != e.Size {
					t.Errorf("%s: sparse Size %d, archive/tar reads %d bytes", e.Name, e.Size, g.size)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEntryFields(t *testing.T) {
	archives := goArchives(t)
	byName := func(t *testing.T, archive string) map[string]*Entry {
		m := map[string]*Entry{}
		for _, e := range entries(t, archives[archive]) {
			m[e.Name] = e
		}
		return m
	}
	pax := byName(t, "go-pax")
	gnu := byName(t, "go-gnu")
	ustar := byName(t, "go-ustar")
	tests := []struct {
		name  string
		e     *Entry
		check func(e *Entry) bool
	}{
		{"pax long name and xattrs", pax[longName], func(e *Entry) bool {
			return e.Typeflag == '0' && e.Size == 10 && e.DataSize == 10 &&
				e.PAX["SCHILY.xattr.security.capability"] == capability &&
				e.PAX["SCHILY.xattr.security.selinux"] == "system_u:object_r:bin_t:s0\x00"
		}},
		{"pax long link", pax["s"], func(e *Entry) bool { return e.Typeflag == '2' && e.Linkname == longLink }},
		{"pax hard link to long name", pax[longName+".hard"], func(e *Entry) bool {
			return e.Typeflag == '1' && e.Linkname == longName && e.DataSize == 0
		}},
		{"pax sub-second mtime", pax["subsecond"], func(e *Entry) bool {
			return e.ModTime.Equal(time.Unix(1600000000, 123456789)) && e.PAX["atime"] != ""
		}},
		{"pax big ids and long uname", pax["bigid"], func(e *Entry) bool {
			return e.Uid == 1<<30 && e.Gid == 1<<31 && e.Uname == strings.Repeat("u", 40)
		}},
		{"pax non-ASCII name", pax["née"], func(e *Entry) bool { return e.Size == 2 }},
		{"pax global header", pax["global"], func(e *Entry) bool {
			return e.Typeflag == 'g' && e.PAX["mtime"] == "1234.5" && e.DataSize == 0
		}},
		{"char device", pax["dev/null"], func(e *Entry) bool {
			return e.Typeflag == '3' && e.Devmajor == 1 && e.Devminor == 3 && e.Mode == 0o666
		}},
		{"block device", gnu["dev/sda"], func(e *Entry) bool { return e.Typeflag == '4' && e.Devmajor == 8 }},
		{"fifo", ustar["run/fifo"], func(e *Entry) bool { return e.Typeflag == '6' && e.DataSize == 0 }},
		{"dir", ustar["etc/"], func(e *Entry) bool { return e.Typeflag == '5' && e.Mode == 0o755 }},
		{"ustar prefix", ustar[strings.Repeat("p", 120)+"/"+strings.Repeat("n", 90)], func(e *Entry) bool {
			return e.Size == 3
		}},
		{"ustar owners", ustar["etc/hosts"], func(e *Entry) bool {
			return e.Uname == "root" && e.Gname == "root" && e.Size == 1000 && e.ModTime.Equal(t0)
		}},
		{"gnu long name", gnu[longName], func(e *Entry) bool { return e.Size == 600 && e.PAX == nil }},
		{"gnu long link", gnu["s"], func(e *Entry) bool { return e.Linkname == longLink }},
		{"gnu base-256 ids and negative mtime", gnu["bigid"], func(e *Entry) bool {
			return e.Uid == 1<<30 && e.Gid == 1<<31 && e.ModTime.Equal(time.Unix(-100, 0))
		}},
		{"gnu base-256 devices", gnu["dev/big"], func(e *Entry) bool {
			return e.Devmajor == 1<<22 && e.Devminor == 1<<30
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.e == nil {
				t.Fatal("entry not found")
			}
			if !tt.check(tt.e) {
				t.Errorf("unexpected entry %+v", *tt.e)
			}
		})
	}
}

func TestSparseEntries(t *testing.T) {
	archives := gnuArchives(t)
	tests := []struct {
		archive string
		check   func(e *Entry) bool
	}{
		{"gnutar-gnu-sparse", func(e *Entry) bool { return e.Typeflag == 'S' }},
		{"gnutar-oldgnu-sparse", func(e *Entry) bool { return e.Typeflag == 'S' }},
		{"gnutar-pax-sparse-0.0", func(e *Entry) bool { return e.PAX["GNU.sparse.map"] != "" && e.PAX["GNU.sparse.size"] != "" }},
		{"gnutar-pax-sparse-0.1", func(e *Entry) bool { return e.PAX["GNU.sparse.map"] != "" }},
		{"gnutar-pax-sparse-1.0", func(e *Entry) bool { return e.PAX["GNU.sparse.major"] == "1" }},
	}
	for _, tt := range tests {
		t.Run(tt.archive, func(t *testing.T) {
			var found *Entry
			for _, e := range entries(t, archives[tt.archive]) {
				if strings.HasSuffix(e.Name, "/sparse") {
					found = e
				}
			}
			if found == nil {
				t.Fatal("no sparse entry")
			}
			if found.Name != "d/sparse" || found.Size != 1<<20+3 || !tt.check(found) {
				t.Errorf("sparse entry %+v", *found)
			}
			if found.DataSize >= found.Size || found.DataSize < 30*600 {
				t.Errorf("DataSize %d for %d bytes of data in a %d-byte file", found.DataSize, 30*600+3, found.Size)
			}
		})
	}
}

func TestSetModTime(t *testing.T) {
	archives := allArchives(t)
	for _, name := range sortedKeys(archives) {
		in := archives[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, ts := range []int64{0, 1234567890} {
				out, changed := normalise(t, in, ts)
				if !changed {
					t.Errorf("ts %d: nothing changed", ts)
				}
				checkNormalised(t, in, out, ts)
				gnuTarTimes(t, out, ts)
				// Normalising again changes nothing.
				again, changed := normalise(t, out, ts)
				if changed || !bytes.Equal(again, out) {
					t.Errorf("ts %d: second pass changed the archive", ts)
				}
				if ts == 1234567890 {
					pythonTimes(t, out, ts)
				}
			}
		})
	}
}

// pythonTimes checks with Python's tarfile, which applies global headers,
// that every member's time is ts.
func pythonTimes(t *testing.T, data []byte, ts int64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runPython(t, `
import sys, tarfile
with tarfile.open(sys.argv[1]) as tf:
    for m in tf:
        bad = [k for k in ("atime", "ctime", "LIBARCHIVE.creationtime") if k in m.pax_headers]
        print(m.mtime == int(sys.argv[2]) and not bad, repr(m.name), m.mtime, bad)
`, p, strconv.FormatInt(ts, 10))
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "True ") {
			t.Errorf("python tarfile: %s", line)
		}
	}
}

// TestSetModTimeExtracts extracts archives before and after normalising
// with GNU tar: the files, sparse ones included, must be the same, and
// their times ts.
func TestSetModTimeExtracts(t *testing.T) {
	archives := gnuArchives(t)
	const ts = 1234567890
	for _, name := range sortedKeys(archives) {
		in := archives[name]
		t.Run(name, func(t *testing.T) {
			out, _ := normalise(t, in, ts)
			a, b := extract(t, in), extract(t, out)
			if name == "gnutar-pax-xattrs" && a["d/cap"].xattr != capability {
				t.Fatalf("the original has no file capability: %q", a["d/cap"].xattr)
			}
			if len(a) != len(b) {
				t.Fatalf("%d files before, %d after", len(a), len(b))
			}
			for p, fa := range a {
				fb := b[p]
				if fb.sum != fa.sum || fb.mode != fa.mode || fb.xattr != fa.xattr {
					t.Errorf("%s: %+v, was %+v", p, fb, fa)
				}
				if fb.mtime != ts && fb.mode&fs.ModeSymlink == 0 {
					t.Errorf("%s: mtime %d", p, fb.mtime)
				}
			}
		})
	}
}

type extracted struct {
	sum   [32]byte
	mode  fs.FileMode
	mtime int64
	xattr string
}

func extract(t *testing.T, data []byte) map[string]extracted {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "a.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "x")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tar", "-C", root, "--xattrs", "--xattrs-include=*", "-xf", p)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v: %s", err, b)
	}
	m := map[string]extracted{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		var x extracted
		x.mode = fi.Mode()
		x.mtime = fi.ModTime().Unix()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			x.sum = sha256.Sum256(b)
			buf := make([]byte, 256)
			if n, err := unixGetxattr(path, "security.capability", buf); err == nil {
				x.xattr = string(buf[:n])
			}
		}
		rel, _ := filepath.Rel(root, path)
		m[rel] = x
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSetModTimeFieldEncodings(t *testing.T) {
	in := goArchives(t)["go-pax"]
	for _, ts := range []int64{-1, -1 << 40, 1 << 33, 1 << 40, 8589934591} {
		out, _ := normalise(t, in, ts)
		checkNormalised(t, in, out, ts)
	}
}

func TestSetModTimeGlobalHeader(t *testing.T) {
	in := goArchives(t)["go-pax"]
	out, _ := normalise(t, in, 42)
	for _, e := range entries(t, out) {
		if e.Typeflag == 'g' {
			if e.PAX["mtime"] != "42" || e.PAX["comment"] != "hello" {
				t.Errorf("global header records %q", e.PAX)
			}
			return
		}
	}
	t.Fatal("no global header")
}

func TestSetModTimeRecords(t *testing.T) {
	// A record whose length gains a digit, one that loses one, and the
	// extended header's block count changing with them.
	pad := strings.Repeat("v", 497-len("SCHILY.xattr.user.pad")) // fill the block up to the mtime record
	hdrs := []*tar.Header{{
		Typeflag: tar.TypeReg, Name: "f", Size: 1, Format: tar.FormatPAX,
		ModTime:    time.Unix(1, 5),
		AccessTime: time.Unix(1, 5), ChangeTime: time.Unix(1, 5),
		PAXRecords: map[string]string{"SCHILY.xattr.user.pad": pad},
	}}
	in := writeGo(t, hdrs)
	for _, ts := range []int64{0, 1 << 62, -(1 << 62)} {
		out, _ := normalise(t, in, ts)
		checkNormalised(t, in, out, ts)
		es := entries(t, out)
		if es[0].PAX["SCHILY.xattr.user.pad"] != pad || es[0].PAX["mtime"] != strconv.FormatInt(ts, 10) {
			t.Errorf("records %q", es[0].PAX)
		}
	}
	// The length prefix counts its own digits, including when adding them
	// makes it one digit longer; archive/tar parses every record back.
	for n := range 2000 {
		v := strings.Repeat("v", n)
		rec := appendPAXRecord(nil, "k", v)
		recs, err := parsePAXRecords(rec, nil)
		if err != nil || len(recs) != 1 || paxValue(rec, recs[0]) != v {
			t.Fatalf("record %q: %v", rec, err)
		}
	}
	if got := string(appendPAXRecord(nil, "k", strings.Repeat("v", 94))); len(got) != 101 || !strings.HasPrefix(got, "101 ") {
		t.Errorf("record %q", got)
	}
}

func TestSetModTimeAfterKeep(t *testing.T) {
	in := goArchives(t)["go-ustar"]
	_, _, err := pass(in, func(rw *Rewriter, e *Entry) error {
		if err := rw.Keep(); err != nil {
			return err
		}
		e.SetModTime(0)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "after it was written") {
		t.Fatalf("error %v", err)
	}
}

func TestDrop(t *testing.T) {
	archives := allArchives(t)
	for _, name := range sortedKeys(archives) {
		in := archives[name]
		t.Run(name, func(t *testing.T) {
			all := readGo(t, in)
			var kept []string
			i := 0
			out, changed, err := pass(in, func(rw *Rewriter, e *Entry) error {
				i++
				if i%2 == 0 && e.Typeflag != 'g' {
					return rw.Drop()
				}
				kept = append(kept, e.Name)
				return rw.Keep()
			})
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Error("Changed is false")
			}
			got := readGo(t, out)
			if len(got) != len(kept) {
				t.Fatalf("%d entries kept, archive/tar reads %d", len(kept), len(got))
			}
			for j, g := range got {
				if g.hdr.Name != kept[j] {
					t.Errorf("entry %d: %s, want %s", j, g.hdr.Name, kept[j])
				}
				for _, a := range all {
					if a.hdr.Name == g.hdr.Name && a.hdr.Typeflag == g.hdr.Typeflag && a.data != g.data {
						t.Errorf("%s: data changed", g.hdr.Name)
					}
				}
			}
			if _, err := exec.LookPath("tar"); err == nil {
				p := filepath.Join(t.TempDir(), "a.tar")
				os.WriteFile(p, out, 0o644)
				if b, err := exec.Command("tar", "-tf", p).CombinedOutput(); err != nil {
					t.Errorf("tar -t: %v: %s", err, b)
				}
			}
		})
	}
}

func TestDropRemovesExtendedHeaders(t *testing.T) {
	in := goArchives(t)["go-pax"]
	out, _, err := pass(in, func(rw *Rewriter, e *Entry) error {
		if e.Name == longName || e.Name == "s" {
			return rw.Drop()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"security.capability", " path=" + longName + "\n", longLink} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("%q still in the output", s)
		}
	}
	for _, e := range readGo(t, out) {
		if e.hdr.Name == longName || e.hdr.Name == "s" {
			t.Errorf("%s kept", e.hdr.Name)
		}
	}
}

func TestDropSparseWithExtensions(t *testing.T) {
	archives := gnuArchives(t)
	for _, name := range []string{"gnutar-gnu-sparse", "gnutar-oldgnu-sparse"} {
		in := archives[name]
		out, _, err := pass(in, func(rw *Rewriter, e *Entry) error {
			if e.Typeflag == 'S' {
				return rw.Drop()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range readGo(t, out) {
			n++
			if e.hdr.Typeflag == 'S' {
				t.Errorf("%s: sparse entry kept", name)
			}
		}
		if n != len(readGo(t, in))-1 {
			t.Errorf("%s: %d entries left", name, n)
		}
	}
}

func TestDropAfterData(t *testing.T) {
	in := goArchives(t)["go-ustar"]
	_, _, err := pass(in, func(rw *Rewriter, e *Entry) error {
		if e.DataSize == 0 {
			return nil
		}
		if _, err := rw.Data().Read(make([]byte, 1)); err != nil {
			return err
		}
		return rw.Drop()
	})
	if err == nil || !strings.Contains(err.Error(), "Drop after") {
		t.Fatalf("error %v", err)
	}
}

func TestTrailingBytes(t *testing.T) {
	base := goArchives(t)["go-pax"] // ends with exactly two zero blocks
	noEnd := base[:len(base)-2*blockSize]
	tests := map[string][]byte{
		"empty":             {},
		"end marker only":   make([]byte, 2*blockSize),
		"record padding":    append(append([]byte{}, base...), make([]byte, 10240-len(base)%10240)...),
		"no end marker":     noEnd,
		"one zero block":    base[:len(base)-blockSize],
		"garbage after end": append(append([]byte{}, base...), []byte("not a tar at all")...),
		"entries after end": append(append([]byte{}, base...), goArchives(t)["go-ustar"]...),
		"padding missing":   noEnd[:len(noEnd)-100], // the last entry's data ends before its padding
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			out, changed, err := pass(in, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) || changed {
				t.Errorf("output differs (%d bytes, %d in), changed %v", len(out), len(in), changed)
			}
			// Normalising keeps the tail too.
			norm, _ := normalise(t, in, 0)
			if tail := in[len(in)-min(len(in), 16):]; !bytes.HasSuffix(norm, tail) {
				t.Error("tail lost when normalising")
			}
		})
	}
}

func TestCloseEarlyCopiesTheRest(t *testing.T) {
	in := goArchives(t)["go-gnu"]
	var out bytes.Buffer
	rw := NewRewriter(bytes.NewReader(in), &out)
	e, err := rw.Next()
	if err != nil {
		t.Fatal(err)
	}
	e.SetModTime(0)
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	got := readGo(t, out.Bytes())
	if len(got) != len(readGo(t, in)) || !got[0].hdr.ModTime.Equal(time.Unix(0, 0)) || !got[1].hdr.ModTime.Equal(t0) {
		t.Error("Close did not keep the current entry and copy the rest")
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	in := goArchives(t)["go-pax"]
	rw := NewRewriter(bytes.NewReader(in), &failWriter{n: 1000})
	var err error
	for err == nil {
		_, err = rw.Next()
	}
	if err == io.EOF {
		err = rw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("error %v", err)
	}
}

type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errors.New("digest mismatch")
	}
	return n, err
}

func TestReadErrorPassesThrough(t *testing.T) {
	in := goArchives(t)["go-pax"]
	rw := NewRewriter(errReader{bytes.NewReader(in)}, io.Discard)
	var err error
	for err == nil {
		_, err = rw.Next()
	}
	if err == io.EOF {
		err = rw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("error %v", err)
	}
}
