package tarball

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Verify reads back the tarball the last successful Run wrote, from the
// file, and checks it (see stages.Verifier): every member header lies
// inside the file; manifest.json is a JSON list of one image that names
// Config and Layers; the config is there, matches the digest its name
// carries, and has one diff ID per layer; every layer named is a regular
// member and not compressed. No layer data is read then, so it is fast on
// any size (archive/tar skips member data with Seek). With full, every
// layer is also read through as a tar and its sha256 compared with its
// diff ID: the output writes each layer as <name>/layer.tar uncompressed,
// so its digest is its diff ID. A layer listed twice is read once.
//
// Failures wrap stages.ErrVerify; a cancelled ctx is returned as its
// cause, unwrapped, since it says nothing about the tarball.
func (o *Output) Verify(ctx context.Context, full bool) (stages.Verified, error) {
	path := o.written
	if path == "" {
		return stages.Verified{}, fmt.Errorf("%w: %s: no tarball was written (the output has not run successfully)", stages.ErrVerify, o.path)
	}
	if err := ctx.Err(); err != nil {
		return stages.Verified{}, context.Cause(ctx)
	}
	idx, err := openIndex(path)
	if err != nil {
		return stages.Verified{}, fmt.Errorf("%w: %w", stages.ErrVerify, err)
	}
	defer idx.close()
	fail := func(format string, args ...any) (stages.Verified, error) {
		return stages.Verified{}, fmt.Errorf("%w: %s: %w", stages.ErrVerify, path, fmt.Errorf(format, args...))
	}

	me, err := idx.lookup("manifest.json")
	if err != nil {
		return fail("%w", err)
	}
	raw, err := idx.readAll(me)
	if err != nil {
		return fail("%w", err)
	}
	configName, layers, err := VerifyManifest(raw)
	if err != nil {
		return fail("manifest.json: %w", err)
	}
	ce, err := idx.lookup(configName)
	if err != nil {
		return fail("the config manifest.json names: %w", err)
	}
	cfg, err := idx.readAll(ce)
	if err != nil {
		return fail("%w", err)
	}
	diffIDs, err := VerifyConfig(configName, cfg, len(layers))
	if err != nil {
		return fail("%w", err)
	}

	entries := make([]*entry, len(layers))
	first := map[*entry]int{} // a layer listed twice is checked once
	for i, name := range layers {
		e, err := idx.lookup(name)
		if err != nil {
			return fail("layer %d: %w", i, err)
		}
		entries[i] = e
		if j, ok := first[e]; ok {
			if diffIDs[j] != diffIDs[i] {
				return fail("layer %d (%s) is also layer %d, but the config gives them different diff IDs (%s and %s)", i, name, j, diffIDs[i], diffIDs[j])
			}
			continue
		}
		first[e] = i
		head := make([]byte, elements.SniffLen)
		n, _ := idx.file.ReadAt(head[:min(int64(len(head)), e.size)], e.offset)
		if c := elements.Detect(head[:n]); c == elements.Gzip || c == elements.Zstd {
			return fail("layer %d (%s) is %s-compressed; a layer.tar must be an uncompressed tar", i, name, c)
		}
	}
	if full {
		for i, e := range entries {
			if first[e] != i {
				continue
			}
			if err := ctx.Err(); err != nil {
				return stages.Verified{}, context.Cause(ctx)
			}
			r := io.NewSectionReader(idx.file, e.offset, e.size)
			if err := VerifyLayer(ctx, r, e.size, diffIDs[i], true); err != nil {
				if ctx.Err() != nil {
					return stages.Verified{}, context.Cause(ctx)
				}
				return fail("layer %d (%s): %w", i, layers[i], err)
			}
		}
	}
	return stages.Verified{Layers: len(layers), Message: fmt.Sprintf("All %d layers verified in tarball", len(layers))}, nil
}

// VerifyManifest checks a docker-save manifest.json as the tar:// and
// dir:// outputs write it (a JSON list of one image) and returns the
// config and layer paths it names. Layers must be present, as a list
// (empty, or null as dir:// writes for an image without layers, means no
// layers), and no path may be empty. Errors say what is wrong, unwrapped
// by stages.ErrVerify: callers add where.
func VerifyManifest(raw []byte) (config string, layers []string, err error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", nil, fmt.Errorf("not a JSON list of images: %w", err)
	}
	switch {
	case len(list) == 0:
		return "", nil, errors.New("an empty list: it names no image")
	case len(list) > 1:
		return "", nil, fmt.Errorf("lists %d images; the output writes exactly one", len(list))
	}
	m := list[0]
	rawConfig, ok := m["Config"]
	if !ok {
		return "", nil, errors.New("the image has no Config")
	}
	if err := json.Unmarshal(rawConfig, &config); err != nil || config == "" {
		return "", nil, fmt.Errorf("the image's Config is %s, not the config's path", rawConfig)
	}
	rawLayers, ok := m["Layers"]
	if !ok {
		return "", nil, errors.New("the image has no Layers")
	}
	if err := json.Unmarshal(rawLayers, &layers); err != nil {
		return "", nil, fmt.Errorf("the image's Layers are not a list of paths: %w", err)
	}
	for i, l := range layers {
		if l == "" {
			return "", nil, fmt.Errorf("layer %d's path is empty", i)
		}
	}
	return config, layers, nil
}

// VerifyConfig checks an image config read back from an output: when its
// name carries a digest (<hex>.json, as every input names configs), its
// bytes must have that digest; it must parse as JSON, and rootfs.diff_ids
// must hold one sha256 digest per layer (layers of them), which it
// returns. Errors are unwrapped
// by stages.ErrVerify: callers add where.
func VerifyConfig(name string, data []byte, layers int) ([]digest.Digest, error) {
	if want := digestOf(name); want != "" {
		if got := digest.FromBytes(data); got != want {
			return nil, fmt.Errorf("config %s (%d bytes) has digest %s, not the %s its name says", name, len(data), got, want)
		}
	}
	var img ocispec.Image
	if err := json.Unmarshal(data, &img); err != nil {
		return nil, fmt.Errorf("config %s is not valid JSON: %w", name, err)
	}
	ids := img.RootFS.DiffIDs
	if len(ids) != layers {
		return nil, fmt.Errorf("config %s has %d diff IDs in rootfs.diff_ids, but the manifest lists %d layers", name, len(ids), layers)
	}
	for i, d := range ids {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("config %s: diff_ids[%d] (%q) is not a sha256 digest", name, i, d)
		}
	}
	return ids, nil
}

// VerifyLayer checks the size bytes of an uncompressed layer tar that r
// holds. Without full, it reads only the member headers (skipping their
// data with Seek), which finds a file cut short inside a header or a
// member's data, and looks for the end-of-archive marker. With full, it
// reads every byte, as a tar to its end-of-archive marker and then the
// padding after it, and compares their sha256 with diffID. It checks ctx
// as it reads; a cancelled ctx is returned as its cause. Errors say what
// is wrong, unwrapped by stages.ErrVerify: callers add where.
//
// Without full, a tar that archive/tar reads to a clean end but that has
// no end-of-archive marker gives an error wrapping ErrNoEndMarker: a file
// cut after a member, or in the padding after its data, reads just like
// one written without the marker, as some old images and empty layer files
// were, and Docker accepts both, so callers should warn rather than fail
// (full settles it by the digest). The quick check fails only a tar that
// archive/tar cannot read.
func VerifyLayer(ctx context.Context, r io.ReaderAt, size int64, diffID digest.Digest, full bool) error {
	if full {
		return readLayer(ctx, r, size, diffID)
	}
	return scanLayer(ctx, r, size)
}

// endMarker is the end-of-archive marker: two zero blocks.
const endMarker = 2 * blockSize

// ErrNoEndMarker is wrapped by VerifyLayer's report of a layer tar that
// ends after a member without the end-of-archive marker.
var ErrNoEndMarker = errors.New("no end-of-archive marker")

// scanLayer reads a layer tar's member headers and its end-of-archive
// marker.
func scanLayer(ctx context.Context, r io.ReaderAt, size int64) error {
	pr := &positionReader{r: io.NewSectionReader(r, 0, size)}
	tr := tar.NewReader(pr)
	var (
		last   *tar.Header // the last member read
		dataAt int64       // where its data starts
	)
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // a name is not ours to judge here
			return truncated(err, size, last, dataAt)
		}
		last, dataAt = hdr, pr.pos
	}
	// archive/tar also stops at a clean end of file, without the marker:
	// the last end-of-archive-sized tail it read must be zeros. (A last
	// member whose data ends in as many zeros hides a missing marker.)
	end := pr.pos
	tail := make([]byte, endMarker)
	if end >= endMarker {
		if _, err := r.ReadAt(tail, end-endMarker); err != nil {
			return fmt.Errorf("read the end-of-archive marker at offset %d: %w", end-endMarker, err)
		}
	}
	if end < endMarker || len(bytes.Trim(tail, "\x00")) != 0 {
		if last == nil {
			return fmt.Errorf("the file is %d bytes, with no member and %w (%d zero bytes): it is truncated, or was written empty",
				size, ErrNoEndMarker, endMarker)
		}
		return fmt.Errorf("the file is %d bytes and ends after its last member %q (data at offset %d, %d bytes) with %w (%d zero bytes): it is truncated there, or was written without one",
			size, last.Name, dataAt, last.Size, ErrNoEndMarker, endMarker)
	}
	return nil
}

// truncated describes a tar read that failed after last.
func truncated(err error, size int64, last *tar.Header, dataAt int64) error {
	where := "in its first header"
	if last != nil {
		where = fmt.Sprintf("in or after member %q, whose %d bytes of data start at offset %d", last.Name, last.Size, dataAt)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the file is %d bytes and ends %s: it is truncated", size, where)
	}
	return fmt.Errorf("not a valid tar %s: %w", where, err)
}

// readLayer reads a layer tar through and checks its digest.
func readLayer(ctx context.Context, r io.ReaderAt, size int64, diffID digest.Digest) error {
	// archive/tar reads the data it skips from d, which is no io.Seeker,
	// so every byte is hashed; ctxReader stops it within a buffer.
	d := elements.NewDigester(ctxReader{ctx, bufio.NewReaderSize(io.NewSectionReader(r, 0, size), copyBuf)})
	tr := tar.NewReader(d)
	var (
		last   *tar.Header
		dataAt int64
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return truncated(err, size, last, dataAt)
		}
		last, dataAt = hdr, d.Size()
	}
	// The padding after the marker counts in the diff ID.
	if _, err := io.Copy(io.Discard, d); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("read after the end-of-archive marker: %w", err)
	}
	if d.Size() != size {
		return fmt.Errorf("read %d bytes of %d: the file changed while it was read", d.Size(), size)
	}
	if got := d.Digest(); got != diffID {
		return fmt.Errorf("its content (%d bytes) has digest %s, but the config's diff ID for it is %s", size, got, diffID)
	}
	return nil
}

// ctxReader fails its reads with ctx's cause once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}
