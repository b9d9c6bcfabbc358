package elements_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// mkTar returns a small uncompressed tar stream holding files name -> body,
// in the order given.
func mkTar(t testing.TB, files ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i+1 < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[i+1]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// countBody is a Body that counts its Close calls.
type countBody struct {
	io.Reader
	closed atomic.Int32
}

func (c *countBody) Close() error {
	c.closed.Add(1)
	return nil
}

func newBody(b []byte) *countBody { return &countBody{Reader: bytes.NewReader(b)} }

// errReader fails every Read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestDetect(t *testing.T) {
	ustar := make([]byte, 512)
	copy(ustar[257:], "ustar\x0000")
	gnu := make([]byte, 512)
	copy(gnu[257:], "ustar  \x00")
	shortUstar := make([]byte, 261) // too short to hold the whole magic
	copy(shortUstar[257:], "usta")
	ustarWrongPlace := make([]byte, 512)
	copy(ustarWrongPlace[256:], "ustar")
	ustarWrongPlace[0] = 'x'
	tests := []struct {
		name string
		head []byte
		want elements.Compression
	}{
		{"gzip magic", []byte{0x1f, 0x8b, 0x08, 0x00}, elements.Gzip},
		{"gzip magic only", []byte{0x1f, 0x8b}, elements.Gzip},
		{"gzip of a real stream", gzipBytes(t, []byte("hello")), elements.Gzip},
		{"zstd magic", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00}, elements.Zstd},
		{"zstd of a real stream", zstdBytes(t, []byte("hello")), elements.Zstd},
		{"ustar at 257", ustar, elements.None},
		{"gnu tar magic at 257", gnu, elements.None},
		{"real tar", mkTar(t, "a", "b"), elements.None},
		{"empty", []byte{}, elements.None},
		{"nil", nil, elements.None},
		{"one zero byte", []byte{0}, elements.None},
		{"all-zero block", make([]byte, 512), elements.None},
		{"all-zero 1024", make([]byte, 1024), elements.None},
		{"garbage", []byte("this is not an archive of any kind, just text"), elements.Unknown},
		{"one gzip byte only", []byte{0x1f}, elements.Unknown},
		{"three zstd bytes only", []byte{0x28, 0xb5, 0x2f}, elements.Unknown},
		{"short head with partial magic", append([]byte("x"), shortUstar[1:]...), elements.Unknown},
		{"ustar at the wrong offset", ustarWrongPlace, elements.Unknown},
		{"zeros then garbage", append(make([]byte, 300), 'x'), elements.Unknown},
		{"bzip2", []byte("BZh91AY&SY"), elements.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := elements.Detect(tt.head); got != tt.want {
				t.Errorf("Detect = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCompressionString(t *testing.T) {
	tests := []struct {
		c    elements.Compression
		want string
	}{
		{elements.None, "none"},
		{elements.Gzip, "gzip"},
		{elements.Zstd, "zstd"},
		{elements.Unknown, "unknown"},
		{elements.Compression(42), "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.c.String(); got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCompressionOf(t *testing.T) {
	tests := []struct {
		mediaType string
		want      elements.Compression
	}{
		// Docker and OCI media types.
		{ocispec.MediaTypeImageLayer, elements.None},
		{ocispec.MediaTypeImageLayerGzip, elements.Gzip},
		{ocispec.MediaTypeImageLayerZstd, elements.Zstd},
		{elements.MediaTypeDockerLayer, elements.None},
		{elements.MediaTypeDockerLayerGzip, elements.Gzip},
		{elements.MediaTypeDockerLayerZstd, elements.Zstd},
		{"application/vnd.oci.image.layer.v1.tar", elements.None},
		{"application/vnd.oci.image.layer.v1.tar+gzip", elements.Gzip},
		{"application/vnd.oci.image.layer.v1.tar+zstd", elements.Zstd},
		{"application/vnd.docker.image.rootfs.diff.tar.gzip", elements.Gzip},
		// Suffix rules.
		{"application/vnd.oci.image.layer.nondistributable.v1.tar", elements.None},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", elements.Gzip},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", elements.Zstd},
		{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", elements.Gzip},
		{"application/vnd.docker.image.rootfs.foreign.diff.tar", elements.None},
		{"application/x-custom.tar.zstd", elements.Zstd},
		{"application/x-custom+gzip", elements.Gzip},
		{"application/x-custom.gzip", elements.Gzip},
		{"application/x-custom+zstd", elements.Zstd},
		{"application/x-custom.tar", elements.None},
		// Parameters after ';' are ignored.
		{"application/vnd.oci.image.layer.v1.tar;foo=bar", elements.None},
		{"application/vnd.oci.image.layer.v1.tar+gzip;foo=bar", elements.Gzip},
		{"application/vnd.oci.image.layer.v1.tar+zstd;a=b;c=d", elements.Zstd},
		{"application/x-custom.tar;compression=gzip", elements.None},
		{"application/x-custom;x=.tar", elements.Unknown},
		{"application/x-custom;x=+gzip", elements.Unknown},
		// Anything else is Unknown.
		{"", elements.Unknown},
		{"application/octet-stream", elements.Unknown},
		{ocispec.MediaTypeImageConfig, elements.Unknown},
		{ocispec.MediaTypeImageManifest, elements.Unknown},
		{"application/x-custom+bzip2", elements.Unknown},
		{"application/x-custom.tarball", elements.Unknown},
		{"application/gzip-ish", elements.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.mediaType, func(t *testing.T) {
			if got := elements.CompressionOf(tt.mediaType); got != tt.want {
				t.Errorf("CompressionOf(%q) = %v, want %v", tt.mediaType, got, tt.want)
			}
		})
	}
}

func TestLayerMediaType(t *testing.T) {
	tests := []struct {
		c    elements.Compression
		want string
	}{
		{elements.None, ocispec.MediaTypeImageLayer},
		{elements.Gzip, ocispec.MediaTypeImageLayerGzip},
		{elements.Zstd, ocispec.MediaTypeImageLayerZstd},
		{elements.Unknown, ocispec.MediaTypeImageLayer},
	}
	for _, tt := range tests {
		t.Run(tt.c.String(), func(t *testing.T) {
			got := elements.LayerMediaType(tt.c)
			if got != tt.want {
				t.Errorf("LayerMediaType(%v) = %q, want %q", tt.c, got, tt.want)
			}
			// The mapping round-trips for the known compressions.
			if tt.c != elements.Unknown {
				if back := elements.CompressionOf(got); back != tt.c {
					t.Errorf("CompressionOf(LayerMediaType(%v)) = %v", tt.c, back)
				}
			}
		})
	}
}

func TestOpenTar(t *testing.T) {
	plain := mkTar(t, "etc/hello", "hello world\n", "etc/empty", "", "bin/tool", strings.Repeat("x", 70000))
	diffID := digest.FromBytes(plain)
	gz := gzipBytes(t, plain)
	zs := zstdBytes(t, plain)
	wrong := digest.FromString("something else")
	tests := []struct {
		name      string
		body      []byte
		mediaType string
		digest    digest.Digest
		diffID    digest.Digest
		wantMis   bool // the final Read fails with a digest mismatch
	}{
		{"uncompressed", plain, ocispec.MediaTypeImageLayer, "", "", false},
		{"uncompressed docker type", plain, elements.MediaTypeDockerLayer, "", "", false},
		{"gzip", gz, ocispec.MediaTypeImageLayerGzip, "", "", false},
		{"gzip docker type", gz, elements.MediaTypeDockerLayerGzip, "", "", false},
		{"zstd", zs, ocispec.MediaTypeImageLayerZstd, "", "", false},
		{"sniffed uncompressed", plain, "application/octet-stream", "", "", false},
		{"sniffed gzip", gz, "", "", "", false},
		{"sniffed zstd", zs, "application/x-unknown", "", "", false},
		{"uncompressed right diff ID", plain, ocispec.MediaTypeImageLayer, "", diffID, false},
		{"uncompressed right diff ID and digest", plain, ocispec.MediaTypeImageLayer, diffID, diffID, false},
		{"gzip right diff ID", gz, ocispec.MediaTypeImageLayerGzip, digest.FromBytes(gz), diffID, false},
		{"zstd right diff ID", zs, ocispec.MediaTypeImageLayerZstd, "", diffID, false},
		{"sniffed gzip right diff ID", gz, "", "", diffID, false},
		{"uncompressed wrong diff ID", plain, ocispec.MediaTypeImageLayer, "", wrong, true},
		{"uncompressed wrong diff ID other digest", plain, ocispec.MediaTypeImageLayer, digest.FromBytes(plain), wrong, true},
		{"gzip wrong diff ID", gz, ocispec.MediaTypeImageLayerGzip, digest.FromBytes(gz), wrong, true},
		{"gzip diff ID is the compressed digest", gz, ocispec.MediaTypeImageLayerGzip, digest.FromBytes(gz), digest.FromBytes(gz), true},
		{"zstd wrong diff ID", zs, ocispec.MediaTypeImageLayerZstd, "", wrong, true},
		{"sniffed zstd wrong diff ID", zs, "", "", wrong, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := newBody(tt.body)
			el := elements.Element{Kind: elements.KindLayer, Name: "l", Index: 2, MediaType: tt.mediaType,
				Digest: tt.digest, DiffID: tt.diffID, Size: int64(len(tt.body)), Body: body}
			rc, err := elements.OpenTar(el)
			if err != nil {
				t.Fatalf("OpenTar: %v", err)
			}
			got, err := io.ReadAll(rc)
			if tt.wantMis {
				if err == nil {
					t.Fatal("reading to the end succeeded, want a digest mismatch")
				}
				if !errors.Is(err, elements.ErrDigestMismatch) {
					t.Fatalf("error %v does not wrap ErrDigestMismatch", err)
				}
				var de *elements.DigestError
				if !errors.As(err, &de) {
					t.Fatalf("error %v is not a *DigestError", err)
				}
				if de.Want != tt.diffID || de.Got != diffID {
					t.Errorf("DigestError Want=%s Got=%s, want Want=%s Got=%s", de.Want, de.Got, tt.diffID, diffID)
				}
				if !strings.Contains(err.Error(), "layer 2 (l)") {
					t.Errorf("error %q does not name the layer", err)
				}
				// The failure sticks.
				if _, err2 := rc.Read(make([]byte, 10)); !errors.Is(err2, elements.ErrDigestMismatch) {
					t.Errorf("Read after mismatch = %v, want the mismatch again", err2)
				}
			} else if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, plain) {
				t.Errorf("got %d bytes, want the %d bytes of the tar", len(got), len(plain))
			}
			if n := body.closed.Load(); n != 0 {
				t.Errorf("Body closed %d times before Close", n)
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := body.closed.Load(); n != 1 {
				t.Errorf("Body closed %d times, want 1", n)
			}
		})
	}
}

func TestOpenTarEmptyBodySniffsAsEmptyTar(t *testing.T) {
	body := newBody(nil)
	rc, err := elements.OpenTar(elements.Element{Kind: elements.KindLayer, Name: "e", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil || len(b) != 0 {
		t.Errorf("ReadAll = %d bytes, %v; want 0, nil", len(b), err)
	}
	rc.Close()
	if n := body.closed.Load(); n != 1 {
		t.Errorf("Body closed %d times, want 1", n)
	}
}

func TestOpenTarErrors(t *testing.T) {
	plain := mkTar(t, "a", "b")
	readErr := errors.New("disk on fire")
	tests := []struct {
		name      string
		body      io.Reader
		mediaType string
		want      []string // substrings of the error
		wantIs    error
	}{
		{"garbage", strings.NewReader("definitely not a tar, gzip or zstd stream, no no no"), "", []string{"layer 7 (bad)", "not a tar, gzip or zstd"}, nil},
		{"garbage with octet-stream", bytes.NewReader(bytes.Repeat([]byte{0xff}, 1000)), "application/octet-stream", []string{"layer 7 (bad)", "ff ff ff"}, nil},
		{"gzip type but plain tar", bytes.NewReader(plain), ocispec.MediaTypeImageLayerGzip, []string{"decompress layer 7 (bad)"}, nil},
		{"gzip type but truncated gzip", bytes.NewReader([]byte{0x1f, 0x8b}), ocispec.MediaTypeImageLayerGzip, []string{"layer 7 (bad)"}, nil},
		{"read error while sniffing", errReader{readErr}, "", []string{"layer 7 (bad)"}, readErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &countBody{Reader: tt.body}
			rc, err := elements.OpenTar(elements.Element{Kind: elements.KindLayer, Name: "bad", Index: 7, MediaType: tt.mediaType, Body: body})
			if err == nil {
				rc.Close()
				t.Fatal("OpenTar succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if n := body.closed.Load(); n != 1 {
				t.Errorf("Body closed %d times on failure, want 1", n)
			}
		})
	}
}

func TestOpenTarNilBody(t *testing.T) {
	_, err := elements.OpenTar(elements.Element{Kind: elements.KindLayer, Name: "x", Index: 1})
	if err == nil {
		t.Fatal("OpenTar with a nil Body succeeded")
	}
	if !strings.Contains(err.Error(), "layer 1 (x)") || !strings.Contains(err.Error(), "no body") {
		t.Errorf("error %q does not name the layer and the missing body", err)
	}
}

func TestOpenTarCorruptCompressedStream(t *testing.T) {
	plain := mkTar(t, "f", strings.Repeat("data ", 5000))
	gz := gzipBytes(t, plain)
	zs := zstdBytes(t, plain)
	tests := []struct {
		name      string
		body      []byte
		mediaType string
	}{
		{"gzip cut short", gz[:len(gz)/2], ocispec.MediaTypeImageLayerGzip},
		{"zstd cut short", zs[:len(zs)/2], ocispec.MediaTypeImageLayerZstd},
		{"zstd type but garbage", bytes.Repeat([]byte("nope"), 100), ocispec.MediaTypeImageLayerZstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := newBody(tt.body)
			rc, err := elements.OpenTar(elements.Element{Kind: elements.KindLayer, Name: "c", MediaType: tt.mediaType, Body: body, DiffID: digest.FromBytes(plain)})
			if err != nil {
				if n := body.closed.Load(); n != 1 {
					t.Errorf("Body closed %d times on failure, want 1", n)
				}
				return // failing at open is fine too
			}
			if _, err := io.ReadAll(rc); err == nil {
				t.Error("reading a corrupt stream to its end succeeded")
			}
			rc.Close()
			if n := body.closed.Load(); n != 1 {
				t.Errorf("Body closed %d times, want 1", n)
			}
		})
	}
}

func TestNewVerifier(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	s512 := sha512.Sum512(data)
	s384 := sha512.Sum384(data)
	d512 := digest.NewDigestFromEncoded(digest.SHA512, hex.EncodeToString(s512[:]))
	d384 := digest.NewDigestFromEncoded(digest.SHA384, hex.EncodeToString(s384[:]))
	tests := []struct {
		name    string
		want    digest.Digest
		wantErr string // "" for success
		isMis   bool
		fixed   string // the bug this case once exposed
	}{
		{"right sha256", digest.FromBytes(data), "", false, ""},
		{"wrong sha256", digest.FromString("other"), "does not match", true, ""},
		{"sha512 unsupported", d512, "unsupported digest", false, ""},
		{"sha384 unsupported", d384, "unsupported digest", false, ""},
		{"empty digest", "", "unsupported digest", false,
			"elements/digest.go verifier.Read calls want.Algorithm(), which panics (\"no ':' separator in digest\") for a digest without an algorithm, such as \"\" or \"nonsense\", instead of failing the Read"},
		{"digest without algorithm", "0123abcd", "unsupported digest", false,
			"elements/digest.go verifier.Read panics on a digest without ':' (see above)"},
		{"unknown algorithm", "md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := newBody(data)
			v := elements.NewVerifier(body, tt.want, "blob X")
			got, err := readAllNoPanic(v)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("read: %v", err)
			case tt.wantErr == "":
				if !bytes.Equal(got, data) {
					t.Errorf("read %q, want %q", got, data)
				}
			case err == nil:
				t.Fatalf("read succeeded, want an error with %q", tt.wantErr)
			default:
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "blob X") {
					t.Errorf("error %q lacks %q or the stream's name", err, tt.wantErr)
				}
				if got := errors.Is(err, elements.ErrDigestMismatch); got != tt.isMis {
					t.Errorf("errors.Is(ErrDigestMismatch) = %v, want %v", got, tt.isMis)
				}
				if !tt.isMis && len(got) != 0 {
					t.Errorf("an unsupported digest let %d bytes through", len(got))
				}
			}
			v.Close()
			if n := body.closed.Load(); n != 1 {
				t.Errorf("Close closed the underlying reader %d times, want 1", n)
			}
		})
	}
}

// readAllNoPanic is io.ReadAll that turns a panic into an error.
func readAllNoPanic(r io.Reader) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return io.ReadAll(r)
}

func TestDigestError(t *testing.T) {
	e := &elements.DigestError{What: "config c", Want: digest.FromString("a"), Got: digest.FromString("b")}
	var err error = fmt.Errorf("wrapped: %w", e)
	if !errors.Is(err, elements.ErrDigestMismatch) {
		t.Error("wrapped DigestError does not match ErrDigestMismatch")
	}
	for _, s := range []string{"config c", string(e.Want), string(e.Got)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
}

func TestDigester(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short", []byte("abc")},
		{"large", bytes.Repeat([]byte("0123456789"), 100000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := newBody(tt.data)
			d := elements.NewDigester(body)
			if d.Size() != 0 || d.Digest() != digest.FromBytes(nil) {
				t.Errorf("fresh digester: size %d digest %s", d.Size(), d.Digest())
			}
			// Read in odd-sized chunks.
			buf := make([]byte, 7777)
			var total int
			for {
				n, err := d.Read(buf)
				total += n
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if total != len(tt.data) || d.Size() != int64(len(tt.data)) {
				t.Errorf("read %d, Size %d, want %d", total, d.Size(), len(tt.data))
			}
			sum := sha256.Sum256(tt.data)
			if want := digest.NewDigestFromBytes(digest.SHA256, sum[:]); d.Digest() != want {
				t.Errorf("Digest = %s, want %s", d.Digest(), want)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if n := body.closed.Load(); n != 1 {
				t.Errorf("Close closed the reader %d times, want 1", n)
			}
		})
	}
	t.Run("not a closer", func(t *testing.T) {
		d := elements.NewDigester(strings.NewReader("x"))
		if err := d.Close(); err != nil {
			t.Errorf("Close of a non-Closer = %v", err)
		}
	})
}

func TestElement(t *testing.T) {
	tests := []struct {
		el   elements.Element
		want string
	}{
		{elements.Element{Kind: elements.KindImage, Name: "busybox:latest"}, "image busybox:latest"},
		{elements.Element{Kind: elements.KindConfig, Name: "abc.json"}, "config abc.json"},
		{elements.Element{Kind: elements.KindLayer, Name: "abc", Index: 3}, "layer 3 (abc)"},
		{elements.Element{Kind: elements.Kind(9), Name: "n"}, "kind(9) n"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.el.String(); got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("Close", func(t *testing.T) {
		body := newBody([]byte("x"))
		el := elements.Element{Body: body}
		if err := el.Close(); err != nil {
			t.Fatal(err)
		}
		if err := el.Close(); err != nil {
			t.Fatal(err)
		}
		if n := body.closed.Load(); n != 1 || el.Body != nil {
			t.Errorf("closed %d times, Body %v; want once and nil", n, el.Body)
		}
		var empty elements.Element
		if err := empty.Close(); err != nil {
			t.Errorf("Close without a body = %v", err)
		}
	})
}

// TestOpenTarTrustsBodyDigest: for an uncompressed layer whose Digest is its
// DiffID, the Body's maker already verifies the bytes, so OpenTar adds no
// second verifier. It shows as a wrong (but equal) Digest and DiffID that
// OpenTar does not catch, while a differing Digest makes it check.
func TestOpenTarTrustsBodyDigest(t *testing.T) {
	plain := mkTar(t, "a", "b")
	wrong := digest.FromString("not the tar")
	tests := []struct {
		name    string
		digest  digest.Digest
		wantErr bool
	}{
		{"digest equals diff ID: no second check", wrong, false},
		{"no digest: checked", "", true},
		{"other digest: checked", digest.FromString("x"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := elements.OpenTar(elements.Element{Kind: elements.KindLayer, Name: "l", MediaType: ocispec.MediaTypeImageLayer,
				Digest: tt.digest, DiffID: wrong, Body: newBody(plain)})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			_, err = io.ReadAll(rc)
			if got := err != nil; got != tt.wantErr {
				t.Errorf("read error = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}
