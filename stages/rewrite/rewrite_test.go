package rewrite_test

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
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/rewrite"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/rs/zerolog"
)

func writeImage(t *testing.T, img imagegen.Image, f imagegen.Format) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	if _, err := imagegen.WriteFile(p, img, f); err != nil {
		t.Fatal(err)
	}
	return p
}

// convert runs in -> normalize-timestamps -> tarball output, with late
// layers or spooled ones, and returns the output's bytes.
func convert(t *testing.T, in string, late bool) ([]byte, error) {
	t.Helper()
	env := stages.Env{Log: zerolog.Nop(), Parallel: 3}
	fenv := env
	fenv.LateLayers = late
	out := filepath.Join(t.TempDir(), "out.tar")
	p := &engine.Pipeline{
		Input:   tarball.NewInput(in, env),
		Filters: []stages.Filter{rewrite.New("normalize-timestamps", rewrite.Normalize{TS: 1234}, fenv)},
		Output:  tarball.NewOutput(out, env),
	}
	if err := p.Run(context.Background()); err != nil {
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("%s exists after a failed run", out)
		}
		return nil, err
	}
	return os.ReadFile(out)
}

// members lists a tarball's member names.
func members(t *testing.T, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestLateMatchesSpooled: streaming layers named at their end (the
// tarball output's way) gives the same bytes as rewriting each layer into
// a temporary file first, for plain, compressed and repeated layers.
func TestLateMatchesSpooled(t *testing.T) {
	tests := []struct {
		name    string
		img     imagegen.Image
		format  imagegen.Format
		members int // in the output: config, layers, manifest
	}{
		{"sample", imagegen.Sample(), imagegen.Legacy, 0},
		{"sample, oci layout, gzip layers", imagegen.Sample().WithCompression("gzip"), imagegen.OCI, 0},
		{"a layer used twice", imagegen.Repeated(), imagegen.Legacy, 1 + 2 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := writeImage(t, tt.img, tt.format)
			late, err := convert(t, in, true)
			if err != nil {
				t.Fatal(err)
			}
			spooled, err := convert(t, in, false)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(late, spooled) {
				t.Fatalf("late layers gave %d bytes (%v), spooled %d (%v)", len(late), members(t, late), len(spooled), members(t, spooled))
			}
			if m := members(t, late); tt.members > 0 && len(m) != tt.members {
				t.Errorf("output members %v, want %d", m, tt.members)
			}
		})
	}
}

// TestLateCorruptLayer: a layer whose bytes do not match its diff ID
// fails the run, with the mismatch in the message and no output.
func TestLateCorruptLayer(t *testing.T) {
	in := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	// Change one byte of a file's content inside a layer.
	i := bytes.Index(data, []byte("#!/bin/sh"))
	if i < 0 {
		t.Fatal("no script in the sample image to corrupt")
	}
	data[i+3] = 'X'
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, late := range []bool{true, false} {
		_, err := convert(t, in, late)
		if !errors.Is(err, elements.ErrDigestMismatch) {
			t.Errorf("late=%v: error %v, want a digest mismatch", late, err)
		}
	}
}

// closer is an output that reads every layer to its end but closes layer
// n at once.
type closer struct{ n int }

func (c closer) Run(ctx context.Context, in <-chan elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil || !ok {
			return err
		}
		if el.Kind == elements.KindLayer && el.Index != c.n {
			if _, err := io.Copy(io.Discard, el.Body); err != nil {
				return err
			}
		}
		el.Close()
	}
}

// TestLateClosedEarly: a late layer closed before its end cannot be named,
// so the config cannot be fixed: the filter says so rather than hang.
func TestLateClosedEarly(t *testing.T) {
	in := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	env := stages.Env{Log: zerolog.Nop(), Parallel: 3}
	fenv := env
	fenv.LateLayers = true
	p := &engine.Pipeline{
		Input:   tarball.NewInput(in, env),
		Filters: []stages.Filter{rewrite.New("normalize-timestamps", rewrite.Normalize{TS: 1234}, fenv)},
		Output:  closer{1},
	}
	err := p.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "closed before the end") {
		t.Fatalf("error %v, want one saying a layer was closed before its end", err)
	}
}
