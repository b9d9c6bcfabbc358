package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/testdata/imagegen"
)

// The streamed archive is byte for byte what the tar:// output writes.
func TestStreamWriterMatchesOutput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.tar")
	if _, err := imagegen.WriteFile(in, imagegen.Sample(), imagegen.Legacy); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.tar")
	if err := (&engine.Pipeline{Input: NewInput(in, stages.Env{}), Output: NewOutput(out, stages.Env{})}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	sw := NewStreamWriter(&got)
	tr := tar.NewReader(bytes.NewReader(want))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(hdr.Name, ".json") {
			data, _ := io.ReadAll(tr)
			err = sw.AddBytes(hdr.Name, data)
		} else {
			_, err = sw.AddReader(context.Background(), hdr.Name, hdr.Size, tr)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("streamed archive (%d bytes) differs from the tar:// output (%d bytes)", got.Len(), len(want))
	}
	if sw.Written() != int64(got.Len()) {
		t.Errorf("Written() = %d, wrote %d", sw.Written(), got.Len())
	}
}

func TestStreamWriterSizeMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		data string
		want string
	}{
		{"shorter", 10, "abc", "ended after 3 of its 10 bytes"},
		{"longer", 2, "abc", "longer than its stated 2 bytes"},
		{"unknown", -1, "abc", "size unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := NewStreamWriter(io.Discard)
			_, err := sw.AddReader(context.Background(), "x", tc.size, strings.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
