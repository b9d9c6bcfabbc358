// Package dir reads and writes images in a directory in the original
// tool's layout: one <name>/layer.tar per layer, the config, a manifest
// file and catalog.json, which lets many images share one directory and its
// layers. The output, with expand=true, also writes the image's merged
// filesystem; the input reads one image back, chosen through catalog.json.
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
	"sync/atomic"
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
	// written and manifest are the directory and manifest file name the
	// last successful Run committed, for Verify.
	written, manifest string
}

// NewOutput returns an Output writing into the directory at path. It does
// no I/O.
func NewOutput(path string, opts Options, env stages.Env) *Output {
	p := env.ProgressOrNone()
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
		layers     = []string{} // [] rather than null in the manifest of an image with no layers, as the original wrote
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
	jobs := newLayerJobs(ctx)
	defer jobs.stop() // before the unpacker is closed and the stage removed
	ctx = jobs.ctx    // a layer written in the background that fails stops the rest
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
			n, err := o.writeLayer(ctx, st, el, unpacker, dup, jobs)
			if err != nil {
				return err
			}
			layers = append(layers, el.Name+"/layer.tar")
			total += n
		default:
			el.Close()
		}
	}
	if err := jobs.wait(); err != nil {
		return err
	}
	total += jobs.total.Load()
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
	o.written, o.manifest = o.path, manifestName
	o.log.Info().Msgf("Processed %d bytes in %d layers in %.1f seconds", total, len(layers), time.Since(start).Seconds())
	return nil
}

// writeLayer writes <name>/layer.tar unless the destination already has
// it, and applies the layer to the expanded tree when there is one. A layer
// that is an uncompressed range of the input file is written in the
// background (see layerJobs): writeLayer then returns 0 at once, and the
// bytes are counted in jobs.total.
func (o *Output) writeLayer(ctx context.Context, st *stage, el elements.Element, u *unpack.Unpacker, dup bool, jobs *layerJobs) (int64, error) {
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
	if raw := tarball.RawRange(el); raw != nil {
		tr := o.progress.Track(el.Name, size)
		err := jobs.start(func(ctx context.Context, prev *turn, mine *turn) (int64, error) {
			n, err := o.streamRange(ctx, st, el, *raw, u, exists, prev, mine)
			tr.Add(n)
			tr.Done(err)
			return n, err
		})
		if err != nil {
			el.Close()
			tr.Done(err)
		}
		return 0, err
	}
	// Layers streamed here are applied after those written in the
	// background, and the file system is left to one writer at a time.
	if err := jobs.wait(); err != nil {
		el.Close()
		return 0, err
	}
	tr := o.progress.Track(el.Name, size)
	n, err := o.streamLayer(ctx, st, el, u, exists)
	tr.Add(n)
	tr.Done(err)
	return n, err
}

// createLayerFile creates <name>/layer.tar in the stage.
func createLayerFile(st *stage, name string) (*os.File, error) {
	dir := filepath.Join(st.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.Create(filepath.Join(dir, "layer.tar"))
	if err != nil {
		return nil, fmt.Errorf("create layer file: %w", err)
	}
	return f, nil
}

// streamLayer writes a layer from its stream: decompressed if need be,
// verified, copied to the layer file and applied to the expanded tree.
func (o *Output) streamLayer(ctx context.Context, st *stage, el elements.Element, u *unpack.Unpacker, exists bool) (int64, error) {
	index := el.Index
	what := el.String()
	r, err := elements.OpenTar(el)
	if err != nil {
		return 0, err
	}
	defer r.Close()

	var (
		file *os.File
		sink io.Writer = io.Discard
		bw   *bufio.Writer
	)
	if !exists {
		if file, err = createLayerFile(st, el.Name); err != nil {
			return 0, err
		}
		defer file.Close()
		bw = bufio.NewWriterSize(file, writeBuffer)
		sink = bw
	}
	var n int64
	if u == nil {
		n, err = elements.CopyContext(ctx, sink, r, nil)
	} else {
		n, err = o.expandLayer(ctx, u, index, r, sink)
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

// streamRange writes a layer that is an uncompressed range of the input
// file, in three goroutines that overlap: the layer file is copied from
// the input in the kernel, the expanded tree is applied straight from the
// input (its regular files copied in the kernel too), and this goroutine
// reads the layer's stream to its end, which verifies it. A digest
// mismatch stops the other two and is the error reported, since it
// explains any failure to extract. The extraction waits for prev, the
// previous layer's, and ends mine.
func (o *Output) streamRange(ctx context.Context, st *stage, el elements.Element, raw elements.FileRange, u *unpack.Unpacker, exists bool, prev, mine *turn) (int64, error) {
	index := el.Index
	what := el.String()
	r, err := elements.OpenTar(el)
	if err != nil {
		mine.end(false)
		return 0, err
	}
	// The copies read raw until they end, before r is closed, which
	// releases the file (deferred calls run last-in first-out).
	defer r.Close()
	sub, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		wg               sync.WaitGroup
		copyErr, applErr error
	)
	defer wg.Wait()
	if !exists {
		file, err := createLayerFile(st, el.Name)
		if err != nil {
			mine.end(false)
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, copyErr = elements.CopyRange(file, 0, raw, func(int64) error { return sub.Err() })
			if err := file.Close(); copyErr == nil {
				copyErr = err
			}
		}()
	}
	if u != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := false
			defer func() { mine.end(ok) }()
			select {
			case <-prev.done:
			case <-sub.Done():
				applErr = sub.Err()
				return
			}
			if !prev.ok {
				// The previous layer failed, and its error, which
				// cancels this layer too, is the one to report.
				<-sub.Done()
				applErr = context.Cause(sub)
				return
			}
			if err := u.ApplyFile(sub, index, raw.File, raw.Offset, raw.Length); err != nil {
				applErr = fmt.Errorf("expand: %w", err)
				return
			}
			ok = true
		}()
	} else {
		mine.end(true)
	}
	n, err := elements.CopyContext(ctx, io.Discard, r, nil)
	if err != nil {
		cancel()
	}
	wg.Wait()
	switch {
	case err != nil:
	case applErr != nil:
		err = applErr
	default:
		err = copyErr
	}
	if err != nil {
		return n, fmt.Errorf("write %s: %w", what, err)
	}
	o.log.Debug().Str("layer", el.Name).Int64("bytes", n).Msg("wrote layer")
	return n, nil
}

// layersInFlight bounds the layers written in the background at once. Two
// are enough to keep two CPUs busy: while one layer's hash finishes, the
// next one's copies start.
const layersInFlight = 2

// layerJobs writes layers in the background, at most layersInFlight at a
// time, while the output receives the next ones. Their extractions still
// happen one after another in image order: each waits for the previous
// one's turn to end. The first error cancels the rest.
type layerJobs struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	slots  chan struct{}
	wg     sync.WaitGroup
	last   *turn // the turn of the last layer started
	total  atomic.Int64

	mu  sync.Mutex
	err error
}

// turn is one layer's turn to extract: done is closed when it ends, and ok
// (set before) says whether the layer was applied.
type turn struct {
	done chan struct{}
	ok   bool
	once sync.Once
}

func (t *turn) end(ok bool) {
	t.once.Do(func() {
		t.ok = ok
		close(t.done)
	})
}

func newLayerJobs(ctx context.Context) *layerJobs {
	ctx, cancel := context.WithCancelCause(ctx)
	first := &turn{done: make(chan struct{})}
	first.end(true)
	return &layerJobs{ctx: ctx, cancel: cancel, slots: make(chan struct{}, layersInFlight), last: first}
}

// start runs fn in the background once a slot is free. fn is given the
// previous layer's turn and its own, which it must end.
func (j *layerJobs) start(fn func(ctx context.Context, prev, mine *turn) (int64, error)) error {
	select {
	case j.slots <- struct{}{}:
	case <-j.ctx.Done():
		return context.Cause(j.ctx)
	}
	prev, mine := j.last, &turn{done: make(chan struct{})}
	j.last = mine
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer func() { <-j.slots }()
		n, err := fn(j.ctx, prev, mine)
		mine.end(err == nil)
		j.total.Add(n)
		if err != nil {
			j.mu.Lock()
			if j.err == nil {
				j.err = err
			}
			j.mu.Unlock()
			j.cancel(err)
		}
	}()
	return nil
}

// stop cancels the layers still being written and waits for them.
func (j *layerJobs) stop() {
	j.cancel(errStopped)
	j.wg.Wait()
}

var errStopped = errors.New("dir output stopped")

// wait waits until every layer started has been written, and returns the
// first error.
func (j *layerJobs) wait() error {
	j.wg.Wait()
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
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
