// Package dir writes images to a directory in the original tool's layout:
// one <name>/layer.tar per layer, the config, a manifest file and
// catalog.json, which lets many images share one directory and its layers.
// With expand=true it also writes the image's merged filesystem.
package dir

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/stages/unpack"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// Options are the dir:// query options.
type Options struct {
	// UniqueNames names the manifest manifest-<image>-<tag>.json, so that
	// several images can share the directory, and records ImageName in it.
	UniqueNames bool
	// Expand also writes the merged filesystem to PATH/<manifest stem>/.
	Expand bool
}

// Output writes an image into a directory. Everything is written into a
// staging directory first and moved into place only when the whole image
// is written, so a failure leaves the destination as it was.
type Output struct {
	path     string
	opts     Options
	log      zerolog.Logger
	progress stages.Progress
	result   stages.Result
}

// NewOutput returns an Output writing into the directory at path. It does
// no I/O.
func NewOutput(path string, opts Options, env stages.Env) *Output {
	p := env.Progress
	if p == nil {
		p = stages.NoProgress{}
	}
	return &Output{path: path, opts: opts, log: env.Log, progress: p}
}

// Result reports what the last successful Run wrote.
func (o *Output) Result() stages.Result { return o.result }

const writeBuffer = 1 << 20 // batches the tar reader's small reads into large writes

// Run consumes the image's elements and writes them.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) error {
	st, err := newStage(o.path)
	if err != nil {
		return err
	}
	defer st.abort()
	start := time.Now()

	var (
		image, tag = "unknown", "unknown"
		ref        string
		configName string
		layers     []string
		total      int64
		unpacker   *unpack.Unpacker
		stem       = "manifest"
		seen       = map[string]digest.Digest{} // layer name -> diff ID, in this image
	)
	defer func() {
		if unpacker != nil {
			unpacker.Close()
		}
	}()
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
			el.Close()
			ref = el.Name
			if ref != "" {
				image, tag = splitRef(ref)
			}
			if o.opts.UniqueNames {
				stem = "manifest-" + strings.ReplaceAll(image, "/", "_") + "-" + strings.ReplaceAll(tag, "/", "_")
			}
			if o.opts.Expand {
				root := filepath.Join(st.dir, stem)
				if err := os.Mkdir(root, 0o755); err != nil {
					return fmt.Errorf("create %s: %w", root, err)
				}
				unpacker, err = unpack.New(root, unpack.Options{Log: o.log, Owner: os.Geteuid() == 0})
				if err != nil {
					return err
				}
			}
		case elements.KindConfig:
			data, err := tarball.ReadConfig(el)
			if err != nil {
				return err
			}
			configName = el.Name
			if err := checkName(configName); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(st.dir, configName), data, 0o644); err != nil {
				return fmt.Errorf("write config: %w", err)
			}
			total += int64(len(data))
		case elements.KindLayer:
			if el.Index != len(layers) {
				el.Close()
				return fmt.Errorf("%s arrived where layer %d was expected: layers must reach outputs in image order", el, len(layers))
			}
			if err := checkName(el.Name); err != nil {
				el.Close()
				return err
			}
			prev, dup := seen[el.Name]
			if dup && (prev != el.DiffID || prev == "") {
				el.Close()
				return fmt.Errorf("%s: another layer of this image has the same name; cannot write both as %s/layer.tar", el, el.Name)
			}
			seen[el.Name] = el.DiffID
			n, err := o.writeLayer(ctx, st, el, unpacker, dup)
			if err != nil {
				return err
			}
			layers = append(layers, el.Name+"/layer.tar")
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
	if unpacker != nil {
		if err := unpacker.Finish(); err != nil {
			return err
		}
	}

	m := map[string]any{"Config": configName, "Layers": layers, "RepoTags": []string{tarball.Familiar(ref)}}
	if ref == "" {
		m["RepoTags"] = []string{}
	}
	if o.opts.UniqueNames {
		m["ImageName"] = image
	}
	manifestName := stem + ".json"
	if err := writeJSON(filepath.Join(st.dir, manifestName), []any{m}); err != nil {
		return err
	}
	if err := st.commit(image, tag, manifestName); err != nil {
		return err
	}
	o.result = stages.Result{Image: ref, Bytes: total, Layers: len(layers), Path: o.path}
	o.log.Info().Msgf("Processed %d bytes in %d layers in %.1f seconds", total, len(layers), time.Since(start).Seconds())
	return nil
}

// writeLayer writes <name>/layer.tar unless the destination already has
// it, and applies the layer to the expanded tree when there is one.
func (o *Output) writeLayer(ctx context.Context, st *stage, el elements.Element, u *unpack.Unpacker, dup bool) (int64, error) {
	exists := dup || st.hasLayer(el.Name)
	if exists && u == nil {
		o.log.Debug().Str("layer", el.Name).Msg("layer already present; skipped")
		el.Close()
		return 0, nil
	}
	size := int64(-1)
	if elements.CompressionOf(el.MediaType) == elements.None {
		size = el.Size
	}
	tr := o.progress.Track(el.Name, size)
	n, err := o.streamLayer(ctx, st, el, u, exists)
	tr.Add(n)
	tr.Done(err)
	return n, err
}

func (o *Output) streamLayer(ctx context.Context, st *stage, el elements.Element, u *unpack.Unpacker, exists bool) (int64, error) {
	index := el.Index
	what := el.String()
	raw := tarball.RawRange(el)
	r, err := elements.OpenTar(el)
	if err != nil {
		return 0, err
	}
	defer r.Close()

	var (
		file    *os.File
		sink    io.Writer = io.Discard
		bw      *bufio.Writer
		copying sync.WaitGroup
		copyErr error
	)
	if !exists {
		dir := filepath.Join(st.dir, el.Name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("create %s: %w", dir, err)
		}
		if file, err = os.Create(filepath.Join(dir, "layer.tar")); err != nil {
			return 0, fmt.Errorf("create layer file: %w", err)
		}
		defer file.Close()
		if raw != nil {
			// An uncompressed range of the input file: copy it in the
			// kernel while the stream below is verified (and expanded).
			// The copy ends before r is closed, which releases the file
			// (deferred calls run last-in first-out).
			copying.Add(1)
			go func() {
				defer copying.Done()
				_, copyErr = elements.CopyRange(file, 0, *raw, func(int64) error { return ctx.Err() })
			}()
			defer copying.Wait()
		} else {
			bw = bufio.NewWriterSize(file, writeBuffer)
			sink = bw
		}
	}
	var n int64
	if u == nil {
		n, err = elements.CopyContext(ctx, sink, r, nil)
	} else {
		n, err = o.expandLayer(ctx, u, index, r, sink)
	}
	copying.Wait()
	if err == nil {
		err = copyErr
	}
	if err == nil && bw != nil {
		err = bw.Flush()
	}
	if err == nil && file != nil {
		err = file.Close()
	}
	if err != nil {
		return n, fmt.Errorf("write %s: %w", what, err)
	}
	o.log.Debug().Str("layer", el.Name).Int64("bytes", n).Msg("wrote layer")
	return n, nil
}

// expandLayer copies r to sink (verifying it on the way) in this goroutine
// and applies it to the expanded tree in another, so that hashing and
// writing the layer file overlap with extraction.
func (o *Output) expandLayer(ctx context.Context, u *unpack.Unpacker, index int, r io.Reader, sink io.Writer) (int64, error) {
	pr, pw := io.Pipe()
	applied := make(chan error, 1)
	go func() {
		err := u.Apply(ctx, index, pr)
		if err == nil {
			// Read the end-of-archive padding too, so the copy completes.
			_, err = io.Copy(io.Discard, pr)
		}
		pr.CloseWithError(err) // unblocks the copy if Apply stopped early
		applied <- err
	}()
	n, err := elements.CopyContext(ctx, io.MultiWriter(sink, pw), r, nil)
	pw.CloseWithError(err) // io.EOF to Apply on success (nil closes cleanly)
	aerr := <-applied
	if aerr != nil {
		return n, fmt.Errorf("expand: %w", aerr)
	}
	return n, err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// splitRef splits a reference into the image name catalog.json uses (the
// familiar name without tag) and its tag (or digest).
func splitRef(ref string) (image, tag string) {
	r, err := uri.ParseReference(ref)
	if err != nil {
		return ref, "latest"
	}
	tag = r.Tag
	if tag == "" {
		tag = r.Digest
	}
	r.Tag, r.Digest = "", ""
	return r.Familiar(), tag
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") ||
		name == "catalog.json" || strings.HasPrefix(name, "manifest") || strings.HasPrefix(name, stagePrefix) {
		return fmt.Errorf("element name %q is not usable as a file name in a dir:// output", name)
	}
	return nil
}

// writeJSON writes v as the original did: 4-space indent, sorted keys, no
// trailing newline.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
