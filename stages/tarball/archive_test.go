package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/elements"
)

// readHeader parses b (one or more headers, possibly without data) with
// archive/tar and returns the first header.
func readHeader(t *testing.T, b []byte) *tar.Header {
	t.Helper()
	hdr, err := tar.NewReader(bytes.NewReader(b)).Next()
	if err != nil {
		t.Fatalf("archive/tar cannot read the header: %v", err)
	}
	return hdr
}

func TestHeaderNames(t *testing.T) {
	long100 := strings.Repeat("n", 100)
	dir155 := strings.Repeat("p", 155)
	tests := []struct {
		name       string
		member     string
		wantErr    bool
		wantPrefix string // the USTAR prefix field, when split
	}{
		{"short", "manifest.json", false, ""},
		{"with a directory", "abc/layer.tar", false, ""},
		{"exactly 100", long100, false, ""},
		{"exactly 100 with slash", strings.Repeat("d", 50) + "/" + strings.Repeat("f", 49), false, ""},
		{"101 split at the slash", strings.Repeat("d", 60) + "/" + strings.Repeat("f", 40), false, strings.Repeat("d", 60)},
		{"layer path", strings.Repeat("a", 64) + "/" + strings.Repeat("b", 30) + "/layer.tar", false, strings.Repeat("a", 64) + "/" + strings.Repeat("b", 30)},
		{"name part exactly 100", "d/" + long100, false, "d"},
		{"prefix exactly 155", dir155 + "/f", false, dir155},
		{"255 bytes", dir155 + "/" + strings.Repeat("f", 99), false, dir155},
		{"256 bytes", dir155 + "/" + long100, false, dir155},
		{"split at the last usable slash", "a/" + strings.Repeat("b", 100) + "/c", false, "a/" + strings.Repeat("b", 100)},
		{"101 without a slash", strings.Repeat("x", 101), true, ""},
		{"only a leading slash", "/" + strings.Repeat("x", 100), true, ""},
		{"name part over 100", "d/" + strings.Repeat("n", 101), true, ""},
		{"trailing slash", strings.Repeat("d", 101) + "/", true, ""},
		{"prefix over 155", strings.Repeat("p", 156) + "/f", true, ""},
		{"257 bytes", dir155 + "/" + strings.Repeat("f", 101), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := header(tt.member, 5)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("header(%q) succeeded, want an error", tt.member)
				}
				if !strings.Contains(err.Error(), "too long") {
					t.Errorf("error %q does not say the name is too long", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("header(%q): %v", tt.member, err)
			}
			if len(h) != blockSize {
				t.Fatalf("header is %d bytes", len(h))
			}
			if got := string(bytes.TrimRight(h[345:500], "\x00")); got != tt.wantPrefix {
				t.Errorf("prefix field = %q, want %q", got, tt.wantPrefix)
			}
			hdr := readHeader(t, append(h, make([]byte, 3*blockSize)...))
			if hdr.Name != tt.member {
				t.Errorf("read back name %q, want %q", hdr.Name, tt.member)
			}
			if hdr.Size != 5 || hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o644 || hdr.Uid != 0 || hdr.Gid != 0 || hdr.ModTime.Unix() != 0 || hdr.Uname != "" {
				t.Errorf("read back size %d type %q mode %o uid %d gid %d mtime %v uname %q", hdr.Size, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.ModTime, hdr.Uname)
			}
			if hdr.Format != tar.FormatUSTAR {
				t.Errorf("format %v, want USTAR", hdr.Format)
			}
		})
	}
}

func TestHeaderSizes(t *testing.T) {
	tests := []struct {
		name     string
		size     int64
		base256  bool
		wantOcts string // the octal field, for the octal form
	}{
		{"zero", 0, false, "00000000000"},
		{"511", 511, false, "00000000777"},
		{"512", 512, false, "00000001000"},
		{"1 MiB", 1 << 20, false, "00004000000"},
		{"8 GiB - 1", 1<<33 - 1, false, "77777777777"},
		{"8 GiB", 1 << 33, true, ""},
		{"100 GiB", 100 << 30, true, ""},
		{"1 TiB + 3", 1<<40 + 3, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := header("big/layer.tar", tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if got := h[124] == 0x80; got != tt.base256 {
				t.Errorf("base-256 marker %v, want %v", got, tt.base256)
			}
			if !tt.base256 {
				if got := string(h[124:135]); got != tt.wantOcts || h[135] != 0 {
					t.Errorf("size field %q (+%#x), want %q + NUL", got, h[135], tt.wantOcts)
				}
			}
			// Only the header: archive/tar parses it without reading data.
			hdr := readHeader(t, h)
			if hdr.Size != tt.size {
				t.Errorf("read back size %d, want %d", hdr.Size, tt.size)
			}
			if hdr.Name != "big/layer.tar" {
				t.Errorf("read back name %q", hdr.Name)
			}
		})
	}
}

func TestHeaderChecksum(t *testing.T) {
	h, err := header("x", 1234)
	if err != nil {
		t.Fatal(err)
	}
	// Any change to a header byte must make archive/tar refuse it.
	bad := append([]byte{}, h...)
	bad[0] = 'y'
	if _, err := tar.NewReader(bytes.NewReader(bad)).Next(); err == nil {
		t.Error("archive/tar accepted a header with a wrong checksum")
	}
	if string(h[257:263]) != "ustar\x00" || string(h[263:265]) != "00" {
		t.Errorf("magic %q version %q", h[257:263], h[263:265])
	}
}

// tarMember is a member read back from an archive.
type tarMember struct {
	name string
	size int64
	data []byte
}

func readArchive(t *testing.T, b []byte) []tarMember {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var ms []tarMember
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		ms = append(ms, tarMember{hdr.Name, hdr.Size, data})
	}
}

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "a.tar"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// smallReader returns at most max bytes per Read.
type smallReader struct {
	r   io.Reader
	max int
}

func (s *smallReader) Read(p []byte) (int, error) {
	if len(p) > s.max {
		p = p[:s.max]
	}
	return s.r.Read(p)
}

func TestArchive(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (copyBuf*2+100)/16)
	tests := []struct {
		name    string
		members []struct {
			name   string
			data   []byte
			stream bool
		}
	}{
		{name: "empty archive"},
		{name: "one small in memory", members: []struct {
			name   string
			data   []byte
			stream bool
		}{{"c.json", []byte(`{"a":1}`), false}}},
		{name: "mixed", members: []struct {
			name   string
			data   []byte
			stream bool
		}{
			{"c.json", []byte(`{"config":true}`), false},
			{"l0/layer.tar", nil, true},
			{"l1/layer.tar", []byte("x"), true},
			{"l2/layer.tar", bytes.Repeat([]byte{7}, 512), true},
			{"l3/layer.tar", bytes.Repeat([]byte{8}, 513), true},
			{"l4/layer.tar", big, true},
			{"empty", []byte{}, false},
			{"manifest.json", []byte(`[]`), false},
		}},
		{name: "exactly a record", members: []struct {
			name   string
			data   []byte
			stream bool
		}{{"f", make([]byte, recordSize-4*blockSize), false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tempFile(t)
			a := newArchive(f)
			for _, m := range tt.members {
				if m.stream {
					n, err := a.addStream(context.Background(), func() (string, error) { return m.name, nil }, &smallReader{bytes.NewReader(m.data), 100000})
					if err != nil {
						t.Fatalf("addStream %s: %v", m.name, err)
					}
					if n != int64(len(m.data)) {
						t.Errorf("addStream %s = %d bytes, want %d", m.name, n, len(m.data))
					}
				} else if err := a.add(m.name, m.data); err != nil {
					t.Fatalf("add %s: %v", m.name, err)
				}
			}
			if err := a.close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if len(b) == 0 || len(b)%recordSize != 0 {
				t.Errorf("archive is %d bytes, not a positive multiple of %d", len(b), recordSize)
			}
			if int64(len(b)) != a.off {
				t.Errorf("archive is %d bytes but off is %d", len(b), a.off)
			}
			got := readArchive(t, b)
			if len(got) != len(tt.members) {
				t.Fatalf("read back %d members, want %d", len(got), len(tt.members))
			}
			var dataEnd int
			for i, m := range tt.members {
				if got[i].name != m.name || got[i].size != int64(len(m.data)) || !bytes.Equal(got[i].data, m.data) {
					t.Errorf("member %d = %s (%d bytes), want %s (%d bytes)", i, got[i].name, got[i].size, m.name, len(m.data))
				}
				dataEnd += blockSize + (len(m.data)+blockSize-1)/blockSize*blockSize
			}
			// At least two zero blocks end the archive.
			if len(b)-dataEnd < 2*blockSize || len(bytes.Trim(b[dataEnd:], "\x00")) != 0 {
				t.Errorf("archive does not end in at least two zero blocks after its members")
			}
		})
	}
}

func TestArchiveAddStreamErrors(t *testing.T) {
	boom := errors.New("boom")
	cancelled, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("stopped by the test"))
	tests := []struct {
		name   string
		ctx    context.Context
		member string
		r      io.Reader
		want   string
	}{
		{"read error", context.Background(), "l/layer.tar", io.MultiReader(strings.NewReader("abc"), &failReader{boom}), "boom"},
		{"cancelled", cancelled, "l/layer.tar", strings.NewReader("abc"), "stopped by the test"},
		{"name too long", context.Background(), strings.Repeat("x", 101), strings.NewReader("abc"), "too long"},
		{"name unknown at the end", context.Background(), "", strings.NewReader("abc"), "no name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newArchive(tempFile(t))
			_, err := a.addStream(tt.ctx, func() (string, error) {
				if tt.member == "" {
					return "", errors.New("no name")
				}
				return tt.member, nil
			}, tt.r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("addStream error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

func TestArchiveAddRange(t *testing.T) {
	src := tempFile(t)
	data := bytes.Repeat([]byte("range bytes "), 1000)
	if _, err := src.Write(append([]byte("HEAD"), data...)); err != nil {
		t.Fatal(err)
	}
	rng := elements.FileRange{File: src, Offset: 4, Length: int64(len(data))}
	verr := errors.New("verification failed")
	tests := []struct {
		name    string
		verify  error
		wantErr error
	}{
		{"verified", nil, nil},
		{"verification fails", verr, verr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tempFile(t)
			a := newArchive(f)
			if err := a.add("first", []byte("1")); err != nil {
				t.Fatal(err)
			}
			var progress int64
			n, err := a.addRange(context.Background(), "l/layer.tar", rng, func() error { return tt.verify }, func(k int64) { progress += k })
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("addRange error = %v, want %v", err, tt.wantErr)
			}
			if n != int64(len(data)) || progress != n {
				t.Errorf("addRange = %d bytes, progress %d, want %d", n, progress, len(data))
			}
			if err != nil {
				return
			}
			if err := a.add("last", []byte("2")); err != nil {
				t.Fatal(err)
			}
			if err := a.close(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(f.Name())
			got := readArchive(t, b)
			if len(got) != 3 || got[1].name != "l/layer.tar" || !bytes.Equal(got[1].data, data) || got[2].name != "last" {
				t.Errorf("archive members do not read back as written")
			}
		})
	}
}

func TestManifestJSON(t *testing.T) {
	tests := []struct {
		name   string
		layers []string
		tags   []string
		config string
		want   string
	}{
		{"docker save shape", []string{"a/layer.tar", "b/layer.tar"}, []string{"busybox:latest"}, "c.json",
			`[{"Layers": ["a/layer.tar", "b/layer.tar"], "RepoTags": ["busybox:latest"], "Config": "c.json"}]`},
		{"nil tags", []string{"a/layer.tar"}, nil, "c.json",
			`[{"Layers": ["a/layer.tar"], "RepoTags": [], "Config": "c.json"}]`},
		{"empty tags", []string{"a/layer.tar"}, []string{}, "c.json",
			`[{"Layers": ["a/layer.tar"], "RepoTags": [], "Config": "c.json"}]`},
		{"no layers", nil, []string{"x:1"}, "c.json",
			`[{"Layers": [], "RepoTags": ["x:1"], "Config": "c.json"}]`},
		{"several tags", []string{"l/layer.tar"}, []string{"a:1", "ghcr.io/o/b:2"}, "d.json",
			`[{"Layers": ["l/layer.tar"], "RepoTags": ["a:1", "ghcr.io/o/b:2"], "Config": "d.json"}]`},
		{"quotes escaped, HTML not", []string{`q"/layer.tar`}, []string{"a<b>&c"}, `c\.json`,
			`[{"Layers": ["q\"/layer.tar"], "RepoTags": ["a<b>&c"], "Config": "c\\.json"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(manifestJSON(tt.layers, tt.tags, tt.config)); got != tt.want {
				t.Errorf("manifestJSON =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestFamiliar(t *testing.T) {
	tests := []struct{ in, want string }{
		{"busybox:latest", "busybox:latest"},
		{"busybox", "busybox:latest"},
		{"docker.io/library/busybox:latest", "busybox:latest"},
		{"index.docker.io/library/busybox:1", "busybox:1"},
		{"registry-1.docker.io/library/busybox:1", "busybox:1"},
		{"docker.io/myorg/app:v2", "myorg/app:v2"},
		{"library/busybox:1", "busybox:1"},
		{"ghcr.io/org/app:v1", "ghcr.io/org/app:v1"},
		{"127.0.0.1:5000/x/y:z", "127.0.0.1:5000/x/y:z"},
		{"localhost:5000/app:1", "localhost:5000/app:1"},
		{"example.com/test/sample:v1", "example.com/test/sample:v1"},
		{"", ""},
		{"not a valid ref:!!", "not a valid ref:!!"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Familiar(tt.in); got != tt.want {
				t.Errorf("Familiar(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{strings.Repeat("a", 64), true},
		{"layer-1", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{`a\b`, false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkName(tt.name); (err == nil) != tt.ok {
				t.Errorf("checkName(%q) = %v, want ok %v", tt.name, err, tt.ok)
			}
		})
	}
}
