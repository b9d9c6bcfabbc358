package ocilayout

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/staging"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ArchiveOutput writes an OCI image layout as an uncompressed tar archive
// (what skopeo's oci-archive: reads). The layout is built in a temporary
// directory beside the destination, then archived under a temporary name
// and renamed; an existing archive is replaced.
type ArchiveOutput struct {
	path string
	tag  string
	env  stages.Env
	res  stages.Result
}

// NewArchiveOutput returns an ArchiveOutput writing path. It does no I/O.
func NewArchiveOutput(path, tag string, env stages.Env) *ArchiveOutput {
	return &ArchiveOutput{path: path, tag: tag, env: env}
}

// Result reports what the last successful Run wrote.
func (o *ArchiveOutput) Result() stages.Result { return o.res }

// Run writes the layout into a temporary directory and archives it.
func (o *ArchiveOutput) Run(ctx context.Context, in <-chan elements.Element) error {
	if fi, err := os.Stat(o.path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory: give a file name for the archive", o.path)
	}
	dir, base := filepath.Split(o.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.MkdirTemp(dir, "."+base+".layout-*")
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	defer os.RemoveAll(tmp)
	layout := filepath.Join(tmp, "layout")
	inner := NewOutput(layout, o.tag, o.env)
	if err := inner.Run(ctx, in); err != nil {
		return err
	}
	f, err := staging.NewFile(o.path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := writeTar(ctx, f.File, layout); err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if err := f.Commit(); err != nil {
		return err
	}
	o.res = inner.Result()
	o.res.Path = o.path
	return nil
}

// writeTar archives a layout directory: oci-layout, the blobs, index.json.
func writeTar(ctx context.Context, w io.Writer, layout string) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	addFile := func(name, p string) error {
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: fi.Size(), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err = elements.CopyContext(ctx, tw, src, nil)
		return err
	}
	addDir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	if err := addFile(ocispec.ImageLayoutFile, filepath.Join(layout, ocispec.ImageLayoutFile)); err != nil {
		return err
	}
	if err := addDir("blobs/"); err != nil {
		return err
	}
	if err := addDir("blobs/sha256/"); err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(layout, "blobs", "sha256"))
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name()[0] != '.' {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if err := addFile("blobs/sha256/"+n, filepath.Join(layout, "blobs", "sha256", n)); err != nil {
			return err
		}
	}
	if err := addFile(ocispec.ImageIndexFile, filepath.Join(layout, ocispec.ImageIndexFile)); err != nil {
		return err
	}
	return tw.Close()
}
