package tarstream

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capability is a binary security.capability value (v2, cap_net_raw
// permitted and effective): NUL bytes and all.
const capability = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

var (
	longName = strings.Repeat("long-directory-name/", 11) + "file-with-a-long-name.txt" // 245 bytes
	longLink = strings.Repeat("../", 40) + "target"
	t0       = time.Unix(1700000000, 0)
)

var unixGetxattr = unix.Getxattr

// writeGo writes headers (with data of their Size, made up) with
// archive/tar.
func writeGo(t testing.TB, hdrs []*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			data := bytes.Repeat([]byte(h.Name+"\n"), int(h.Size)/len(h.Name)+1)[:h.Size]
			if _, err := tw.Write(data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// goArchives are archives written by archive/tar in each format.
func goArchives(t testing.TB) map[string][]byte {
	common := func(f tar.Format) []*tar.Header {
		return []*tar.Header{
			{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: t0, Format: f},
			{Typeflag: tar.TypeReg, Name: "etc/hosts", Mode: 0o644, Size: 1000, ModTime: t0, Uname: "root", Gname: "root", Format: f},
			{Typeflag: tar.TypeReg, Name: "empty", Mode: 0o600, ModTime: t0, Format: f},
			{Typeflag: tar.TypeSymlink, Name: "etc/link", Linkname: "hosts", Mode: 0o777, ModTime: t0, Format: f},
			{Typeflag: tar.TypeLink, Name: "etc/hard", Linkname: "etc/hosts", Mode: 0o644, ModTime: t0, Format: f},
			{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t0, Format: f},
			{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0, ModTime: t0, Format: f},
			{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: t0, Format: f},
			{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: 70000, ModTime: t0, Format: f},
			{Typeflag: tar.TypeReg, Name: "block", Mode: 0o644, Size: 512, ModTime: t0, Format: f},
		}
	}
	ustar := append(common(tar.FormatUSTAR),
		// Split into prefix and name.
		&tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("p", 120) + "/" + strings.Repeat("n", 90),
			Mode: 0o644, Size: 3, ModTime: t0, Format: tar.FormatUSTAR})
	pax := append(common(tar.FormatPAX),
		&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global",
			PAXRecords: map[string]string{"mtime": "1234.5", "comment": "hello"}},
		&tar.Header{Typeflag: tar.TypeReg, Name: longName, Mode: 0o755, Size: 10, ModTime: t0,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capability,
				"SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0\x00",
				"SCHILY.xattr.user.empty":       ""},
			Format: tar.FormatPAX},
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "s", Linkname: longLink, ModTime: t0, Format: tar.FormatPAX},
		&tar.Header{Typeflag: tar.TypeLink, Name: longName + ".hard", Linkname: longName, ModTime: t0, Format: tar.FormatPAX},
		&tar.Header{Typeflag: tar.TypeReg, Name: "subsecond", Size: 5, ModTime: time.Unix(1600000000, 123456789),
			AccessTime: time.Unix(1600000001, 5), ChangeTime: time.Unix(1600000002, 6), Format: tar.FormatPAX},
		&tar.Header{Typeflag: tar.TypeReg, Name: "bigid", Uid: 1 << 30, Gid: 1 << 31, Size: 1, ModTime: t0,
			Uname: strings.Repeat("u", 40), Format: tar.FormatPAX},
		&tar.Header{Typeflag: tar.TypeReg, Name: "née", Size: 2, ModTime: t0, Format: tar.FormatPAX},
		&tar.Header{Typeflag: tar.TypeReg, Name: "creation", Size: 2, ModTime: time.Unix(1600000000, 5e8),
			PAXRecords: map[string]string{"LIBARCHIVE.creationtime": "1500000000"},
			Format:     tar.FormatPAX},
	)
	gnu := append(common(tar.FormatGNU),
		&tar.Header{Typeflag: tar.TypeReg, Name: longName, Mode: 0o644, Size: 600, ModTime: t0, Format: tar.FormatGNU},
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "s", Linkname: longLink, ModTime: t0, Format: tar.FormatGNU},
		&tar.Header{Typeflag: tar.TypeLink, Name: longName + ".hard", Linkname: longName, ModTime: t0, Format: tar.FormatGNU},
		&tar.Header{Typeflag: tar.TypeReg, Name: "bigid", Uid: 1 << 30, Gid: 1 << 31, Size: 1, ModTime: time.Unix(-100, 0),
			Format: tar.FormatGNU},
		&tar.Header{Typeflag: tar.TypeReg, Name: "times", Size: 1, ModTime: t0,
			AccessTime: time.Unix(1600000001, 0), ChangeTime: time.Unix(1600000002, 0), Format: tar.FormatGNU},
		&tar.Header{Typeflag: tar.TypeChar, Name: "dev/big", Devmajor: 1 << 22, Devminor: 1 << 30, ModTime: t0, Format: tar.FormatGNU},
	)
	return map[string][]byte{
		"go-ustar": writeGo(t, ustar),
		"go-pax":   writeGo(t, pax),
		"go-gnu":   writeGo(t, gnu),
	}
}

// pythonScript writes archives with Python's tarfile into argv[1].
const pythonScript = `
import io, os, sys, tarfile
out = sys.argv[1]
cap = "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12
long = "long-directory-name/" * 11 + "file-with-a-long-name.txt"
def add(tf, name, type=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mtime = kw.pop("mtime", 1700000000)
    for k, v in kw.items():
        setattr(ti, k, v)
    ti.size = len(data) if type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    tf.addfile(ti, io.BytesIO(data) if ti.size else None)
def common(tf):
    add(tf, "etc", tarfile.DIRTYPE, mode=0o755)
    add(tf, "etc/hosts", data=b"127.0.0.1 localhost\n" * 40, uname="root", gname="root")
    add(tf, "etc/link", tarfile.SYMTYPE, linkname="hosts")
    add(tf, "etc/hard", tarfile.LNKTYPE, linkname="etc/hosts")
    add(tf, "dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
    add(tf, "dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
    add(tf, "run/fifo", tarfile.FIFOTYPE)
    add(tf, "old", tarfile.AREGTYPE, data=b"old style")
for fmt, name in ((tarfile.USTAR_FORMAT, "ustar"), (tarfile.GNU_FORMAT, "gnu"), (tarfile.PAX_FORMAT, "pax")):
    kw = {}
    if fmt == tarfile.PAX_FORMAT:
        kw["pax_headers"] = {"mtime": "1234567890.25", "atime": "1", "comment": "global"}
    with tarfile.open(os.path.join(out, "python-" + name + ".tar"), "w", format=fmt, **kw) as tf:
        common(tf)
        if fmt != tarfile.USTAR_FORMAT:
            add(tf, long, data=b"x" * 700)
            add(tf, "s", tarfile.SYMTYPE, linkname="../" * 40 + "target")
            add(tf, "bigid", data=b"1", uid=1 << 30, gid=1 << 31, mtime=-5)
        if fmt == tarfile.PAX_FORMAT:
            ti = tarfile.TarInfo("cap")
            ti.mtime = 1700000000.5
            ti.pax_headers = {"SCHILY.xattr.security.capability": cap, "atime": "1600000000.1",
                              "ctime": "1600000000.2"}
            ti.size = 3
            tf.addfile(ti, io.BytesIO(b"cap"))
            add(tf, "unicode-\u00e9\u00e8", data=b"u")
`

// pythonArchives are archives written by Python's tarfile (as the
// original occystrap writes layers).
func pythonArchives(t *testing.T) map[string][]byte {
	dir := t.TempDir()
	runPython(t, pythonScript, dir)
	return readDir(t, dir)
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[strings.TrimSuffix(e.Name(), ".tar")] = b
	}
	return m
}

// makeTree makes the files GNU tar archives: long names and links, hard
// links, a fifo, a sparse file, devices and xattrs when possible. short
// leaves out what ustar and v7 cannot store.
func makeTree(t *testing.T, root string, short bool) (xattrs bool) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	d := filepath.Join(root, "d")
	must(os.MkdirAll(filepath.Join(d, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(d, "small"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(d, "sub", "big"), bytes.Repeat([]byte("0123456789abcdef"), 12000), 0o644))
	must(os.Symlink("small", filepath.Join(d, "link")))
	must(os.Link(filepath.Join(d, "small"), filepath.Join(d, "hard")))
	must(unix.Mkfifo(filepath.Join(d, "fifo"), 0o600))
	if os.Getuid() == 0 {
		must(unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(filepath.Join(d, "blk"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	}
	// A sparse file with more data regions than an old GNU header holds
	// (4), so that it needs extension blocks: holes, data, data at the end.
	f, err := os.Create(filepath.Join(d, "sparse"))
	must(err)
	for i := range 30 {
		_, err = f.WriteAt(bytes.Repeat([]byte{byte('A' + i)}, 600), int64(i+1)<<15)
		must(err)
	}
	_, err = f.WriteAt([]byte("end"), 1<<20)
	must(err)
	must(f.Close())
	if !short {
		ln := filepath.Join(d, filepath.FromSlash(longName))
		must(os.MkdirAll(filepath.Dir(ln), 0o755))
		must(os.WriteFile(ln, []byte("long\n"), 0o644))
		must(os.Symlink(strings.Repeat("../", 40)+"target", filepath.Join(d, "longlink")))
		must(os.Link(ln, filepath.Join(d, "hard-to-long")))
		cp := filepath.Join(d, "cap")
		must(os.WriteFile(cp, []byte("#!/bin/true\n"), 0o755))
		xattrs = unix.Setxattr(cp, "security.capability", []byte(capability), 0) == nil &&
			unix.Setxattr(cp, "user.comment", []byte("kept"), 0) == nil
	}
	for _, p := range []string{d, filepath.Join(d, "sub")} {
		must(os.Chtimes(p, t0, t0))
	}
	return xattrs
}

// gnuArchives are archives written by GNU tar in each format, sparse or
// not.
func gnuArchives(t *testing.T) map[string][]byte {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	m := map[string][]byte{}
	full, short := t.TempDir(), t.TempDir()
	xattrs := makeTree(t, full, false)
	makeTree(t, short, true)
	out := t.TempDir()
	run := func(name, dir string, args ...string) {
		p := filepath.Join(out, name+".tar")
		cmd := exec.Command("tar", append(append([]string{"-C", dir, "-cf", p}, args...), "d")...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tar %v: %v: %s", args, err, b)
		}
	}
	for _, f := range []string{"gnu", "oldgnu", "pax"} {
		run("gnutar-"+f, full, "--format="+f)
		run("gnutar-"+f+"-sparse", full, "--format="+f, "--sparse")
	}
	for _, v := range []string{"0.0", "0.1", "1.0"} {
		run("gnutar-pax-sparse-"+v, full, "--format=pax", "--sparse", "--sparse-version="+v)
	}
	if xattrs {
		run("gnutar-pax-xattrs", full, "--format=pax", "--xattrs", "--xattrs-include=*")
	}
	run("gnutar-ustar", short, "--format=ustar")
	run("gnutar-v7", short, "--format=v7", "--exclude=d/fifo", "--exclude=d/null", "--exclude=d/blk")
	run("gnutar-gnu-b1", full, "--format=gnu", "-b1")
	run("gnutar-pax-b1", full, "--format=pax", "-b1", "--sparse")
	run("gnutar-pax-b64", full, "--format=pax", "-b64", "--sparse", "--sparse-version=0.0")
	for k, v := range readDir(t, out) {
		m[k] = v
	}
	return m
}

var (
	archivesMu    sync.Mutex
	archivesCache map[string][]byte
)

// allArchives is every archive the tests use (made once).
func allArchives(t *testing.T) map[string][]byte {
	archivesMu.Lock()
	defer archivesMu.Unlock()
	if archivesCache != nil {
		return archivesCache
	}
	m := goArchives(t)
	complete := true
	for _, f := range []func(*testing.T) map[string][]byte{gnuArchives, pythonArchives} {
		var sub map[string][]byte
		if !t.Run("make", func(t *testing.T) { sub = f(t) }) {
			complete = false
		}
		for k, v := range sub {
			m[k] = v
		}
	}
	if complete {
		archivesCache = m
	}
	return m
}

func sortedKeys(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
