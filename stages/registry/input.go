package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/engine/spool"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"
)

// Input reads an image from a registry. Layers download in parallel, each
// into a spool file (see engine/spool) so that the next stage reads the
// first layer while later ones are still arriving; they reach it in image
// order, each verified against its digest as it streams.
type Input struct {
	client   *Client
	ref      uri.Reference // normalised
	platform ocispec.Platform
	parallel int
	tempDir  string
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
	p := env.Progress
	if p == nil {
		p = stages.NoProgress{}
	}
	return &Input{client: c, ref: n, platform: opts.Platform, parallel: max(opts.Parallel, 1),
		tempDir: env.TempDir, log: env.Log, progress: p}
}

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

// sendLayers downloads up to parallel layers at once, each into a spool,
// and sends them in image order. At most 2*parallel layers are spooled
// ahead of the consumer, which bounds temporary disk use.
func (in *Input) sendLayers(ctx context.Context, out chan<- elements.Element, layers []ocispec.Descriptor, diffIDs []digest.Digest) error {
	// Downloads outlive this function (the consumer reads the last spools
	// after it returns), so they hang off the pipeline's context; closing
	// an element's body stops its download.
	pipelineCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	downloads := semaphore.NewWeighted(int64(in.parallel))
	ord := flow.NewOrdered(2*in.parallel, func(el elements.Element) { el.Close() })
	submitErr := make(chan error, 1)
	go func() {
		defer ord.Close()
		for i, d := range layers {
			i, d := i, d
			err := ord.Submit(ctx, func(ctx context.Context) (elements.Element, error) {
				return in.startLayer(ctx, pipelineCtx, downloads, i, d, diffIDs[i])
			})
			if err != nil {
				submitErr <- err
				return
			}
		}
		submitErr <- nil
	}()
	for {
		el, ok, err := ord.Next(ctx)
		if err == nil && ok {
			err = flow.Send(ctx, out, el)
		}
		if err != nil {
			cancel()
			ord.Abort()
			<-submitErr
			return err
		}
		if !ok {
			break
		}
	}
	return <-submitErr
}

// startLayer waits for a download slot, starts the download into a spool
// and returns the layer's element, whose body follows the spool.
func (in *Input) startLayer(ctx, pipelineCtx context.Context, downloads *semaphore.Weighted, i int, d ocispec.Descriptor, diffID digest.Digest) (elements.Element, error) {
	if err := downloads.Acquire(ctx, 1); err != nil {
		return elements.Element{}, context.Cause(ctx)
	}
	sp, err := spool.New(pipelineCtx, in.tempDir)
	if err != nil {
		downloads.Release(1)
		return elements.Element{}, err
	}
	body, err := in.client.OpenBlob(sp.Context(), d)
	if err != nil {
		downloads.Release(1)
		sp.Finish(err)
		sp.Reader().Close()
		return elements.Element{}, fmt.Errorf("layer %d: %w", i, err)
	}
	tr := in.progress.Track(fmt.Sprintf("layer %d %.12s", i, d.Digest.Encoded()), d.Size)
	go func() {
		defer downloads.Release(1)
		defer body.Close()
		_, err := sp.Fill(stages.TrackReader(body, tr))
		tr.Done(err)
		if err != nil && sp.Context().Err() == nil {
			in.log.Debug().Err(err).Int("layer", i).Msg("layer download failed")
		}
	}()
	mt := d.MediaType
	if elements.CompressionOf(mt) == elements.Unknown {
		in.log.Debug().Str("media_type", mt).Int("layer", i).Msg("unknown layer media type; its compression will be sniffed")
	}
	return elements.Element{
		Kind: elements.KindLayer, Name: d.Digest.Encoded(), Index: i,
		MediaType: mt, Digest: d.Digest, DiffID: diffID, Size: d.Size,
		Body: sp.Reader(),
	}, nil
}
