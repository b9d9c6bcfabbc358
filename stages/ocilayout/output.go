package ocilayout

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/staging"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// Output writes an image into an OCI image layout directory, creating the
// layout or adding to an existing one. Blobs are written under temporary
// names in blobs/sha256 and renamed once their digest is known (and
// verified against the one the input gave); index.json is replaced
// atomically last, so a failed run never changes what the layout lists. An
// entry with the same tag is replaced; other entries are kept.
type Output struct {
	path     string
	tag      string
	log      zerolog.Logger
	progress stages.Progress
	result   stages.Result

	blobs   string   // PATH/blobs/sha256
	created []string // blobs this run created, removed on failure
}

// NewOutput returns an Output writing the layout at path, naming the image
// tag (org.opencontainers.image.ref.name). An empty tag means the tag of the
// source reference, or "latest". It does no I/O.
func NewOutput(path, tag string, env stages.Env) *Output {
	p := env.ProgressOrNone()
	return &Output{path: path, tag: tag, log: env.Log, progress: p}
}

// Result reports what the last successful Run wrote.
func (o *Output) Result() stages.Result { return o.result }

// Run consumes the image's elements and writes them into the layout.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) (err error) {
	start := time.Now()
	made, err := o.prepare()
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		if made {
			os.RemoveAll(o.path)
			return
		}
		for _, p := range o.created {
			os.Remove(p)
		}
	}()

	var (
		ref    string
		config *ocispec.Descriptor
		layers []ocispec.Descriptor
		total  int64
	)
	for {
		el, ok, rerr := flow.Recv(ctx, in)
		if rerr != nil {
			return rerr
		}
		if !ok {
			break
		}
		switch el.Kind {
		case elements.KindImage:
			ref = el.Name
			el.Close()
		case elements.KindConfig:
			data, err := tarball.ReadConfig(el)
			if err != nil {
				return err
			}
			d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(data), Size: int64(len(data))}
			if err := o.writeBytes(d.Digest, data); err != nil {
				return err
			}
			config = &d
			total += d.Size
		case elements.KindLayer:
			if el.Index != len(layers) {
				el.Close()
				return fmt.Errorf("%s arrived where layer %d was expected: layers must reach outputs in image order", el, len(layers))
			}
			d, err := o.writeLayer(ctx, el)
			if err != nil {
				return err
			}
			layers = append(layers, d)
			total += d.Size
		default:
			el.Close()
		}
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if config == nil {
		return fmt.Errorf("write %s: the input sent no image config", o.path)
	}
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    *config,
		Layers:    layers,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := o.writeBytes(md.Digest, raw); err != nil {
		return err
	}
	tag := o.tag
	if tag == "" {
		tag = tagOf(ref)
	}
	if tag == "" {
		tag = "latest"
	}
	if err := o.updateIndex(md, tag); err != nil {
		return err
	}
	o.result = stages.Result{Image: ref, Bytes: total, Layers: len(layers), Path: o.path}
	o.log.Info().Msgf("Processed %d bytes in %d layers in %.1f seconds", total, len(layers), time.Since(start).Seconds())
	return nil
}

// prepare makes sure PATH is a layout (or an empty or missing directory,
// which becomes one) and that blobs/sha256 exists. made is true when PATH
// did not exist before, so that a failure removes it whole.
func (o *Output) prepare() (made bool, err error) {
	o.blobs = filepath.Join(o.path, "blobs", "sha256")
	fi, err := os.Stat(o.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(o.path, 0o755); err != nil {
			return false, fmt.Errorf("create %s: %w", o.path, err)
		}
		made = true
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s exists and is not a directory: an OCI layout is a directory", o.path)
	}
	fail := func(err error) (bool, error) {
		if made {
			os.RemoveAll(o.path)
		}
		return false, err
	}
	layoutFile := filepath.Join(o.path, ocispec.ImageLayoutFile)
	if data, err := readSmall(layoutFile); err == nil {
		var l ocispec.ImageLayout
		if err := json.Unmarshal(data, &l); err != nil || l.Version != ocispec.ImageLayoutVersion {
			return fail(fmt.Errorf("%s: not an OCI image layout of version %s", layoutFile, ocispec.ImageLayoutVersion))
		}
	} else if errors.Is(err, os.ErrNotExist) {
		ents, err := os.ReadDir(o.path)
		if err != nil {
			return fail(err)
		}
		if len(ents) > 0 {
			return fail(fmt.Errorf("%s is not empty and not an OCI image layout (it has no %s): refusing to write into it", o.path, ocispec.ImageLayoutFile))
		}
		data, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeAtomic(layoutFile, data); err != nil {
			return fail(err)
		}
		o.created = append(o.created, layoutFile)
	} else {
		return fail(err)
	}
	if err := os.MkdirAll(o.blobs, 0o755); err != nil {
		return fail(err)
	}
	return made, nil
}

// writeAtomic writes data to path under a temporary name and renames it.
func writeAtomic(path string, data []byte) error {
	f, err := staging.NewFile(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// writeBytes stores a small blob unless the layout has it already.
func (o *Output) writeBytes(d digest.Digest, data []byte) error {
	p := filepath.Join(o.blobs, d.Encoded())
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := writeAtomic(p, data); err != nil {
		return err
	}
	o.created = append(o.created, p)
	return nil
}

// writeLayer streams a layer's bytes, as they are, into a blob.
func (o *Output) writeLayer(ctx context.Context, el elements.Element) (d ocispec.Descriptor, err error) {
	defer el.Close()
	br := bufio.NewReaderSize(el.Body, 64<<10)
	c := elements.CompressionOf(el.MediaType)
	if c == elements.Unknown {
		head, perr := br.Peek(elements.SniffLen)
		if perr != nil && perr != io.EOF && perr != bufio.ErrBufferFull {
			return d, fmt.Errorf("read %s: %w", el, perr)
		}
		if c = elements.Detect(head); c == elements.Unknown {
			return d, fmt.Errorf("%s is not a tar, gzip or zstd stream", el)
		}
	}
	mt := el.MediaType
	if !strings.HasPrefix(mt, "application/vnd.oci.image.layer.") || elements.CompressionOf(mt) != c {
		mt = elements.LayerMediaType(c)
	}

	tmp, err := os.CreateTemp(o.blobs, ".tmp-*")
	if err != nil {
		return d, fmt.Errorf("create blob: %w", err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	tr := o.progress.Track(el.Name, el.Size)
	dg := elements.NewDigester(br)
	if el.Source != nil && el.Source.Length >= 0 {
		// The bytes lie in a file: copy them in the kernel and verify them
		// from a second read of the body.
		if _, err = elements.CopyRange(tmp, 0, *el.Source, func(n int64) error {
			tr.Add(n)
			return ctx.Err()
		}); err == nil {
			_, err = elements.CopyContext(ctx, io.Discard, dg, nil)
		}
	} else {
		_, err = elements.CopyContext(ctx, tmp, stages.TrackReader(dg, tr), nil)
	}
	tr.Done(err)
	if err != nil {
		return d, fmt.Errorf("write %s: %w", el, err)
	}
	got := dg.Digest()
	if el.Digest != "" && got != el.Digest {
		return d, &elements.DigestError{What: el.String(), Want: el.Digest, Got: got}
	}
	if el.Digest == "" && c == elements.None && el.DiffID != "" && got != el.DiffID {
		return d, &elements.DigestError{What: el.String() + " diff ID", Want: el.DiffID, Got: got}
	}
	if el.Source != nil {
		if fi, err := tmp.Stat(); err != nil || fi.Size() != dg.Size() {
			return d, fmt.Errorf("write %s: copied bytes do not match the stream", el)
		}
	}
	d = ocispec.Descriptor{MediaType: mt, Digest: got, Size: dg.Size()}
	final := filepath.Join(o.blobs, got.Encoded())
	if _, err := os.Lstat(final); err == nil {
		return d, nil // already in the layout (shared with another image, or used twice)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return d, err
	}
	if err := tmp.Close(); err != nil {
		return d, fmt.Errorf("write %s: %w", el, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return d, fmt.Errorf("write %s: %w", el, err)
	}
	tmp = nil
	o.created = append(o.created, final)
	o.log.Debug().Str("layer", el.Name).Str("digest", got.String()).Int64("bytes", d.Size).Msg("wrote blob")
	return d, nil
}

// updateIndex adds the manifest to index.json under tag, replacing any
// entry of the same tag and keeping the others.
func (o *Output) updateIndex(md ocispec.Descriptor, tag string) error {
	ix, err := readIndex(o.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ix.SchemaVersion = 2
	ix.MediaType = ocispec.MediaTypeImageIndex
	kept := []ocispec.Descriptor{}
	for _, d := range ix.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] != tag {
			kept = append(kept, d)
		}
	}
	md.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	ix.Manifests = append(kept, md)
	data, err := json.Marshal(ix)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(o.path, ocispec.ImageIndexFile), data)
}
