package dir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// Verify reads back the image the last successful Run wrote, from the
// directory, and checks it (see stages.Verifier): the manifest file is a
// JSON list of one image that names Config and Layers, and catalog.json
// lists it; the config is there, matches the digest its name carries, and
// has one diff ID per layer; every layer file is there, a regular file,
// not compressed, and as long as its tar headers need (only headers are
// read: member data is skipped with Seek; a file without the
// end-of-archive marker is only warned about, see tarball.VerifyLayer);
// with expand, the expanded tree is there. With full, every
// layer is also read through as a tar and its sha256 compared with its
// diff ID (layer.tar files are uncompressed, so their digest is their
// diff ID). A layer listed twice is read once. Every file is opened
// through an os.Root on the directory, as the dir:// input does, so a path
// in the manifest cannot lead outside it.
//
// Failures wrap stages.ErrVerify; a cancelled ctx is returned as its
// cause, unwrapped, since it says nothing about the directory.
func (o *Output) Verify(ctx context.Context, full bool) (stages.Verified, error) {
	dir, manifest := o.written, o.manifest
	if dir == "" {
		return stages.Verified{}, fmt.Errorf("%w: %s: no image was written (the output has not run successfully)", stages.ErrVerify, o.path)
	}
	if err := ctx.Err(); err != nil {
		return stages.Verified{}, context.Cause(ctx)
	}
	in := &Input{path: dir}
	root, err := in.openRoot()
	if err != nil {
		return stages.Verified{}, fmt.Errorf("%w: %w", stages.ErrVerify, err)
	}
	defer root.Close()
	v := &verification{in: in, root: root, log: o.log}

	raw, err := v.read(manifest, "the manifest")
	if err != nil {
		return stages.Verified{}, err
	}
	configName, layers, err := tarball.VerifyManifest(raw)
	if err != nil {
		return stages.Verified{}, v.fail("%s: %w", manifest, err)
	}
	if err := v.catalogLists(manifest); err != nil {
		return stages.Verified{}, err
	}
	if err := in.checkPath(configName, "the config "+manifest+" names"); err != nil {
		return stages.Verified{}, fmt.Errorf("%w: %w", stages.ErrVerify, err)
	}
	cfg, err := v.read(configName, "the config "+manifest+" names")
	if err != nil {
		return stages.Verified{}, err
	}
	diffIDs, err := tarball.VerifyConfig(configName, cfg, len(layers))
	if err != nil {
		return stages.Verified{}, v.fail("%s: %w", manifest, err)
	}
	checked := map[string]int{} // cleaned path -> the first layer read from it
	for i, p := range layers {
		if err := ctx.Err(); err != nil {
			return stages.Verified{}, context.Cause(ctx)
		}
		key := path.Clean(p)
		if first, ok := checked[key]; ok {
			if diffIDs[first] != diffIDs[i] {
				return stages.Verified{}, v.fail("layer %d (%s) is also layer %d, but the config gives them different diff IDs (%s and %s)", i, p, first, diffIDs[i], diffIDs[first])
			}
			continue
		}
		if err := v.layer(ctx, i, p, manifest, diffIDs[i], full); err != nil {
			return stages.Verified{}, err
		}
		checked[key] = i
	}
	if o.opts.Expand {
		stem := strings.TrimSuffix(manifest, ".json")
		fi, err := root.Stat(stem)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return stages.Verified{}, v.fail("the expanded tree %s/ is missing", stem)
		case err != nil:
			return stages.Verified{}, v.fail("the expanded tree %s/: %w", stem, err)
		case !fi.IsDir():
			return stages.Verified{}, v.fail("the expanded tree %s is not a directory (%s)", stem, fi.Mode().Type())
		}
	}
	return stages.Verified{Layers: len(layers), Message: fmt.Sprintf("All %d layers verified in directory", len(layers))}, nil
}

// verification is one Verify's view of the directory.
type verification struct {
	in   *Input
	root *os.Root
	log  zerolog.Logger
}

// fail returns a verification failure about the directory.
func (v *verification) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", stages.ErrVerify, v.in.path, fmt.Errorf(format, args...))
}

// open opens a regular file of the directory through the root, which
// refuses any path that leads outside it, through ".." or a symlink.
func (v *verification) open(name, what string) (*os.File, error) {
	f, err := v.root.Open(filepath.FromSlash(name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, v.fail("%s (%s) is missing", what, name)
	case escapes(err):
		return nil, v.fail("%s (%s) leads outside the directory (through .. or a symlink), which is refused", what, name)
	case err != nil:
		return nil, v.fail("%s (%s): %w", what, name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, v.fail("%s (%s): %w", what, name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, v.fail("%s (%s) is not a regular file (%s)", what, name, fi.Mode().Type())
	}
	return f, nil
}

// read reads a small file of the directory whole, within maxMetadataSize.
func (v *verification) read(name, what string) ([]byte, error) {
	f, err := v.open(name, what)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, v.fail("read %s (%s): %w", what, name, err)
	}
	if len(b) > maxMetadataSize {
		return nil, v.fail("%s (%s) is larger than the %d bytes allowed for metadata", what, name, maxMetadataSize)
	}
	return b, nil
}

// catalogLists checks that catalog.json lists an image whose manifest is
// manifest, as the dir:// input needs to find it.
func (v *verification) catalogLists(manifest string) error {
	raw, err := v.read("catalog.json", "the catalog")
	if err != nil {
		return err
	}
	var catalog map[string]map[string]string
	if err := json.Unmarshal(raw, &catalog); err != nil {
		return v.fail("catalog.json is not valid JSON: %w", err)
	}
	for _, tags := range catalog {
		for _, m := range tags {
			if m == manifest {
				return nil
			}
		}
	}
	return v.fail("catalog.json lists no image whose manifest is %s", manifest)
}

// layer checks layer i, at path p: see tarball.VerifyLayer.
func (v *verification) layer(ctx context.Context, i int, p, manifest string, diffID digest.Digest, full bool) error {
	what := fmt.Sprintf("layer %d", i)
	if err := v.in.checkPath(p, fmt.Sprintf("layer %d of %s", i, manifest)); err != nil {
		return fmt.Errorf("%w: %w", stages.ErrVerify, err)
	}
	f, err := v.open(p, what)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return v.fail("%s (%s): %w", what, p, err)
	}
	head := make([]byte, elements.SniffLen)
	n, _ := f.ReadAt(head[:min(int64(len(head)), fi.Size())], 0)
	if c := elements.Detect(head[:n]); c == elements.Gzip || c == elements.Zstd {
		return v.fail("%s (%s) is %s-compressed; a layer.tar must be an uncompressed tar", what, p, c)
	}
	err = tarball.VerifyLayer(ctx, f, fi.Size(), diffID, full)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(err, tarball.ErrNoEndMarker):
		v.log.Warn().Str("layer", p).Int("index", i).Msgf("%s (%s): %v; a full verification checks it against its diff ID", what, p, err)
	default:
		return v.fail("%s (%s): %w", what, p, err)
	}
	return nil
}
