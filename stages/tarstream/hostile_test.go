package tarstream

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
	"time"
)

// rawHeader makes a ustar header block.
func rawHeader(name string, typ byte, size int64) []byte {
	b := make([]byte, blockSize)
	copy(b, name)
	copy(b[offMode:], "0000644\x00")
	copy(b[offUID:], "0000000\x00")
	copy(b[offGID:], "0000000\x00")
	setNumeric(b[offSize:offSize+lenNum], size)
	copy(b[offMtime:], "00000000000\x00")
	b[offTypeflag] = typ
	copy(b[offMagic:], "ustar\x0000")
	setChecksum(b)
	return b
}

// padded pads data to whole blocks.
func padded(data []byte) []byte {
	return append(append([]byte{}, data...), make([]byte, padding(int64(len(data))))...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func withSize(h []byte, field []byte) []byte {
	copy(h[offSize:offSize+lenNum], field)
	setChecksum(h)
	return h
}

func TestHostile(t *testing.T) {
	file := cat(rawHeader("f", '0', 3), padded([]byte("abc")))
	end := make([]byte, 2*blockSize)
	badSum := cat(file, rawHeader("g", '0', 0), end)
	badSum[blockSize*2+3] = 'X' // the second header's name
	gnuSparse := rawHeader("s", 'S', 0)
	copy(gnuSparse[offMagic:], "ustar  \x00")
	gnuSparse[offGNUIsExt] = 1
	setChecksum(gnuSparse)
	ext := make([]byte, blockSize)
	ext[offExtIsExt] = 1
	ustarSparse := rawHeader("s", 'S', 0)
	ustarSparse[offGNUIsExt] = 1
	setChecksum(ustarSparse)
	rec := func(k, v string) string { return string(appendPAXRecord(nil, k, v)) }
	pax := func(recs string) []byte {
		return cat(rawHeader("PaxHeader", 'x', int64(len(recs))), padded([]byte(recs)))
	}
	var manyPAX []byte
	for range 5 {
		manyPAX = append(manyPAX, pax("1048576 comment="+strings.Repeat("c", 1048576-len("1048576 comment=")-1)+"\n")...)
	}

	tests := []struct {
		name string
		in   []byte
		want string // in the error
	}{
		{"bad checksum", badSum, "header at offset 1024: bad header checksum"},
		{"huge PAX header", cat(rawHeader("PaxHeader", 'x', 2<<20), make([]byte, 4096)), "larger than the 1048576 accepted"},
		{"huge GNU long name", cat(rawHeader("././@LongLink", 'L', 1<<20+1), make([]byte, 4096)), "larger than"},
		{"negative size", cat(withSize(rawHeader("f", '0', 0), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}), end), "negative size -2"},
		{"negative extended size", cat(withSize(rawHeader("x", 'x', 0), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), end), "negative size"},
		{"overflowing size", cat(withSize(rawHeader("f", '0', 0), []byte{0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), end), "invalid size field"},
		{"invalid octal", cat(withSize(rawHeader("f", '0', 0), []byte("00000000009\x00")), end), "invalid size field"},
		{"negative PAX size", cat(pax(rec("size", "-50")), rawHeader("f", '0', 0), end), "negative size -50"},
		{"invalid PAX size", cat(pax(rec("size", "abc")), rawHeader("f", '0', 0), end), "invalid PAX size record"},
		{"invalid PAX uid", cat(pax(rec("uid", "x")), rawHeader("f", '0', 0), end), "invalid PAX uid record"},
		{"PAX record length wrong", cat(pax("10 a=b\n"), rawHeader("f", '0', 0), end), "malformed PAX record"},
		{"PAX record without =", cat(pax("6 ab\n"), rawHeader("f", '0', 0), end), "malformed PAX record"},
		{"PAX record length too big", cat(pax("99999999999999999999999 a=b\n"), rawHeader("f", '0', 0), end), "malformed PAX record"},
		{"garbage after PAX records", cat(pax("6 a=b\nxyz"), rawHeader("f", '0', 0), end), "malformed PAX record"},
		{"end marker after PAX header", cat(pax("6 a=b\n"), end), "end-of-archive block after the extended header"},
		{"end after PAX header", pax("6 a=b\n"), "truncated after the extended header"},
		{"truncated PAX header", cat(rawHeader("PaxHeader", 'x', 1000), make([]byte, 100)), "truncated in the extended header"},
		{"truncated data", cat(rawHeader("f", '0', 1<<20), make([]byte, 10)), `truncated in the data of "f"`},
		{"huge size, little data", cat(withSize(rawHeader("f", '0', 0), []byte{0x80, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0}), make([]byte, 10)), "truncated"},
		{"partial header", cat(file, make([]byte, 100)), "not a whole header block"},
		{"endless sparse map", cat(gnuSparse, bytes.Repeat(ext, 3000)), "more than 2048 GNU sparse extension blocks"},
		{"truncated sparse map", cat(gnuSparse, ext, ext), "truncated in the sparse map"},
		{"sparse in ustar header", cat(ustarSparse, end), "old GNU sparse entry in a non-GNU header"},
		{"too many extended headers", cat(manyPAX, rawHeader("f", '0', 0), end), "exceed 4194304 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := pass(tt.in, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(tt.want, "truncated") && !isTruncation(err) {
				t.Errorf("%v is not a truncation", err)
			}
			// Normalising and dropping meet the same error.
			if _, _, err2 := pass(tt.in, func(rw *Rewriter, e *Entry) error { e.SetModTime(0); return rw.Drop() }); err2 == nil {
				t.Error("dropping passed")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestTruncatedEverywhere cuts archives at every block and then some:
// either the cut fell between entries (or in the end blocks, or in the
// last entry's padding) and the output is the input, or the error says
// truncated.
func TestTruncatedEverywhere(t *testing.T) {
	archives := goArchives(t)
	for _, name := range sortedKeys(archives) {
		in := archives[name]
		for cut := 0; cut < len(in); cut += 97 {
			out, _, err := pass(in[:cut], nil)
			if err == nil {
				if !bytes.Equal(out, in[:cut]) {
					t.Fatalf("%s cut at %d: output differs", name, cut)
				}
				continue
			}
			if !isTruncation(err) {
				t.Fatalf("%s cut at %d: %v", name, cut, err)
			}
		}
	}
}

func FuzzRewriter(f *testing.F) {
	// Small seeds: the fuzzer is slow on large inputs.
	f.Add(writeGo(f, []*tar.Header{
		{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"mtime": "5"}},
		{Typeflag: tar.TypeReg, Name: strings.Repeat("n", 120), Size: 3, ModTime: time.Unix(1, 5), Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.a": "b"}},
		{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1, Uid: 1 << 30, Format: tar.FormatPAX},
	}))
	f.Add(writeGo(f, []*tar.Header{
		{Typeflag: tar.TypeReg, Name: strings.Repeat("n", 120), Size: 3, Format: tar.FormatGNU},
		{Typeflag: tar.TypeSymlink, Name: "l", Linkname: strings.Repeat("t", 110), Format: tar.FormatGNU},
		{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1, Uid: 1 << 30, Format: tar.FormatGNU},
	}))
	f.Add(writeGo(f, []*tar.Header{
		{Typeflag: tar.TypeReg, Name: "a/b", Size: 600, Format: tar.FormatUSTAR},
		{Typeflag: tar.TypeDir, Name: "d/", Format: tar.FormatUSTAR},
	}))
	gnuSparse := rawHeader("s", 'S', 3)
	copy(gnuSparse[offMagic:], "ustar  \x00")
	gnuSparse[offGNUIsExt] = 1
	setChecksum(gnuSparse)
	f.Add(cat(gnuSparse, make([]byte, blockSize), padded([]byte("abc")), make([]byte, 1024)))
	f.Add(cat(rawHeader("PaxHeader", 'x', 12), padded([]byte("12 size=600\n")), rawHeader("f", '0', 0), make([]byte, 1024)))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, changed, err := pass(in, nil)
		if err == nil && (!bytes.Equal(out, in) || changed) {
			t.Fatal("keep-all changed the archive")
		}
		n, _, err := pass(in, func(rw *Rewriter, e *Entry) error {
			e.SetModTime(7)
			if strings.Contains(e.Name, "a") {
				return rw.Drop()
			}
			return rw.Keep()
		})
		if err == nil {
			// What was normalised parses the same way, with every
			// time at 7.
			for _, e := range entries(t, n) {
				if e.Typeflag != 'g' && e.ModTime.Unix() != 7 {
					t.Fatalf("%q: mtime %v", e.Name, e.ModTime)
				}
			}
		}
	})
}
