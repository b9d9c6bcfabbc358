package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/testdata/imagegen"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"4096", 4096, false},
		{"8MiB", 8 << 20, false},
		{"1GiB", 1 << 30, false},
		{"1.5gib", 3 << 29, false},
		{"100KiB", 100 << 10, false},
		{"2M", 2 << 20, false},
		{"12B", 12, false},
		{" 3 MiB ", 3 << 20, false},
		{"", 0, true},
		{"lots", 0, true},
		{"-1MiB", 0, true},
		{"1PiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// entries lists the entry names of a tar file.
func entries(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
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

func TestRun(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T)
	}{
		{"sample legacy", []string{"-o", filepath.Join(dir, "l.tar")}, "", func(t *testing.T) {
			names := entries(t, filepath.Join(dir, "l.tar"))
			if names[len(names)-1] != "manifest.json" {
				t.Errorf("last entry %q", names[len(names)-1])
			}
		}},
		{"sample oci zstd", []string{"-o", filepath.Join(dir, "o.tar"), "-format", "oci", "-compression", "zstd", "-tag", "x:y"}, "", func(t *testing.T) {
			if names := entries(t, filepath.Join(dir, "o.tar")); !strings.Contains(strings.Join(names, " "), "oci-layout") {
				t.Errorf("entries %q", names)
			}
		}},
		{"big", []string{"-o", filepath.Join(dir, "b.tar"), "-size", "2MiB", "-layers", "2"}, "", func(t *testing.T) {
			st, err := os.Stat(filepath.Join(dir, "b.tar"))
			if err != nil || st.Size() < 2<<20 {
				t.Errorf("big tarball: %v %v", st, err)
			}
		}},
		{"hostile", []string{"-hostile", filepath.Join(dir, "h")}, "", func(t *testing.T) {
			for _, c := range imagegen.Hostile() {
				if _, err := os.Stat(filepath.Join(dir, "h", c.Name+".tar")); err != nil {
					t.Error(err)
				}
			}
		}},
		{"no output", nil, "need -o", nil},
		{"bad format", []string{"-o", filepath.Join(dir, "x.tar"), "-format", "zip"}, "unknown format", nil},
		{"bad compression", []string{"-o", filepath.Join(dir, "x.tar"), "-compression", "xz"}, "unknown compression", nil},
		{"bad size", []string{"-o", filepath.Join(dir, "x.tar"), "-size", "huge"}, "bad size", nil},
		{"bad layers", []string{"-o", filepath.Join(dir, "x.tar"), "-size", "1MiB", "-layers", "0"}, "-layers", nil},
		{"stray argument", []string{"-o", filepath.Join(dir, "x.tar"), "extra"}, "unexpected", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			err := run(tt.args, &log)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			tt.check(t)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); !os.IsNotExist(err) {
		t.Error("a failed run left x.tar behind")
	}
}
