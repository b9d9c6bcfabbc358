package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// Output loads the image into the engine: it writes a docker-loadable v1.2
// tarball (the tar:// output's layout: config, <name>/layer.tar per layer
// in image order, manifest.json last) into an io.Pipe whose other end is
// the body of `POST /images/load`, so nothing is written to disk for layers
// that arrive uncompressed with a known size (a tarball's, the engine's
// own). A tar header needs the member's size before its data, so a layer
// that arrives compressed (a registry's) or of unknown size is first
// decompressed, verifying its diff ID, into an unlinked temporary file,
// up to -j layers at a time ahead of the writer.
//
// The image is tagged with the destination's IMAGE:TAG, or, when the
// destination names none (docker://?socket=...), with the source's name.
// manifest.json is written only when every layer has been written and
// verified; on any failure the request is aborted, so the engine loads
// nothing.
type Output struct {
	client   *Client
	tag      string // "" = the source's reference
	parallel int
	tempDir  string
	log      zerolog.Logger
	progress stages.Progress
	result   stages.Result
}

// NewOutput returns an Output loading into the engine at socket, tagging
// the image as ref (nil: as the source names it). It does no I/O.
func NewOutput(ref *uri.Reference, socket string, env stages.Env) (*Output, error) {
	o := &Output{client: NewClient(socket), parallel: max(env.Parallel, 1), tempDir: env.TempDir, log: env.Log, progress: env.ProgressOrNone()}
	if ref != nil {
		if ref.Tag == "" {
			return nil, fmt.Errorf("docker:// destination %s names a digest: the engine tags images by name, give IMAGE:TAG", ref)
		}
		o.tag = tarball.Familiar(ref.String())
	}
	return o, nil
}

// Result reports what the last successful Run loaded.
func (o *Output) Result() stages.Result { return o.result }

// errLoadEnded is what writes see once the load request has ended.
var errLoadEnded = errors.New("the Docker Engine ended the load request")

// Run consumes the image's elements and loads them.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) error {
	start := time.Now()
	defer o.client.CloseIdle()
	// Fail before anything is read when the engine is not there.
	if err := o.client.Ping(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr, pw := io.Pipe()
	type loadResult struct {
		msgs []string
		err  error
	}
	loaded := make(chan loadResult, 1)
	go func() {
		msgs, err := o.client.Load(ctx, pr)
		pr.CloseWithError(errLoadEnded)
		loaded <- loadResult{msgs, err}
	}()
	tag, layers, total, err := o.write(ctx, in, pw)
	if err != nil {
		pw.CloseWithError(err)
		cancel(err)
		lr := <-loaded
		if errors.Is(err, errLoadEnded) {
			if lr.err != nil {
				return lr.err
			}
			return fmt.Errorf("%w before the whole image was sent", errLoadEnded)
		}
		return err
	}
	pw.Close()
	lr := <-loaded
	if lr.err != nil {
		return lr.err
	}
	for _, m := range lr.msgs {
		o.log.Debug().Str("engine", m).Msg("load")
	}
	if tag == "" {
		o.log.Warn().Msg("the image has no name: the Docker Engine loaded it untagged (give one as docker://IMAGE:TAG)")
	}
	o.result = stages.Result{Image: tag, Bytes: total, Layers: layers}
	o.log.Info().Str("socket", o.client.socket).Str("image", tag).
		Msgf("Processed %d bytes in %d layers in %.1f seconds", total, layers, time.Since(start).Seconds())
	return nil
}

// write receives the elements and writes the tarball to w, manifest.json
// last. It returns the tag written in RepoTags.
func (o *Output) write(ctx context.Context, in <-chan elements.Element, w io.Writer) (tag string, nLayers int, total int64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ord := flow.NewOrdered(o.parallel, func(el elements.Element) { el.Close() })
	recvErr := make(chan error, 1)
	go func() {
		defer ord.Close()
		for {
			el, ok, err := flow.Recv(ctx, in)
			if err != nil || !ok {
				recvErr <- err
				return
			}
			if err := ord.Submit(ctx, func(ctx context.Context) (elements.Element, error) { return o.prepare(ctx, el) }); err != nil {
				el.Close()
				recvErr <- err
				return
			}
		}
	}()
	defer func() {
		if err != nil {
			cancel()
			ord.Abort()
			<-recvErr
		}
	}()

	sw := tarball.NewStreamWriter(w)
	var (
		ref        string
		configName string
		layers     []string
		written    = map[string]digest.Digest{} // member name -> diff ID
	)
	for {
		el, ok, err := ord.Next(ctx)
		if err != nil {
			return "", 0, 0, err
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
				return "", 0, 0, err
			}
			configName = digest.FromBytes(data).Encoded() + ".json"
			if err := sw.AddBytes(configName, data); err != nil {
				return "", 0, 0, err
			}
			total += int64(len(data))
		case elements.KindLayer:
			if el.Index != len(layers) {
				el.Close()
				return "", 0, 0, fmt.Errorf("%s arrived where layer %d was expected: layers must reach outputs in image order", el, len(layers))
			}
			if err := tarball.CheckLayerName(el.Name); err != nil {
				el.Close()
				return "", 0, 0, err
			}
			name := el.Name + "/layer.tar"
			prev, dup := written[name]
			if dup && (prev != el.DiffID || prev == "") {
				el.Close()
				return "", 0, 0, fmt.Errorf("%s: another layer of this image has the same name; cannot write both as %s", el, name)
			}
			n, err := o.writeLayer(ctx, sw, el, name, dup)
			if err != nil {
				return "", 0, 0, err
			}
			written[name] = el.DiffID
			layers = append(layers, name)
			total += n
		default:
			el.Close()
		}
	}
	if err := <-recvErr; err != nil {
		return "", 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		return "", 0, 0, context.Cause(ctx)
	}
	if configName == "" {
		return "", 0, 0, fmt.Errorf("load into the Docker Engine at %s: the input sent no image config", o.client.socket)
	}
	tag = o.tag
	if tag == "" && ref != "" {
		if r, perr := uri.ParseReference(ref); perr == nil && r.Tag != "" {
			tag = tarball.Familiar(ref)
		}
	}
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	if err := sw.AddBytes("manifest.json", tarball.ManifestJSON(layers, tags, configName)); err != nil {
		return "", 0, 0, err
	}
	if err := sw.Close(); err != nil {
		return "", 0, 0, err
	}
	return tag, len(layers), total, nil
}

// writeLayer streams one layer's tar into the archive, verifying its diff
// ID on the way. A layer already written under the same name is read and
// verified but not written again.
func (o *Output) writeLayer(ctx context.Context, sw *tarball.StreamWriter, el elements.Element, name string, dup bool) (int64, error) {
	tr := o.progress.Track(el.Name, el.Size)
	r, err := elements.OpenTar(el)
	if err != nil {
		tr.Done(err)
		return 0, err
	}
	defer r.Close()
	var n int64
	if dup {
		n, err = io.Copy(io.Discard, stages.TrackReader(r, tr))
	} else {
		n, err = sw.AddReader(ctx, name, el.Size, stages.TrackReader(r, tr))
	}
	tr.Done(err)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", el, err)
	}
	o.log.Debug().Str("layer", el.Name).Int64("bytes", n).Msg("sent layer")
	return n, nil
}

// prepare makes sure a layer is an uncompressed tar of known size: a
// compressed layer, or one of unknown size, is decompressed (and its diff
// ID verified) into an unlinked temporary file. Other elements pass as
// they are.
func (o *Output) prepare(ctx context.Context, el elements.Element) (elements.Element, error) {
	if el.Kind != elements.KindLayer || el.Body == nil {
		return el, nil
	}
	if elements.CompressionOf(el.MediaType) == elements.None && el.Size >= 0 {
		return el, nil
	}
	r, err := elements.OpenTar(el)
	if err != nil {
		return elements.Element{}, err
	}
	defer r.Close()
	b, err := spoolBlob(ctx, o.tempDir, el.Name, r, nil)
	if err != nil {
		return elements.Element{}, fmt.Errorf("%s: %w", el, err)
	}
	o.log.Debug().Str("layer", el.Name).Int64("bytes", b.size).Msg("decompressed to learn its size")
	out := el
	out.Body = b.Open()
	b.Release()
	out.MediaType = elements.LayerMediaType(elements.None)
	out.Size = b.size
	out.Digest = b.digest
	out.Source = nil
	if out.DiffID == "" {
		out.DiffID = b.digest
	}
	return out, nil
}
