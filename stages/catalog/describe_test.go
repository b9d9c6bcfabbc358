package catalog

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/dir"
	"github.com/occystrap/occystrap/stages/info"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/uri"
)

func TestNewDescriberTar(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.tar")
	res, err := imagegen.WriteFile(path, imagegen.Sample(), imagegen.OCI)
	if err != nil {
		t.Fatal(err)
	}
	u, err := uri.Parse("tar://"+path, uri.Source)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDescriber(u, stages.Env{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := d.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if src.Reference != "example.com/test/sample:v1" || string(src.Config) != string(res.Config) || src.Manifest != nil || src.Index != nil {
		t.Errorf("source %+v", src)
	}
	inf, err := info.Build(src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inf.DiffIDs, res.DiffIDs) || inf.LayerCount != len(res.DiffIDs) {
		t.Errorf("diff IDs %v (%d layers), want %v", inf.DiffIDs, inf.LayerCount, res.DiffIDs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Describe(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Describe: %v", err)
	}
}

// Every source scheme without a describer says so plainly.
func TestNewDescriberNotImplemented(t *testing.T) {
	for _, s := range uri.Schemes(uri.Source) {
		if _, ok := describers[s.Name]; ok {
			continue
		}
		_, err := NewDescriber(uri.URI{Scheme: s.Name}, stages.Env{})
		if !errors.Is(err, ErrNotImplemented) {
			t.Errorf("%s: error %v does not wrap ErrNotImplemented", s.Name, err)
		}
		if want := "info is not implemented for " + s.Name + ":// sources yet"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", s.Name, err, want)
		}
	}
}

// TestDirSource: dir:// is a source whose ?image= and ?tag= select the
// image, for process and for info.
func TestDirSource(t *testing.T) {
	tarPath := filepath.Join(t.TempDir(), "in.tar")
	res, err := imagegen.WriteFile(tarPath, imagegen.Sample(), imagegen.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	dirPath := filepath.Join(t.TempDir(), "d")
	out := dir.NewOutput(dirPath, dir.Options{UniqueNames: true}, stages.Env{})
	p := engine.Pipeline{Input: tarball.NewInput(tarPath, stages.Env{}), Output: out}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		err   string
	}{
		{"", ""},
		{"?image=example.com/test/sample&tag=v1", ""},
		{"?tag=v1", ""},
		{"?image=example.com/test/sample&tag=v2", `no tag "v2"`},
		{"?image=busybox", `image "busybox" is not in catalog.json`},
	} {
		t.Run(tc.query, func(t *testing.T) {
			u, err := uri.Parse("dir://"+dirPath+tc.query, uri.Source)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := NewInput(u, stages.Env{}); err != nil {
				t.Fatal(err)
			}
			d, err := NewDescriber(u, stages.Env{})
			if err != nil {
				t.Fatal(err)
			}
			src, err := d.Describe(context.Background())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("Describe: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || src.Reference != "example.com/test/sample:v1" || string(src.Config) != string(res.Config) {
				t.Errorf("Describe: %q, %v", src.Reference, err)
			}
		})
	}
}
