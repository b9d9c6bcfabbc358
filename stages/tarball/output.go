package tarball

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/staging"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// Output writes a docker-loadable v1.2 tarball: the config as <hex>.json,
// one <name>/layer.tar (uncompressed) per layer in image order, and
// manifest.json last. The file is written under a temporary name and
// renamed only when complete.
type Output struct {
	path     string
	log      zerolog.Logger
	progress stages.Progress
	result   stages.Result
	written  string // the tarball the last successful Run committed, for Verify
}

// NewOutput returns an Output writing the tarball at path. It does no I/O.
func NewOutput(path string, env stages.Env) *Output {
	p := env.ProgressOrNone()
	return &Output{path: path, log: env.Log, progress: p}
}

// Result reports what the last successful Run wrote.
func (o *Output) Result() stages.Result { return o.result }

// Run consumes the image's elements and writes the tarball.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) error {
	f, err := staging.NewFile(o.path)
	if err != nil {
		return err
	}
	defer f.Abort()
	start := time.Now()
	a := newArchive(f.File)

	var (
		ref        string
		configName string
		layers     []string
		written    = map[string]digest.Digest{} // member name -> diff ID
		total      int64
	)
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch el.Kind {
		case elements.KindImage:
			ref = el.Name
			el.Close()
		case elements.KindConfig:
			data, err := ReadConfig(el)
			if err != nil {
				return err
			}
			configName = digest.FromBytes(data).Encoded() + ".json"
			if err := a.add(configName, data); err != nil {
				return err
			}
			total += int64(len(data))
		case elements.KindLayer:
			name := el.Name + "/layer.tar"
			if el.Index != len(layers) {
				el.Close()
				return fmt.Errorf("%s arrived where layer %d was expected: layers must reach outputs in image order", el, len(layers))
			}
			if el.Late != nil {
				name, n, err := o.writeLate(ctx, a, el, written)
				if err != nil {
					return err
				}
				layers = append(layers, name)
				total += n
				continue
			}
			if err := checkName(el.Name); err != nil {
				el.Close()
				return err
			}
			prev, dup := written[name]
			if dup && (prev != el.DiffID || prev == "") {
				el.Close()
				return fmt.Errorf("%s: another layer of this image has the same name; cannot write both as %s", el, name)
			}
			n, err := o.writeLayer(ctx, a, el, name, dup)
			if err != nil {
				return err
			}
			written[name] = el.DiffID
			layers = append(layers, name)
			total += n
		default:
			el.Close()
		}
	}
	// The input's channel closes as it returns; if it returned an error,
	// the context is cancelled first (see engine): never commit then.
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if configName == "" {
		return fmt.Errorf("write %s: the input sent no image config", o.path)
	}
	var tags []string
	if ref != "" {
		tags = []string{Familiar(ref)}
	}
	if err := a.add("manifest.json", manifestJSON(layers, tags, configName)); err != nil {
		return err
	}
	if err := a.close(); err != nil {
		return err
	}
	if err := f.Commit(); err != nil {
		return err
	}
	o.result = stages.Result{Image: ref, Bytes: total, Layers: len(layers), Path: o.path}
	o.written = o.path
	o.log.Info().Msgf("Processed %d bytes in %d layers in %.1f seconds", total, len(layers), time.Since(start).Seconds())
	return nil
}

// writeLayer streams one layer's tar into the archive, verifying its diff
// ID on the way. A layer already written under the same name (an image may
// use one layer twice) is read and verified but not written again.
func (o *Output) writeLayer(ctx context.Context, a *archive, el elements.Element, name string, dup bool) (int64, error) {
	size := int64(-1)
	if elements.CompressionOf(el.MediaType) == elements.None {
		size = el.Size
	}
	tr := o.progress.Track(el.Name, size)
	raw := RawRange(el)
	settled := raw != nil && elements.IsSettled(el)
	r, err := elements.OpenTar(el)
	if err != nil {
		tr.Done(err)
		return 0, err
	}
	defer r.Close()
	var n int64
	switch {
	case dup:
		n, err = io.Copy(io.Discard, stages.TrackReader(r, tr))
	case raw != nil:
		// The layer is an uncompressed range of the input file: copy it in
		// the kernel while its digest is checked from a second read.
		n, err = a.addRange(ctx, name, *raw, func() error {
			if settled {
				return nil // already verified where it was written
			}
			_, err := io.Copy(io.Discard, r)
			return err
		}, tr.Add)
	default:
		n, err = a.addStream(ctx, func() (string, error) { return name, nil }, stages.TrackReader(r, tr))
	}
	tr.Done(err)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", el, err)
	}
	o.log.Debug().Str("layer", el.Name).Int64("bytes", n).Msg("wrote layer")
	return n, nil
}

// writeLate writes a layer whose name is known only at its end (see
// elements.Element.Late): its member is written under a blank header that
// is filled in once the bytes are through. A layer whose name turns out to
// be already written (an image may use one layer twice) is cut off again.
// It returns the member name and the bytes written.
func (o *Output) writeLate(ctx context.Context, a *archive, el elements.Element, written map[string]digest.Digest) (string, int64, error) {
	tr := o.progress.Track(el.Name, -1)
	defer el.Close()
	var final elements.Final
	start := a.off
	n, err := a.addStream(ctx, func() (string, error) {
		var err error
		if final, err = el.Late(); err != nil {
			return "", err
		}
		if err := checkName(final.Name); err != nil {
			return "", err
		}
		return final.Name + "/layer.tar", nil
	}, stages.TrackReader(el.Body, tr))
	tr.Done(err)
	if err != nil {
		return "", n, fmt.Errorf("write %s: %w", el, err)
	}
	name := final.Name + "/layer.tar"
	if _, dup := written[name]; dup {
		if err := a.truncate(start); err != nil {
			return "", 0, err
		}
		n = 0
	}
	written[name] = final.Digest
	o.log.Debug().Str("layer", final.Name).Int64("bytes", n).Msg("wrote layer")
	return name, n, nil
}

// RawRange returns the file range holding a layer's uncompressed tar, when
// its body is exactly that (an uncompressed layer read from a file), and nil
// otherwise.
func RawRange(el elements.Element) *elements.FileRange {
	if el.Source == nil || el.Kind != elements.KindLayer || elements.CompressionOf(el.MediaType) != elements.None {
		return nil
	}
	return el.Source
}

// ReadConfig reads a config element's body whole (configs are small; the
// size is bounded against hostile input) and closes it.
func ReadConfig(el elements.Element) ([]byte, error) {
	defer el.Close()
	if el.Body == nil {
		return nil, fmt.Errorf("read config %s: no body", el.Name)
	}
	data, err := io.ReadAll(io.LimitReader(el.Body, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", el.Name, err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("read config %s: larger than %d bytes", el.Name, maxMetadataSize)
	}
	if el.Digest != "" {
		if got := digest.FromBytes(data); got != el.Digest {
			return nil, &elements.DigestError{What: "config " + el.Name, Want: el.Digest, Got: got}
		}
	}
	return data, nil
}

// checkName refuses layer names that are not a single plain path
// component: they become directory names in outputs.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("layer name %q is not usable as a file name", name)
	}
	return nil
}

// manifestJSON renders manifest.json as the original tool did: Python's
// json.dumps with its default separators and keys Layers, RepoTags, Config.
func manifestJSON(layers, tags []string, config string) []byte {
	var b bytes.Buffer
	b.WriteString(`[{"Layers": `)
	pyList(&b, layers)
	b.WriteString(`, "RepoTags": `)
	pyList(&b, tags)
	b.WriteString(`, "Config": `)
	pyString(&b, config)
	b.WriteString(`}]`)
	return b.Bytes()
}

func pyList(b *bytes.Buffer, items []string) {
	b.WriteByte('[')
	for i, s := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		pyString(b, s)
	}
	b.WriteByte(']')
}

func pyString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	b.Truncate(b.Len() - 1) // Encode adds a newline
}
