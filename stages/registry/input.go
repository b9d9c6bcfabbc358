package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// Input reads an image from a registry. Layers reach the next stage in
// image order as streams that start downloading when first read (see
// sendLayers), each verified against its digest as it streams.
type Input struct {
	client   *Client
	ref      uri.Reference // normalised
	platform ocispec.Platform
	parallel int
	log      zerolog.Logger
	progress stages.Progress
}

// InputOptions are the per-URI settings of an Input.
type InputOptions struct {
	Platform ocispec.Platform
	Parallel int
}

// NewInput returns an Input for ref. It does no I/O.
func NewInput(ref uri.Reference, opts InputOptions, copts Options, env stages.Env) *Input {
	c, n := NewFromReference(ref, []string{"pull"}, copts)
	p := env.ProgressOrNone()
	return &Input{client: c, ref: n, platform: opts.Platform, parallel: max(opts.Parallel, 1),
		log: env.Log, progress: p}
}

// Parallel returns how many layers the source URI asked to download at
// once (max_workers, else -j): the stage that reads the bodies uses it.
func (in *Input) Parallel() int { return in.parallel }

// Client returns the input's registry client.
func (in *Input) Client() *Client { return in.client }

// Reference returns the normalised reference the input reads.
func (in *Input) Reference() uri.Reference { return in.ref }

// tagOrDigest is what to ask the registry for.
func (in *Input) tagOrDigest() string {
	if in.ref.Digest != "" {
		return in.ref.Digest
	}
	return in.ref.Tag
}

// Image is what Describe returns: the resolved manifest and the raw config.
type Image struct {
	Resolved
	Config []byte
	Parsed ocispec.Image
}

// Describe resolves the image and reads its config, without its layers.
func (in *Input) Describe(ctx context.Context) (Image, error) {
	r, err := in.client.Resolve(ctx, in.tagOrDigest(), in.platform)
	if err != nil {
		return Image{}, err
	}
	img := Image{Resolved: r}
	if img.Config, err = in.readConfig(ctx, r.Image.Config); err != nil {
		return Image{}, err
	}
	if err := json.Unmarshal(img.Config, &img.Parsed); err != nil {
		return Image{}, fmt.Errorf("config %s is not valid JSON: %w", r.Image.Config.Digest, err)
	}
	return img, nil
}

// readConfig downloads and verifies a (small) config blob.
func (in *Input) readConfig(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > maxManifestSize {
		return nil, fmt.Errorf("config %s is %d bytes; refusing a config over %d bytes", d.Digest, d.Size, maxManifestSize)
	}
	body, err := in.client.OpenBlob(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return data, nil
}

// Run sends the image, its config and its layers.
func (in *Input) Run(ctx context.Context, out chan<- elements.Element) error {
	img, err := in.Describe(ctx)
	if err != nil {
		return err
	}
	layers := img.Image.Layers
	diffIDs := img.Parsed.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return fmt.Errorf("image %s is inconsistent: its manifest lists %d layers but its config %d diff IDs", in.ref, len(layers), len(diffIDs))
	}
	for i, d := range diffIDs {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("image %s: config diff ID %d (%q) is invalid: %v", in.ref, i, d, err)
		}
	}
	var total int64
	for _, l := range layers {
		total += l.Size
	}
	in.log.Info().Str("image", in.ref.String()).Str("digest", img.Manifest.Digest.String()).
		Int("layers", len(layers)).Int64("bytes", total).Msg("fetching image")

	if err := flow.Send(ctx, out, elements.Element{
		Kind: elements.KindImage, Name: in.ref.String(), Index: -1,
		MediaType: img.Manifest.MediaType, Digest: img.Manifest.Digest, Size: int64(len(img.Manifest.Raw)),
		Body: io.NopCloser(bytes.NewReader(img.Manifest.Raw)),
	}); err != nil {
		return err
	}
	cd := img.Image.Config
	if err := flow.Send(ctx, out, elements.Element{
		Kind: elements.KindConfig, Name: cd.Digest.Encoded() + ".json", Index: -1,
		MediaType: cd.MediaType, Digest: cd.Digest, Size: int64(len(img.Config)),
		Body: io.NopCloser(bytes.NewReader(img.Config)),
	}); err != nil {
		return err
	}
	return in.sendLayers(ctx, out, layers, diffIDs)
}

// sendLayers sends one element per layer, in image order. A layer's
// download starts when its body is first read, so that a layer the output
// never reads (one the destination registry already has, or can mount) is
// never downloaded. Parallelism comes from the consumers, which read
// several bodies at once: the registry output uploads -j layers at a time,
// and the decompress stage in front of tarball and directory outputs
// decompresses -j at a time. Each body is verified against its digest as
// it streams, and resumes with a Range request if the connection breaks.
func (in *Input) sendLayers(ctx context.Context, out chan<- elements.Element, layers []ocispec.Descriptor, diffIDs []digest.Digest) error {
	for i, d := range layers {
		mt := d.MediaType
		if elements.CompressionOf(mt) == elements.Unknown {
			in.log.Debug().Str("media_type", mt).Int("layer", i).Msg("unknown layer media type; its compression will be sniffed")
		}
		el := elements.Element{
			Kind: elements.KindLayer, Name: d.Digest.Encoded(), Index: i,
			MediaType: mt, Digest: d.Digest, DiffID: diffIDs[i], Size: d.Size,
			Body: &lazyBlob{in: in, ctx: ctx, i: i, d: d},
		}
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	return nil
}

// lazyBlob opens its blob at the first Read.
type lazyBlob struct {
	in   *Input
	ctx  context.Context
	i    int
	d    ocispec.Descriptor
	body io.ReadCloser
	tr   stages.Tracker
	err  error
}

func (l *lazyBlob) Read(p []byte) (int, error) {
	if l.body == nil && l.err == nil {
		body, err := l.in.client.OpenBlob(l.ctx, l.d)
		if err != nil {
			l.err = fmt.Errorf("layer %d: %w", l.i, err)
		} else {
			l.tr = l.in.progress.Track(fmt.Sprintf("layer %d %.12s", l.i, l.d.Digest.Encoded()), l.d.Size)
			l.body = body
		}
	}
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.body.Read(p)
	l.tr.Add(int64(n))
	if err == io.EOF {
		l.tr.Done(nil)
	} else if err != nil {
		l.tr.Done(err)
		l.err = err
	}
	return n, err
}

func (l *lazyBlob) Close() error {
	if l.body == nil {
		l.err = errors.New("layer body closed")
		return nil
	}
	return l.body.Close()
}
