package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// Output pushes an image to a registry. Layers upload in parallel:
//
//   - A compressed layer whose bytes no stage changed (it still has its
//     digest) is sent as it came, unless another compression was asked
//     for: mounted from its source repository when that is on the same
//     registry, skipped when the registry already has it (HEAD), else
//     uploaded in one streamed PUT.
//   - Any other layer is compressed (gzip with pgzip, or zstd) and hashed
//     while it streams to the registry in one chunked PATCH.
//
// The manifest goes last, once every blob is in, so a failed push never
// leaves a tag pointing at missing blobs. When nothing about the image
// changed, the source manifest itself is pushed, so the image keeps its
// digest.
type Output struct {
	client      *Client
	ref         uri.Reference // normalised destination
	compression elements.Compression
	explicit    bool // compression was asked for (else gzip only for uncompressed layers)
	parallel    int
	log         zerolog.Logger
	progress    stages.Progress
	result      stages.Result

	cache *LayerCache // nil without --layer-cache

	pushedManifest ocispec.Descriptor // what the last successful Run pushed

	// finishing completes uploads whose bytes are all sent: the
	// registry verifies a blob when its upload is completed, which can
	// take a while, and an upload slot need not wait for it.
	finishing    *errgroup.Group
	finishingCtx context.Context

	skipped, mounted, uploaded, cacheHits atomic.Int64
}

// OutputOptions are the per-URI settings of an Output.
type OutputOptions struct {
	Compression string // "gzip", "zstd", or "" (keep compressed layers; gzip the rest)
	Parallel    int
	LayerCache  string // --layer-cache file, or ""
	// Cache, when set, is used instead of opening LayerCache: outputs
	// that run at the same time (the proxy's) share one.
	Cache *LayerCache
}

// NewOutput returns an Output pushing to ref. It does no I/O.
func NewOutput(ref uri.Reference, opts OutputOptions, copts Options, env stages.Env) (*Output, error) {
	c, n := NewFromReference(ref, []string{"pull", "push"}, copts)
	o := &Output{client: c, ref: n, compression: elements.Gzip, parallel: max(opts.Parallel, 1),
		log: env.Log, progress: env.ProgressOrNone()}
	if opts.Cache != nil {
		o.cache = opts.Cache
	} else if opts.LayerCache != "" {
		o.cache = OpenLayerCache(opts.LayerCache, env.Log)
	}
	switch opts.Compression {
	case "":
	case "gzip":
		o.explicit = true
	case "zstd":
		o.compression, o.explicit = elements.Zstd, true
	default:
		return nil, fmt.Errorf("compression %q is not supported; use gzip or zstd", opts.Compression)
	}
	return o, nil
}

// Result reports what the last successful Run pushed.
func (o *Output) Result() stages.Result { return o.result }

// Manifest describes the manifest the last successful Run pushed: its
// media type, digest and size.
func (o *Output) Manifest() ocispec.Descriptor { return o.pushedManifest }

// pushed is what the manifest needs to know of one blob.
type pushed struct {
	mediaType string
	digest    digest.Digest
	size      int64
	kept      bool // the source's bytes and media type, unchanged
}

// Run consumes the image's elements and pushes them.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) error {
	start := time.Now()
	o.finishing, o.finishingCtx = errgroup.WithContext(ctx)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.parallel)

	var (
		srcHost, srcRepo string
		srcManifest      *Manifest
		config           pushed
		configSeen       bool
		layers           []*pushed
		err              error
	)
	for err == nil {
		var el elements.Element
		var ok bool
		el, ok, err = flow.Recv(gctx, in)
		if err != nil || !ok {
			break
		}
		switch el.Kind {
		case elements.KindImage:
			srcHost, srcRepo = splitHost(el.Name)
			if srcHost == o.client.Host() && srcRepo != o.ref.Repository {
				o.client.AddScope(srcRepo, "pull")
			} else {
				srcHost = ""
			}
			if m, rerr := readManifestElement(el); rerr == nil && m != nil {
				srcManifest = m
			}
		case elements.KindConfig:
			var data []byte
			if data, err = tarball.ReadConfig(el); err != nil {
				break
			}
			config = pushed{mediaType: el.MediaType, digest: digest.FromBytes(data), size: int64(len(data)), kept: true}
			configSeen = true
			g.Go(func() error { return o.pushBytes(gctx, config.digest, data) })
		case elements.KindLayer:
			if el.Index != len(layers) {
				el.Close()
				err = fmt.Errorf("%s arrived where layer %d was expected: layers must reach outputs in image order", el, len(layers))
				break
			}
			p := &pushed{}
			layers = append(layers, p)
			mountFrom := ""
			if srcHost != "" {
				mountFrom = srcRepo
			}
			g.Go(func() error {
				r, err := o.pushLayer(gctx, el, mountFrom)
				if err != nil {
					return fmt.Errorf("push %s: %w", el, err)
				}
				*p = r
				return nil
			})
		default:
			el.Close()
		}
	}
	if werr := g.Wait(); werr != nil {
		err = werr // the push's own failure, rather than the cancellation it caused
	}
	if ferr := o.finishing.Wait(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if !configSeen {
		return fmt.Errorf("push %s: the input sent no image config", o.ref)
	}
	mediaType, raw, err := o.manifest(srcManifest, config, layers)
	if err != nil {
		return err
	}
	tag := o.ref.Tag
	if tag == "" {
		tag = digest.FromBytes(raw).String()
		if o.ref.Digest != "" && o.ref.Digest != tag {
			return fmt.Errorf("push %s: the image's manifest digest is %s, not the digest the destination names", o.ref, tag)
		}
	}
	if err := o.client.PutManifest(ctx, tag, mediaType, raw); err != nil {
		return err
	}
	o.pushedManifest = ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if o.cache != nil {
		if err := o.cache.Save(); err != nil {
			o.log.Warn().Err(err).Msg("the image was pushed but the layer cache could not be saved")
		}
	}
	total := config.size
	for _, l := range layers {
		total += l.size
	}
	o.result = stages.Result{Image: o.ref.String(), Bytes: total, Layers: len(layers)}
	o.log.Info().Str("digest", digest.FromBytes(raw).String()).
		Int64("uploaded", o.uploaded.Load()).Int64("already_present", o.skipped.Load()).Int64("mounted", o.mounted.Load()).Int64("cache_hits", o.cacheHits.Load()).
		Msgf("Processed %d bytes in %d layers in %.1f seconds", total, len(layers), time.Since(start).Seconds())
	return nil
}

// readManifestElement returns the source manifest carried by an image
// element, if any, and closes its body.
func readManifestElement(el elements.Element) (*Manifest, error) {
	defer el.Close()
	if el.Body == nil || el.Digest == "" {
		return nil, nil
	}
	switch el.MediaType {
	case ocispec.MediaTypeImageManifest, elements.MediaTypeDockerManifest:
	default:
		return nil, nil
	}
	raw, err := io.ReadAll(io.LimitReader(el.Body, maxManifestSize+1))
	if err != nil || len(raw) > maxManifestSize || digest.FromBytes(raw) != el.Digest {
		return nil, errors.New("unusable source manifest")
	}
	return &Manifest{Raw: raw, MediaType: el.MediaType, Digest: el.Digest}, nil
}

// splitHost splits "host/repo:tag" into the registry host and repository,
// if the first component looks like a host (has a dot or a port, or is
// localhost). Otherwise host is "".
func splitHost(name string) (host, repo string) {
	ref, err := uri.ParseReference(name)
	if err != nil {
		return "", ""
	}
	first, rest, ok := strings.Cut(ref.Repository, "/")
	if !ok || !(strings.ContainsAny(first, ".:") || first == "localhost") {
		return "", ref.Repository
	}
	return first, rest
}

// pushBytes uploads a small blob (the config) unless the registry has it.
func (o *Output) pushBytes(ctx context.Context, d digest.Digest, data []byte) error {
	has, err := o.client.HasBlob(ctx, d)
	if err != nil {
		return fmt.Errorf("push config: %w", err)
	}
	if has {
		return nil
	}
	u, _, err := o.client.StartUpload(ctx, d, "")
	if err != nil {
		return fmt.Errorf("push config: %w", err)
	}
	if err := u.Put(ctx, d, bytes.NewReader(data), int64(len(data))); err != nil {
		u.Cancel()
		return fmt.Errorf("push config: %w", err)
	}
	return nil
}

// pushLayer sends one layer, as it is or recompressed, and says what the
// manifest should list for it.
func (o *Output) pushLayer(ctx context.Context, el elements.Element, mountFrom string) (pushed, error) {
	defer el.Close()
	c := elements.CompressionOf(el.MediaType)
	if c == elements.Unknown && el.Body != nil {
		br := bufio.NewReaderSize(el.Body, 64<<10)
		head, _ := br.Peek(elements.SniffLen)
		c = elements.Detect(head)
		el.Body = readCloser{br, el.Body}
	}
	keep := el.Digest != "" && el.Size >= 0 && (c == elements.Gzip || c == elements.Zstd) &&
		(!o.explicit || c == o.compression)
	if keep {
		mt := el.MediaType
		if elements.CompressionOf(mt) == elements.Unknown {
			mt = elements.LayerMediaType(c)
		}
		return pushed{mediaType: mt, digest: el.Digest, size: el.Size, kept: mt == el.MediaType},
			o.pushAsIs(ctx, el, mountFrom)
	}
	if o.cache != nil && el.DiffID != "" {
		if p, ok, err := o.fromCache(ctx, el); err != nil || ok {
			return p, err
		}
	}
	p, err := o.pushCompressed(ctx, el)
	if err == nil && o.cache != nil && el.DiffID != "" {
		o.cache.Record(el.DiffID, o.compression.String(), p, o.client.Host()+"/"+o.client.Repository())
	}
	return p, err
}

// fromCache uses the layer cache: if the cache knows the blob this layer
// becomes and the destination repository has it (or can mount it from the
// repository it was pushed to on the same registry), the layer is not
// compressed or uploaded.
func (o *Output) fromCache(ctx context.Context, el elements.Element) (pushed, bool, error) {
	p, where, ok := o.cache.Lookup(el.DiffID, o.compression.String())
	if !ok {
		return pushed{}, false, nil
	}
	has, err := o.client.HasBlob(ctx, p.digest)
	if err != nil {
		return pushed{}, false, err
	}
	if !has {
		host, repo, _ := strings.Cut(where, "/")
		if host != o.client.Host() || repo == "" || repo == o.client.Repository() {
			return pushed{}, false, nil
		}
		o.client.AddScope(repo, "pull")
		u, mounted, err := o.client.StartUpload(ctx, p.digest, repo)
		if err != nil {
			return pushed{}, false, err
		}
		if !mounted {
			u.Cancel()
			return pushed{}, false, nil
		}
	}
	o.cacheHits.Add(1)
	o.log.Debug().Str("layer", el.Name).Str("blob", p.digest.String()).Msg("layer cache: the registry has this layer's blob; not compressing it again")
	return p, true, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// pushAsIs sends a blob whose digest is known: mount, skip, or upload.
func (o *Output) pushAsIs(ctx context.Context, el elements.Element, mountFrom string) error {
	if mountFrom == "" {
		has, err := o.client.HasBlob(ctx, el.Digest)
		if err != nil {
			return err
		}
		if has {
			o.skipped.Add(1)
			o.log.Debug().Str("layer", el.Name).Msg("registry already has this layer; not uploading it")
			return nil
		}
	}
	u, mounted, err := o.client.StartUpload(ctx, el.Digest, mountFrom)
	if err != nil {
		return err
	}
	if mounted {
		o.mounted.Add(1)
		o.log.Debug().Str("layer", el.Name).Str("from", mountFrom).Msg("layer mounted from the source repository")
		return nil
	}
	tr := o.progress.Track("push "+shortName(el.Name), el.Size)
	return o.send(ctx, u, stages.TrackReader(el.Body, tr), el.Size, tr, func() digest.Digest { return el.Digest })
}

// send streams body (size bytes, or -1 if unknown) as the upload's PATCH
// and returns as soon as the body has been read to its end, or with the
// error if the PATCH failed before that or ctx (the upload slot's) was
// cancelled. The registry's answer to the PATCH (the distribution registry
// flushes the blob to disk before it answers: about 0.1 s per 128 MiB) and
// the completing PUT with digestOf() are awaited in the background (see
// finishing), so that the caller's upload slot goes to the next layer
// meanwhile rather than leaving the CPUs idle while the registry's disk
// catches up. digestOf is called once the body is read.
func (o *Output) send(ctx context.Context, u *upload, body io.Reader, size int64, tr stages.Tracker, digestOf func() digest.Digest) error {
	read := make(chan struct{})
	body = &endNotifier{r: body, size: size, end: read}
	// The PATCH outlives the slot's context, not the pipeline's.
	sctx, stop := context.WithCancelCause(o.finishingCtx)
	res := make(chan error, 1)
	go func() { res <- u.Stream(sctx, body, size) }()
	fail := func(err error) error {
		stop(err)
		tr.Done(err)
		u.Cancel()
		return err
	}
	complete := func(err error) error {
		defer stop(nil)
		if err == nil {
			err = u.Finish(o.finishingCtx, digestOf())
		} else {
			u.Cancel()
		}
		tr.Done(err)
		if err == nil {
			o.uploaded.Add(1)
		}
		return err
	}
	select {
	case <-read:
		o.finishing.Go(func() error { return complete(<-res) })
		return nil
	case err := <-res:
		select {
		case <-read:
		default:
			if err == nil {
				err = fmt.Errorf("upload blob: the registry answered the PATCH before receiving the whole blob")
			}
		}
		if err != nil {
			return fail(err)
		}
		o.finishing.Go(func() error { return complete(nil) })
		return nil
	case <-ctx.Done():
		// Stop the PATCH; whatever body read is blocked ends when the
		// caller closes the body. The session is abandoned once the
		// PATCH has returned.
		err := context.Cause(ctx)
		stop(err)
		tr.Done(err)
		go func() {
			<-res
			u.Cancel()
		}()
		return err
	}
}

// endNotifier closes end once its reader has given size bytes (size >= 0)
// or reached io.EOF: an HTTP client stops reading a body of known length
// at its length.
type endNotifier struct {
	r    io.Reader
	size int64
	n    int64
	end  chan struct{}
}

func (e *endNotifier) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if e.end != nil && (err == io.EOF || (e.size >= 0 && e.n >= e.size)) {
		close(e.end)
		e.end = nil
	}
	return n, err
}

// sendBuf is the size of the writes WriteTo makes.
const sendBuf = 1 << 20

// WriteTo copies the body to w in writes of up to 1 MiB. net/http copies
// a chunked request body with io.Copy, which uses this when the body has
// it: one chunk (and about two system calls) per MiB instead of per
// 32 KiB, which is measurable on a virtual machine's system calls.
func (e *endNotifier) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, sendBuf)
	var total int64
	for {
		n, err := io.ReadFull(e, buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return total, nil
		default:
			return total, err
		}
	}
}

// pushCompressed compresses a layer's tar stream while uploading it, and
// hashes the compressed bytes on the way for the final PUT.
func (o *Output) pushCompressed(ctx context.Context, el elements.Element) (pushed, error) {
	tarStream, err := elements.OpenTar(el)
	if err != nil {
		return pushed{}, err
	}
	defer tarStream.Close()
	u, _, err := o.client.StartUpload(ctx, "", "")
	if err != nil {
		return pushed{}, err
	}
	tr := o.progress.Track("push "+shortName(el.Name), -1)
	pr, pw := io.Pipe()
	h := sha256.New()
	var size int64
	counted := writerFunc(func(p []byte) (int, error) {
		h.Write(p)
		size += int64(len(p))
		tr.Add(int64(len(p)))
		return pw.Write(p)
	})
	compressed := make(chan struct{})
	go func() {
		defer close(compressed)
		zw, err := elements.NewCompressor(counted, o.compression)
		if err == nil {
			_, err = elements.CopyContext(ctx, zw, tarStream, make([]byte, 256<<10))
			if cerr := zw.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	// The compressor has closed the pipe by the time the upload has read
	// it to its end, so the digest is complete when send asks for it.
	err = o.send(ctx, u, pr, -1, tr, func() digest.Digest { return digest.NewDigest(digest.SHA256, h) })
	pr.CloseWithError(errors.New("upload ended")) // stops the compressor if the upload failed
	<-compressed
	if err != nil {
		return pushed{}, err
	}
	return pushed{mediaType: elements.LayerMediaType(o.compression), digest: digest.NewDigest(digest.SHA256, h), size: size}, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func shortName(name string) string {
	if len(name) > 12 {
		return name[:12]
	}
	return name
}

// manifestDoc is a schema 2 manifest with its keys in the order the
// original tool wrote them.
type manifestDoc struct {
	SchemaVersion int       `json:"schemaVersion"`
	MediaType     string    `json:"mediaType"`
	Config        descDoc   `json:"config"`
	Layers        []descDoc `json:"layers"`
}

type descDoc struct {
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Digest    digest.Digest `json:"digest"`
}

// manifest builds the manifest to push. If the image is unchanged (same
// config, every layer kept as it came, in the same order), it is the source
// manifest itself. Otherwise it is a Docker schema 2 manifest, or an OCI
// manifest when a layer is zstd or the source manifest was OCI.
func (o *Output) manifest(src *Manifest, config pushed, layers []*pushed) (string, []byte, error) {
	if src != nil && unchanged(*src, config, layers) {
		return src.MediaType, src.Raw, nil
	}
	oci := src != nil && src.MediaType == ocispec.MediaTypeImageManifest
	for _, l := range layers {
		if elements.CompressionOf(l.mediaType) == elements.Zstd {
			oci = true
		}
	}
	doc := manifestDoc{SchemaVersion: 2}
	if oci {
		doc.MediaType = ocispec.MediaTypeImageManifest
		doc.Config = descDoc{ocispec.MediaTypeImageConfig, config.size, config.digest}
	} else {
		doc.MediaType = elements.MediaTypeDockerManifest
		doc.Config = descDoc{elements.MediaTypeDockerConfig, config.size, config.digest}
	}
	doc.Layers = make([]descDoc, len(layers))
	for i, l := range layers {
		doc.Layers[i] = descDoc{layerType(l.mediaType, oci), l.size, l.digest}
	}
	raw, err := json.Marshal(doc)
	return doc.MediaType, raw, err
}

// unchanged reports whether the pushed blobs are exactly those of src.
func unchanged(src Manifest, config pushed, layers []*pushed) bool {
	m, err := src.Image()
	if err != nil || m.Config.Digest != config.digest || len(m.Layers) != len(layers) {
		return false
	}
	for i, l := range layers {
		d := m.Layers[i]
		if !l.kept || d.Digest != l.digest || d.Size != l.size || d.MediaType != l.mediaType {
			return false
		}
	}
	return true
}

// layerType returns the layer media type for a compression in the chosen
// manifest flavour. Types it does not know (foreign layers, artifacts) are
// kept.
func layerType(mt string, oci bool) string {
	c := elements.CompressionOf(mt)
	switch {
	case oci:
		return elements.LayerMediaType(c)
	case c == elements.Gzip:
		return elements.MediaTypeDockerLayerGzip
	case c == elements.None:
		return elements.MediaTypeDockerLayer
	}
	return mt
}
