package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// ent describes one tar entry of a test layer.
type ent struct {
	name  string
	typ   byte
	body  string
	link  string
	mode  int64
	set   bool // mode is set, even if 0
	uid   int
	gid   int
	mtime time.Time
	atime time.Time
	pax   map[string]string
	major int64
	minor int64
}

var defTime = time.Unix(1700000000, 0)

func file(name, body string) ent   { return ent{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) ent          { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, to string) ent  { return ent{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) ent { return ent{name: name, typ: tar.TypeLink, link: to} }
func wh(name string) ent           { return ent{name: name, typ: tar.TypeReg} }

func (e ent) withMode(m int64) ent       { e.mode, e.set = m, true; return e }
func (e ent) withTime(t time.Time) ent   { e.mtime = t; return e }
func (e ent) withOwner(uid, gid int) ent { e.uid, e.gid = uid, gid; return e }

// mkLayer builds an uncompressed tar layer.
func mkLayer(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Linkname: e.link,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  e.mtime,
			Devmajor: e.major,
			Devminor: e.minor,
		}
		if h.Mode == 0 && !e.set {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.ModTime.IsZero() {
			h.ModTime = defTime
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if !e.atime.IsZero() || e.pax != nil || h.ModTime.Nanosecond() != 0 {
			h.Format = tar.FormatPAX
			h.AccessTime = e.atime
			h.PAXRecords = e.pax
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("WriteHeader %q: %v", e.name, err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testRoot makes base/a/b/root: "../../.." from the root is base, where
// base/outside/victim is a file that hostile layers try to reach.
func testRoot(t *testing.T) (base, root string) {
	t.Helper()
	base = t.TempDir()
	root = filepath.Join(base, "a", "b", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(base, "outside", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "outside", "victim"), []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	return base, root
}

// applyLayers applies the layers in order, then calls Finish (if all
// layers applied) and Close.
func applyLayers(t *testing.T, root string, opts Options, layers ...[]byte) error {
	t.Helper()
	u, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := u.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	for i, l := range layers {
		if viaFile {
			f, off := layerFile(t, l)
			if err := u.ApplyFile(context.Background(), i, f, off, int64(len(l))); err != nil {
				return err
			}
			continue
		}
		if err := u.Apply(context.Background(), i, bytes.NewReader(l)); err != nil {
			return err
		}
	}
	return u.Finish()
}

func testOpts() Options {
	return Options{Log: zerolog.Nop(), Owner: os.Geteuid() == 0}
}

func readFile(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func exists(root, p string) bool {
	_, err := os.Lstat(filepath.Join(root, p))
	return err == nil
}

func wantFile(t *testing.T, root, p, body string) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if !fi.Mode().IsRegular() {
		t.Fatalf("%s: mode %v, want regular file", p, fi.Mode())
	}
	if got := readFile(t, root, p); got != body {
		t.Errorf("%s = %q, want %q", p, got, body)
	}
}

func wantGone(t *testing.T, root string, ps ...string) {
	t.Helper()
	for _, p := range ps {
		if exists(root, p) {
			t.Errorf("%s exists, want it removed", p)
		}
	}
}

func wantType(t *testing.T, root, p string, typ fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if fi.Mode().Type() != typ {
		t.Errorf("%s: type %v, want %v", p, fi.Mode().Type(), typ)
	}
}

func wantLink(t *testing.T, root, p, target string) {
	t.Helper()
	got, err := os.Readlink(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("readlink %s: %v", p, err)
	}
	if got != target {
		t.Errorf("%s -> %q, want %q", p, got, target)
	}
}

func wantPerm(t *testing.T, root, p string, perm uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if got := st.Mode & 0o7777; got != perm {
		t.Errorf("%s: mode %#o, want %#o", p, got, perm)
	}
}

func wantMtime(t *testing.T, root, p string, want time.Time) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if !fi.ModTime().Equal(want) {
		t.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), want)
	}
}

func TestLayers(t *testing.T) {
	t1 := time.Unix(1600000000, 123456789)
	t2 := time.Unix(1500000000, 0)
	t3 := time.Unix(1400000000, 5000)
	deep := strings.Repeat("directory-level-xx/", 30) // 570 characters
	long := strings.Repeat("L", 200)
	tests := []struct {
		name   string
		layers [][]ent
		check  func(t *testing.T, root string)
	}{
		{
			name: "files dirs symlinks hardlinks",
			layers: [][]ent{{
				dir("etc/"),
				file("etc/hosts", "127.0.0.1 localhost\n"),
				file("./etc/motd", "hello"),
				symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
				symlink("etc/rel", "hosts"),
				hardlink("etc/hosts2", "etc/hosts"),
				hardlink("etc/rel2", "./etc/rel"),
				file("implicit/parent/f", "x"),
				file("empty", ""),
			}},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "etc/hosts", "127.0.0.1 localhost\n")
				wantFile(t, root, "etc/motd", "hello")
				wantLink(t, root, "etc/localtime", "/usr/share/zoneinfo/UTC")
				wantLink(t, root, "etc/rel", "hosts")
				wantLink(t, root, "etc/rel2", "hosts")
				wantFile(t, root, "empty", "")
				a, _ := os.Stat(filepath.Join(root, "etc/hosts"))
				b, _ := os.Stat(filepath.Join(root, "etc/hosts2"))
				if !os.SameFile(a, b) {
					t.Error("etc/hosts2 is not a hard link of etc/hosts")
				}
				wantFile(t, root, "implicit/parent/f", "x")
				wantPerm(t, root, "implicit", 0o755)
				wantPerm(t, root, "implicit/parent", 0o755)
			},
		},
		{
			name: "whiteout file and dir from lower layer",
			layers: [][]ent{
				{file("a/f1", "1"), file("a/f2", "2"), file("d/sub/x", "x"), dir("d/sub/y/"), file("keep", "k")},
				{wh("a/.wh.f1"), wh(".wh.d"), wh(".wh.nonexistent"), wh("missing/dir/.wh.x")},
			},
			check: func(t *testing.T, root string) {
				wantGone(t, root, "a/f1", "d")
				wantFile(t, root, "a/f2", "2")
				wantFile(t, root, "keep", "k")
				wantGone(t, root, "a/.wh.f1", ".wh.d", "missing")
			},
		},
		{
			name: "opaque dir with same-layer children before and after the marker",
			layers: [][]ent{
				{file("d/old", "o"), file("d/sub/old2", "o"), file("d/keep/lower", "l"), file("dx/sibling", "s")},
				{
					dir("d/"),
					file("d/before", "b"),
					dir("d/keep/"),
					file("d/keep/upper", "u"),
					wh("d/.wh..wh..opq"),
					file("d/after", "a"),
					file("d/sub/new", "n"),
				},
			},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "d/before", "b")
				wantFile(t, root, "d/after", "a")
				wantFile(t, root, "d/keep/upper", "u")
				wantFile(t, root, "d/sub/new", "n")
				wantGone(t, root, "d/old", "d/keep/lower", "d/sub/old2", "d/.wh..wh..opq")
				// Not a string prefix match: dx is a different directory.
				wantFile(t, root, "dx/sibling", "s")
			},
		},
		{
			name: "opaque marker first",
			layers: [][]ent{
				{file("d/old", "o"), file("d/same", "lower")},
				{wh("d/.wh..wh..opq"), file("d/same", "upper"), file("d/n", "n")},
			},
			check: func(t *testing.T, root string) {
				wantGone(t, root, "d/old")
				wantFile(t, root, "d/same", "upper")
				wantFile(t, root, "d/n", "n")
			},
		},
		{
			name: "opaque root",
			layers: [][]ent{
				{file("a", "a"), file("b/c", "c")},
				{file("n", "n"), wh("./.wh..wh..opq")},
			},
			check: func(t *testing.T, root string) {
				wantGone(t, root, "a", "b")
				wantFile(t, root, "n", "n")
			},
		},
		{
			name: "whiteout in the same layer as a created file",
			layers: [][]ent{
				{file("x", "lower"), file("y", "lower"), file("d/lower", "l")},
				{
					file("x", "upper"), wh(".wh.x"),
					wh(".wh.y"), file("y", "upper"),
					file("d/upper", "u"), wh(".wh.d"),
					wh(".wh.z"), file("z", "new"),
				},
			},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "x", "upper")
				wantFile(t, root, "y", "upper")
				wantFile(t, root, "z", "new")
				wantFile(t, root, "d/upper", "u")
				wantGone(t, root, "d/lower")
			},
		},
		{
			name: "whiteout of empty name and AUFS metadata are skipped",
			layers: [][]ent{
				{file("f", "f")},
				{wh(".wh."), dir(".wh..wh.plnk/"), file(".wh..wh.plnk/123", "x"), wh(".wh..wh.aufs")},
			},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "f", "f")
				wantGone(t, root, ".wh.", ".wh..wh.plnk", ".wh..wh.aufs")
			},
		},
		{
			name: "file replaced by dir and dir replaced by file",
			layers: [][]ent{
				{file("fd", "file"), file("df/child", "c"), dir("df/sub/"), symlink("ld", "/nowhere"), file("lf/x", "x")},
				{dir("fd/"), file("fd/in", "in"), file("df", "now a file"), dir("ld/"), symlink("lf", "fd")},
			},
			check: func(t *testing.T, root string) {
				wantType(t, root, "fd", fs.ModeDir)
				wantFile(t, root, "fd/in", "in")
				wantFile(t, root, "df", "now a file")
				wantType(t, root, "ld", fs.ModeDir)
				wantLink(t, root, "lf", "fd")
			},
		},
		{
			name: "replacing a file keeps other hard links intact",
			layers: [][]ent{
				{file("a", "old"), hardlink("b", "a")},
				{file("a", "new")},
			},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "a", "new")
				wantFile(t, root, "b", "old")
			},
		},
		{
			name: "hardlink replaces existing entry",
			layers: [][]ent{
				{file("a", "a"), file("b", "b"), dir("c/"), file("c/x", "x")},
				{hardlink("b", "a"), hardlink("c", "a")},
			},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "b", "a")
				wantFile(t, root, "c", "a")
			},
		},
		{
			name: "modes",
			layers: [][]ent{{
				file("suid", "s").withMode(0o4755),
				file("sgid", "s").withMode(0o2711),
				file("ro", "r").withMode(0o444),
				file("none", "n").withMode(0),
				dir("tmp/").withMode(0o1777),
				dir("sgdir/").withMode(0o2775),
				dir("rodir/").withMode(0o555),
				file("rodir/child", "c").withMode(0o600),
				dir("rodir/sub/").withMode(0o500),
				file("rodir/sub/deeper", "d"),
				dir("closed/").withMode(0o700),
			}, {
				dir("closed/").withMode(0o000),
				file("closed/inside", "i"),
			}},
			check: func(t *testing.T, root string) {
				wantPerm(t, root, "suid", 0o4755)
				wantPerm(t, root, "sgid", 0o2711)
				wantPerm(t, root, "ro", 0o444)
				wantPerm(t, root, "tmp", 0o1777)
				wantPerm(t, root, "sgdir", 0o2775)
				wantPerm(t, root, "rodir", 0o555)
				wantPerm(t, root, "rodir/child", 0o600)
				wantPerm(t, root, "rodir/sub", 0o500)
				wantPerm(t, root, "closed", 0o000)
				wantFile(t, root, "rodir/sub/deeper", "d")
				wantFile(t, root, "closed/inside", "i")
			},
		},
		{
			name: "mtimes of files symlinks and dirs",
			layers: [][]ent{{
				dir("d/").withTime(t1),
				file("d/f", "f").withTime(t2),
				symlink("d/l", "f").withTime(t3),
				dir("d/sub/").withTime(t2),
				file("d/sub/g", "g").withTime(t1),
				{name: "d/at", typ: tar.TypeReg, body: "a", mtime: t1, atime: t3},
			}, {
				file("d/later", "x"),
			}},
			check: func(t *testing.T, root string) {
				wantMtime(t, root, "d", t1)
				wantMtime(t, root, "d/f", t2)
				wantMtime(t, root, "d/l", t3)
				wantMtime(t, root, "d/sub", t2)
				wantMtime(t, root, "d/sub/g", t1)
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(root, "d/at"), &st); err != nil {
					t.Fatal(err)
				}
				if got := time.Unix(st.Atim.Unix()); !got.Equal(t3) {
					t.Errorf("d/at atime %v, want %v", got, t3)
				}
			},
		},
		{
			name: "dir redeclared by a later layer",
			layers: [][]ent{
				{dir("d/").withMode(0o700).withTime(t1), file("d/f", "f")},
				{dir("d/").withMode(0o751).withTime(t2)},
			},
			check: func(t *testing.T, root string) {
				wantPerm(t, root, "d", 0o751)
				wantMtime(t, root, "d", t2)
				wantFile(t, root, "d/f", "f")
			},
		},
		{
			name: "dir removed after being declared",
			layers: [][]ent{
				{dir("d/").withMode(0o700).withTime(t1), file("d/f", "f")},
				{wh(".wh.d"), file("d/g", "g")},
			},
			check: func(t *testing.T, root string) {
				// Recreated implicitly: the old metadata no longer applies.
				wantPerm(t, root, "d", 0o755)
				wantGone(t, root, "d/f")
				wantFile(t, root, "d/g", "g")
			},
		},
		{
			name: "root entry",
			layers: [][]ent{
				{dir("./").withMode(0o755).withTime(t1), file("f", "f")},
			},
			check: func(t *testing.T, root string) {
				wantMtime(t, root, ".", t1)
				wantPerm(t, root, ".", 0o755)
			},
		},
		{
			name: "non-ASCII and long deep paths",
			layers: [][]ent{{
				file("naïve/日本語/файл.txt", "unicode"),
				file(deep+"leaf", "deep"),
				file(deep+long, "long"),
				symlink(deep+"ln", "/"+deep+"leaf"),
				hardlink("hl", deep+"leaf"),
			}, {
				file(deep+"leaf", "deep2"),
				wh(deep + ".wh." + long),
			}},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "naïve/日本語/файл.txt", "unicode")
				wantFile(t, root, deep+"leaf", "deep2")
				wantFile(t, root, "hl", "deep")
				wantLink(t, root, deep+"ln", "/"+deep+"leaf")
				wantGone(t, root, deep+long)
			},
		},
		{
			name: "deeper than the descriptor cache",
			layers: [][]ent{{
				file(strings.Repeat("d/", 70)+"f70", "70"),
				file(strings.Repeat("d/", 100)+"f100", "100"),
				file(strings.Repeat("d/", 80)+"f80", "80"),
				file(strings.Repeat("d/", 101)+"f101", "101"),
				file(strings.Repeat("d/", 65)+"f65", "65"),
				file("top", "top"),
				file(strings.Repeat("d/", 100)+"g100", "g100"),
			}, {
				wh(strings.Repeat("d/", 90) + ".wh.d"),
				file(strings.Repeat("d/", 95)+"new", "new"),
			}},
			check: func(t *testing.T, root string) {
				for _, n := range []int{65, 70, 80} {
					wantFile(t, root, strings.Repeat("d/", n)+"f"+strconv.Itoa(n), strconv.Itoa(n))
				}
				wantFile(t, root, "top", "top")
				wantGone(t, root, strings.Repeat("d/", 100)+"f100", strings.Repeat("d/", 96))
				wantFile(t, root, strings.Repeat("d/", 95)+"new", "new")
			},
		},
		{
			name: "symlink chain inside the root",
			layers: [][]ent{{
				dir("real/"),
				symlink("c1", "c2"),
				symlink("c2", "./real"),
				file("c1/f", "via chain"),
				symlink("abs", "real"),
			}, {
				file("c1/g", "later"),
				wh("c1/.wh.f"),
			}},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "real/g", "later")
				wantGone(t, root, "real/f")
				wantLink(t, root, "c1", "c2")
			},
		},
		{
			name: "absolute names are confined",
			layers: [][]ent{{
				file("/abs/evil", "confined"),
				file("//x//y/../z", "z"),
			}},
			check: func(t *testing.T, root string) {
				wantFile(t, root, "abs/evil", "confined")
				wantFile(t, root, "x/z", "z")
			},
		},
		{
			name: "fifo and device",
			layers: [][]ent{{
				{name: "fifo", typ: tar.TypeFifo, mode: 0o640},
				{name: "null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
				{name: "dir/fifo2", typ: tar.TypeFifo, mode: 0o600},
			}, {
				{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
			}},
			check: func(t *testing.T, root string) {
				wantType(t, root, "fifo", fs.ModeNamedPipe)
				wantPerm(t, root, "fifo", 0o600)
				if exists(root, "null") {
					wantType(t, root, "null", fs.ModeDevice|fs.ModeCharDevice)
				}
			},
		},
		{
			name: "unknown entry type is skipped",
			layers: [][]ent{{
				{name: "vol", typ: 'Z'},
				file("f", "f"),
			}},
			check: func(t *testing.T, root string) {
				wantGone(t, root, "vol")
				wantFile(t, root, "f", "f")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, root := testRoot(t)
			var layers [][]byte
			for _, l := range tc.layers {
				layers = append(layers, mkLayer(t, l...))
			}
			if err := applyLayers(t, root, testOpts(), layers...); err != nil {
				t.Fatalf("apply: %v", err)
			}
			tc.check(t, root)
		})
	}
}

// snapshot records everything under base except the root's subtree.
func snapshot(t *testing.T, base, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		v := []byte{}
		if d.Type().IsRegular() {
			v, _ = os.ReadFile(p)
		}
		m[p] = string(v) + "|" + fs.FileMode(st.Mode).String() +
			"|" + time.Unix(st.Mtim.Unix()).String() + "|" + string(rune(st.Nlink)) +
			"|" + string(rune(st.Uid)) + "|" + string(rune(st.Mode&0o7777))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHostile(t *testing.T) {
	const (
		unsafe = iota + 1
		fails
	)
	outsideAbs := func(base string) string { return filepath.Join(base, "outside") }
	tests := []struct {
		name   string
		layers func(base string) [][]ent
		want   int    // 0: succeeds, unsafe: *UnsafeError, fails: other error
		reason string // expected UnsafeError reason, if any
		check  func(t *testing.T, base, root string)
	}{
		{
			name:   "dotdot",
			layers: func(string) [][]ent { return [][]ent{{file("../../evil", "x")}} },
			want:   unsafe, reason: reasonEscapes,
		},
		{
			name:   "dotdot inside",
			layers: func(string) [][]ent { return [][]ent{{file("a/../../evil", "x")}} },
			want:   unsafe, reason: reasonEscapes,
		},
		{
			name:   "dotdot dir",
			layers: func(string) [][]ent { return [][]ent{{dir("x/y/../../../evil/")}} },
			want:   unsafe, reason: reasonEscapes,
		},
		{
			name:   "dotdot whiteout",
			layers: func(string) [][]ent { return [][]ent{{wh("../.wh.outside")}} },
			want:   unsafe, reason: reasonEscapes,
		},
		{
			name:   "whiteout of dotdot",
			layers: func(string) [][]ent { return [][]ent{{wh("x/.wh...")}} },
			want:   unsafe, reason: reasonWhiteout,
		},
		{
			name:   "file named dot",
			layers: func(string) [][]ent { return [][]ent{{file(".", "x")}} },
			want:   unsafe, reason: reasonRoot,
		},
		{
			name:   "absolute name",
			layers: func(string) [][]ent { return [][]ent{{file("/abs/evil", "x")}} },
			check: func(t *testing.T, base, root string) {
				wantFile(t, root, "abs/evil", "x")
			},
		},
		{
			name: "symlink to / then through it, same layer",
			layers: func(string) [][]ent {
				return [][]ent{{symlink("link", "/"), file("link/evil", "x")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "symlink to / then through it, later layer",
			layers: func(string) [][]ent {
				return [][]ent{{symlink("link", "/")}, {file("link/evil", "x")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "relative symlink out then through it, same layer",
			layers: func(string) [][]ent {
				return [][]ent{{symlink("link", "../../.."), file("link/evil", "x")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "relative symlink out then through it, later layer",
			layers: func(string) [][]ent {
				return [][]ent{{symlink("link", "../../.."), dir("sub/")}, {dir("link/evil/"), file("link/evil/x", "x")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "symlink out in a subdirectory",
			layers: func(string) [][]ent {
				return [][]ent{{dir("d/"), symlink("d/link", "../../../.."), file("d/link/outside/victim", "pwned")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "absolute symlink to real outside dir",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", outsideAbs(base))}, {file("link/victim", "pwned")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "symlink chain out",
			layers: func(string) [][]ent {
				return [][]ent{{symlink("l1", "l2"), symlink("l2", "sub/l3"), dir("sub/"), symlink("sub/l3", "../../../..")}, {file("l1/evil", "x")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "symlink chain to /",
			layers: func(string) [][]ent {
				return [][]ent{{symlink("l1", "l2"), symlink("l2", "/"), file("l1/tmp/evil", "x")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "hardlink to ../../etc/passwd",
			layers: func(string) [][]ent {
				return [][]ent{{hardlink("passwd", "../../etc/passwd")}}
			},
			want: unsafe, reason: reasonLinkEscapes,
		},
		{
			name: "hardlink to outside victim",
			layers: func(string) [][]ent {
				return [][]ent{{hardlink("v", "../../../outside/victim")}}
			},
			want: unsafe, reason: reasonLinkEscapes,
		},
		{
			name: "hardlink to /etc/passwd is confined and missing",
			layers: func(string) [][]ent {
				return [][]ent{{hardlink("passwd", "/etc/passwd")}}
			},
			want: fails,
			check: func(t *testing.T, base, root string) {
				wantGone(t, root, "passwd")
			},
		},
		{
			name: "hardlink through symlink out",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", outsideAbs(base))}, {hardlink("v", "link/victim")}}
			},
			want: unsafe, reason: reasonLinkSymlink,
			check: func(t *testing.T, base, root string) {
				wantGone(t, root, "v")
			},
		},
		{
			name: "hardlink to symlink links the symlink itself",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", filepath.Join(outsideAbs(base), "victim"))}, {hardlink("v", "link")}}
			},
			check: func(t *testing.T, base, root string) {
				wantLink(t, root, "v", filepath.Join(outsideAbs(base), "victim"))
			},
		},
		{
			name: "whiteout through symlink out",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", outsideAbs(base))}, {wh("link/.wh.victim")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "opaque through symlink out",
			layers: func(string) [][]ent {
				return [][]ent{{symlink("link", "../../../outside")}, {wh("link/.wh..wh..opq")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "whiteout of a symlink to outside removes only the link",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", outsideAbs(base)), symlink("v", filepath.Join(outsideAbs(base), "victim"))}, {wh(".wh.link"), wh(".wh.v")}}
			},
			check: func(t *testing.T, base, root string) {
				wantGone(t, root, "link", "v")
			},
		},
		{
			name: "opaque dir containing symlinks out",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("d/link", outsideAbs(base)), symlink("d/rel", "../../../../outside")}, {wh("d/.wh..wh..opq")}}
			},
			check: func(t *testing.T, base, root string) {
				wantGone(t, root, "d/link", "d/rel")
			},
		},
		{
			name: "file over symlink to outside file",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", filepath.Join(outsideAbs(base), "victim"))}, {file("link", "mine")}}
			},
			check: func(t *testing.T, base, root string) {
				wantFile(t, root, "link", "mine")
			},
		},
		{
			name: "file over symlink, same layer",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", "../../../outside/victim"), file("link", "mine").withMode(0o4777)}}
			},
			check: func(t *testing.T, base, root string) {
				wantFile(t, root, "link", "mine")
			},
		},
		{
			name: "dir over symlink to outside dir",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", outsideAbs(base))}, {dir("link/").withMode(0o777), file("link/victim", "mine")}}
			},
			check: func(t *testing.T, base, root string) {
				wantType(t, root, "link", fs.ModeDir)
				wantFile(t, root, "link/victim", "mine")
			},
		},
		{
			name: "fifo and hardlink over symlink to outside",
			layers: func(base string) [][]ent {
				return [][]ent{
					{symlink("l1", filepath.Join(outsideAbs(base), "victim")), symlink("l2", filepath.Join(outsideAbs(base), "victim")), file("f", "f")},
					{{name: "l1", typ: tar.TypeFifo, mode: 0o777}, hardlink("l2", "f")},
				}
			},
			check: func(t *testing.T, base, root string) {
				wantType(t, root, "l1", fs.ModeNamedPipe)
				wantFile(t, root, "l2", "f")
			},
		},
		{
			name: "dir replaced by symlink out, same layer",
			layers: func(base string) [][]ent {
				return [][]ent{{dir("d/"), file("d/f1", "1"), symlink("d", outsideAbs(base)), file("d/victim", "pwned")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "dir written then replaced by symlink out, later layer",
			layers: func(base string) [][]ent {
				return [][]ent{{dir("d/"), file("d/f", "f")}, {file("d/g", "g"), symlink("d", outsideAbs(base)), file("d/victim", "pwned")}}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "opaque removes a cached dir, then symlink out",
			layers: func(base string) [][]ent {
				return [][]ent{
					{file("o/sub/f", "f")},
					{wh("o/sub/.wh.nothing"), wh("o/.wh..wh..opq"), symlink("o/sub", outsideAbs(base)), file("o/sub/victim", "pwned")},
				}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "whiteout removes a cached dir, then hardlink symlink out",
			layers: func(base string) [][]ent {
				return [][]ent{
					{file("w/sub/f", "f"), symlink("out", outsideAbs(base))},
					{wh("w/sub/.wh.nothing"), wh("w/.wh.sub"), hardlink("w/sub", "out"), file("w/sub/victim", "pwned")},
				}
			},
			want: unsafe, reason: reasonSymlink,
		},
		{
			name: "deferred dir metadata not applied through a later symlink",
			layers: func(base string) [][]ent {
				return [][]ent{
					{dir("d/").withMode(0o700).withTime(time.Unix(5, 0)), dir("d/sub/").withMode(0o700).withTime(time.Unix(5, 0))},
					{symlink("d", outsideAbs(base))},
				}
			},
			check: func(t *testing.T, base, root string) {
				wantLink(t, root, "d", outsideAbs(base))
			},
		},
		{
			name: "deferred dir metadata not applied through a later relative symlink",
			layers: func(base string) [][]ent {
				return [][]ent{
					{dir("d/").withMode(0o700).withTime(time.Unix(5, 0)), dir("d/sub/").withMode(0o700).withTime(time.Unix(5, 0))},
					{symlink("d", "../../../outside")},
				}
			},
		},
		{
			name: "symlink over symlink",
			layers: func(base string) [][]ent {
				return [][]ent{{symlink("link", outsideAbs(base))}, {symlink("link", "/etc")}}
			},
			check: func(t *testing.T, base, root string) {
				wantLink(t, root, "link", "/etc")
			},
		},
		{
			name: "xattr and owner on a symlink are not followed",
			layers: func(base string) [][]ent {
				return [][]ent{{
					symlink("link", filepath.Join(outsideAbs(base), "victim")).withOwner(4321, 4321).withTime(time.Unix(1, 0)),
				}}
			},
			check: func(t *testing.T, base, root string) {
				wantMtime(t, root, "link", time.Unix(1, 0))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, root := testRoot(t)
			before := snapshot(t, base, root)
			var layers [][]byte
			for _, l := range tc.layers(base) {
				layers = append(layers, mkLayer(t, l...))
			}
			err := applyLayers(t, root, testOpts(), layers...)
			switch tc.want {
			case 0:
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
			case unsafe:
				var ue *UnsafeError
				if !errors.As(err, &ue) || !errors.Is(err, ErrUnsafe) {
					t.Fatalf("err = %v, want *UnsafeError", err)
				}
				if ue.Reason != tc.reason {
					t.Errorf("reason %q, want %q", ue.Reason, tc.reason)
				}
				t.Logf("refused: %v", err)
			case fails:
				if err == nil {
					t.Fatal("apply succeeded, want an error")
				}
				t.Logf("failed: %v", err)
			}
			after := snapshot(t, base, root)
			for p, v := range after {
				if before[p] != v {
					t.Errorf("outside the root: %s changed or appeared", p)
				}
			}
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("outside the root: %s removed", p)
				}
			}
			for _, p := range []string{"/evil", "/tmp/evil", "/passwd", filepath.Join(filepath.Dir(base), "evil")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s exists", p)
				}
			}
			if tc.check != nil {
				tc.check(t, base, root)
			}
		})
	}
}

func TestHardlinkMissingTarget(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]ent
	}{
		{"missing file", [][]ent{{hardlink("h", "nope")}}},
		{"missing dir", [][]ent{{hardlink("h", "no/such/file")}}},
		{"whited out", [][]ent{{file("f", "f")}, {wh(".wh.f"), hardlink("h", "f")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, root := testRoot(t)
			var layers [][]byte
			for _, l := range tc.layers {
				layers = append(layers, mkLayer(t, l...))
			}
			err := applyLayers(t, root, testOpts(), layers...)
			if err == nil || !strings.Contains(err.Error(), "does not exist") {
				t.Fatalf("err = %v, want a 'does not exist' error", err)
			}
			if errors.Is(err, ErrUnsafe) {
				t.Errorf("err = %v, should not be ErrUnsafe", err)
			}
			if !strings.Contains(err.Error(), "layer ") {
				t.Errorf("err = %v, want layer in message", err)
			}
		})
	}
}

func TestUnsafeError(t *testing.T) {
	tests := []struct {
		err  *UnsafeError
		want string
	}{
		{&UnsafeError{Layer: 2, Entry: "../../x", Reason: reasonEscapes}, `layer 2 entry "../../x": path escapes the root`},
		{&UnsafeError{Layer: 0, Entry: "a\"b", Reason: "r"}, `layer 0 entry "a\"b": r`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
			if !errors.Is(tc.err, ErrUnsafe) {
				t.Error("errors.Is(err, ErrUnsafe) = false")
			}
		})
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"a/b", "a/b", true},
		{"./a/b/", "a/b", true},
		{"/abs/evil", "abs/evil", true},
		{"///a//b/./c", "a/b/c", true},
		{"", ".", true},
		{"./", ".", true},
		{"/", ".", true},
		{"a/../b", "b", true},
		{"..", "", false},
		{"../x", "", false},
		{"a/../../x", "", false},
		{"/../x", "", false},
		{"..foo", "..foo", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := cleanName(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("cleanName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tests := []struct {
		owner bool
		want  uint32
	}{
		{true, 1234},
		{false, 0},
	}
	for _, tc := range tests {
		t.Run(map[bool]string{true: "owner", false: "no owner"}[tc.owner], func(t *testing.T) {
			_, root := testRoot(t)
			l := mkLayer(t,
				dir("d/").withOwner(1234, 1234).withMode(0o2750),
				file("d/f", "f").withOwner(1234, 1234).withMode(0o4750),
				symlink("d/l", "f").withOwner(1234, 1234),
				ent{name: "d/p", typ: tar.TypeFifo, mode: 0o600, uid: 1234, gid: 1234},
			)
			if err := applyLayers(t, root, Options{Log: zerolog.Nop(), Owner: tc.owner}, l); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"d", "d/f", "d/l", "d/p"} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
					t.Fatal(err)
				}
				if st.Uid != tc.want || st.Gid != tc.want {
					t.Errorf("%s: owner %d:%d, want %d", p, st.Uid, st.Gid, tc.want)
				}
			}
			// chown must not have cleared setuid/setgid.
			wantPerm(t, root, "d/f", 0o4750)
			wantPerm(t, root, "d", 0o2750)
		})
	}
}

func TestXattrs(t *testing.T) {
	tests := []struct {
		name string
		e    ent
	}{
		{"file", ent{name: "f", typ: tar.TypeReg, body: "x", pax: map[string]string{"SCHILY.xattr.user.test": "val"}}},
		{"dir", ent{name: "d/", typ: tar.TypeDir, pax: map[string]string{"SCHILY.xattr.user.test": "val"}}},
		{"bad xattr ignored", ent{name: "g", typ: tar.TypeReg, body: "x", pax: map[string]string{"SCHILY.xattr.bogus.ns": "val", "SCHILY.xattr.user.test": "val"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, root := testRoot(t)
			if err := applyLayers(t, root, testOpts(), mkLayer(t, tc.e)); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, strings.TrimSuffix(tc.e.name, "/"))
			buf := make([]byte, 64)
			n, err := unix.Lgetxattr(p, "user.test", buf)
			if errors.Is(err, unix.ENOTSUP) {
				t.Skip("no user xattrs on this filesystem")
			}
			if err != nil {
				t.Fatalf("getxattr: %v", err)
			}
			if string(buf[:n]) != "val" {
				t.Errorf("user.test = %q", buf[:n])
			}
		})
	}
}

// paxRecord formats one PAX record, "<len> key=value\n".
func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	l := len(rec) + 1
	for len(strconv.Itoa(l))+len(rec) != l {
		l = len(strconv.Itoa(l)) + len(rec)
	}
	return strconv.Itoa(l) + rec
}

// sparseLayer builds a PAX GNU sparse 0.1 entry by hand: archive/tar reads
// sparse files but does not write them.
func sparseLayer(t *testing.T, name string, size int64, data map[int64]string) []byte {
	t.Helper()
	var offs []int64
	for o := range data {
		offs = append(offs, o)
	}
	slices.Sort(offs)
	var sm []string
	var body string
	for _, o := range offs {
		sm = append(sm, strconv.FormatInt(o, 10), strconv.Itoa(len(data[o])))
		body += data[o]
	}
	pax := paxRecord("GNU.sparse.map", strings.Join(sm, ",")) +
		paxRecord("GNU.sparse.name", name) +
		paxRecord("GNU.sparse.numblocks", strconv.Itoa(len(offs))) +
		paxRecord("GNU.sparse.size", strconv.FormatInt(size, 10))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Written as a regular file, then retyped as a PAX header below.
	if err := tw.WriteHeader(&tar.Header{Name: "PaxHeaders/x", Typeflag: tar.TypeReg, Size: int64(len(pax)), Mode: 0o644, ModTime: defTime, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tw, pax)
	if err := tw.WriteHeader(&tar.Header{Name: "GNUSparseFile.0/x", Typeflag: tar.TypeReg, Size: int64(len(body)), Mode: 0o644, ModTime: defTime, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tw, body)
	tw.Close()
	b := buf.Bytes()
	hdr := b[:512]
	hdr[156] = tar.TypeXHeader
	copy(hdr[148:156], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func TestSparse(t *testing.T) {
	tests := []struct {
		name string
		size int64
		data map[int64]string
	}{
		{"holes between", 3 << 20, map[int64]string{0: "head", 1 << 20: "middle", 2<<20 + 5: "tail"}},
		{"trailing hole", 5 << 20, map[int64]string{4096: "data"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, root := testRoot(t)
			if err := applyLayers(t, root, testOpts(), sparseLayer(t, "sparse", tc.size, tc.data)); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(root, "sparse"))
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, tc.size)
			for o, d := range tc.data {
				copy(want[o:], d)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("content differs (len %d, want %d)", len(b), len(want))
			}
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(root, "sparse"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 >= tc.size {
				t.Errorf("file uses %d bytes for a %d-byte sparse file", st.Blocks*512, tc.size)
			}
		})
	}
}

// cancelReader cancels a context once n bytes have been read.
type cancelReader struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(b []byte) (int, error) {
	m, err := c.r.Read(b)
	c.n -= m
	if c.n <= 0 {
		c.cancel()
	}
	return m, err
}

func TestContextCancel(t *testing.T) {
	big := strings.Repeat("x", 3<<20)
	tests := []struct {
		name   string
		ents   []ent
		after  int // bytes read before cancelling; 0: cancelled up front
		exists []string
		gone   []string
	}{
		{"before start", []ent{file("f1", "1"), file("f2", "2")}, 0, nil, []string{"f1", "f2"}},
		{"between entries", []ent{file("f1", "0123456789"), file("f2", "2")}, 512 + 10, []string{"f1"}, []string{"f2"}},
		{"inside a large file", []ent{file("big", big), file("f2", "2")}, 512 + 1<<20, nil, []string{"f2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, root := testRoot(t)
			u, err := New(root, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var r io.Reader = bytes.NewReader(mkLayer(t, tc.ents...))
			if tc.after == 0 {
				cancel()
			} else {
				r = &cancelReader{r: r, n: tc.after, cancel: cancel}
			}
			err = u.Apply(ctx, 0, r)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			for _, p := range tc.exists {
				if !exists(root, p) {
					t.Errorf("%s missing", p)
				}
			}
			wantGone(t, root, tc.gone...)
		})
	}
}

func TestNew(t *testing.T) {
	dirPath := t.TempDir()
	filePath := filepath.Join(dirPath, "file")
	if err := os.WriteFile(filePath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		root string
		ok   bool
	}{
		{"dir", dirPath, true},
		{"missing", filepath.Join(dirPath, "missing"), false},
		{"file", filePath, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := New(tc.root, Options{Log: zerolog.Nop()})
			if (err == nil) != tc.ok {
				t.Fatalf("New(%q) err = %v, want ok=%v", tc.root, err, tc.ok)
			}
			if u != nil {
				if err := u.Finish(); err != nil {
					t.Error(err)
				}
				if err := u.Apply(context.Background(), 0, bytes.NewReader(nil)); err == nil {
					t.Error("Apply after Finish succeeded")
				}
				if err := u.Close(); err != nil {
					t.Error(err)
				}
				if err := u.Close(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestTruncatedLayer(t *testing.T) {
	tests := []struct {
		name string
		cut  int
	}{
		{"inside header", 100},
		{"inside data", 512 + 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, root := testRoot(t)
			l := mkLayer(t, file("f", strings.Repeat("y", 100)))
			u, err := New(root, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if err := u.Apply(context.Background(), 3, bytes.NewReader(l[:tc.cut])); err == nil {
				t.Fatal("truncated layer applied without error")
			} else if !strings.Contains(err.Error(), "layer 3") {
				t.Errorf("err = %v, want layer 3 in message", err)
			}
		})
	}
}

func BenchmarkApply(b *testing.B) {
	body := strings.Repeat("0123456789abcdef", 256) // 4 KiB
	var ents []ent
	for d := range 100 {
		dn := "usr/share/dir" + strconv.Itoa(d) + "/"
		ents = append(ents, dir(dn))
		for f := range 20 {
			ents = append(ents, file(dn+"file"+strconv.Itoa(f), body))
		}
		ents = append(ents, symlink(dn+"link", "file0"))
	}
	layer := mkLayer(b, ents...)
	b.SetBytes(int64(len(layer)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		root := filepath.Join(b.TempDir(), strconv.Itoa(i))
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		u, err := New(root, Options{Log: zerolog.Nop(), Owner: os.Geteuid() == 0})
		if err != nil {
			b.Fatal(err)
		}
		if err := u.Apply(context.Background(), 0, bytes.NewReader(layer)); err != nil {
			b.Fatal(err)
		}
		if err := u.Finish(); err != nil {
			b.Fatal(err)
		}
		u.Close()
	}
}
