// Package rewrite is the machinery of the filters that change layer
// contents (normalize-timestamps, exclude): each layer's tar stream is
// rewritten entry by entry at the block level (see stages/tarstream), so
// that everything a filter does not touch (PAX records, xattrs such as
// file capabilities, long names, sparse maps, devices, owners) stays byte
// for byte. The new diff ID is computed while the layer streams; the
// config, held back until every layer is done, gets the new diff IDs in
// place of the old ones, and follows the layers.
//
// Layers are rewritten several at a time, each into an unlinked temporary
// file, and handed on in image order. A layer the filter leaves unchanged
// is handed on with its original bytes (compressed as they came), so a
// filter that changes nothing causes no recompression downstream.
package rewrite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/engine/spool"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/stages/tarstream"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"
)

// Editor is what a content filter decides.
type Editor interface {
	// Entry is called for every entry of every layer, in order; it may
	// modify the entry and returns whether to keep it. It is called from
	// several goroutines at once (one per layer): keep per-layer state in
	// the value returned by Layer.
	Entry(state any, e *tarstream.Entry) (keep bool)
	// Layer returns fresh per-layer state for Entry.
	Layer() any
	// Config returns splices to apply to the config besides the diff IDs
	// (normalize-timestamps sets the creation times), or nil.
	Config(cfg []byte) []Splice
}

// Splice replaces the JSON value at Path (object keys, "*" for every array
// element) with Text.
type Splice struct {
	Path []string
	Text []byte
}

// Filter runs an Editor over every layer.
type Filter struct {
	name     string
	edit     Editor
	parallel int
	tempDir  string
	log      zerolog.Logger
}

// New returns a filter named name (for logs) running edit.
func New(name string, edit Editor, env stages.Env) *Filter {
	return &Filter{name: name, edit: edit, parallel: max(env.Parallel, 1), tempDir: env.TempDir, log: env.Log}
}

// Run rewrites the layers from in and sends them, then the config, on out.
func (f *Filter) Run(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element) error {
	busy := semaphore.NewWeighted(int64(f.parallel))
	var (
		mu        sync.Mutex
		newDiffs  = map[int]digest.Digest{}
		config    *elements.Element
		configRaw []byte
	)
	err := flow.Map(ctx, in, out, 2*f.parallel, func(ctx context.Context, el elements.Element) (elements.Element, bool, error) {
		switch {
		case el.Kind == elements.KindConfig:
			// Held back: its diff IDs change with the layers.
			data, err := tarball.ReadConfig(el)
			if err != nil {
				return el, false, err
			}
			c := el
			c.Body = nil
			mu.Lock()
			config, configRaw = &c, data
			mu.Unlock()
			return el, false, nil
		case el.Kind != elements.KindLayer || el.Body == nil:
			return el, true, nil
		}
		if err := busy.Acquire(ctx, 1); err != nil {
			el.Close()
			return el, false, context.Cause(ctx)
		}
		defer busy.Release(1)
		res, changed, err := f.layer(ctx, el)
		if err == nil && changed {
			mu.Lock()
			newDiffs[el.Index] = res.DiffID
			mu.Unlock()
		}
		return res, true, err
	})
	if err != nil {
		return err
	}
	if config == nil {
		return nil // nothing to fix (the output will complain if it needs one)
	}
	el, err := f.fixConfig(*config, configRaw, newDiffs)
	if err != nil {
		return err
	}
	return flow.Send(ctx, out, el)
}

// fixConfig replaces the changed diff IDs (and whatever else the editor
// asks for) in the config, and names it after its new digest.
func (f *Filter) fixConfig(el elements.Element, raw []byte, newDiffs map[int]digest.Digest) (elements.Element, error) {
	var cfg struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return el, fmt.Errorf("%s: config is not valid JSON: %w", f.name, err)
	}
	var splices []splice
	if len(newDiffs) > 0 {
		ids := cfg.RootFS.DiffIDs
		for i, d := range newDiffs {
			if i < 0 || i >= len(ids) {
				return el, fmt.Errorf("%s: layer %d has no diff ID in the config (it lists %d)", f.name, i, len(ids))
			}
			ids[i] = d
		}
		text, _ := json.Marshal(ids)
		splices = append(splices, splice{path: []string{"rootfs", "diff_ids"}, text: text})
		f.log.Info().Msgf("Updating config diff_ids (%d of %d layers modified)", len(newDiffs), len(ids))
	}
	for _, s := range f.edit.Config(raw) {
		splices = append(splices, splice{path: s.Path, text: s.Text})
	}
	if len(splices) > 0 {
		var err error
		if raw, err = applySplices(raw, splices); err != nil {
			return el, fmt.Errorf("%s: %w", f.name, err)
		}
		if !json.Valid(raw) {
			return el, fmt.Errorf("%s: rewriting the config made invalid JSON", f.name)
		}
	}
	d := digest.FromBytes(raw)
	el.Name, el.Digest, el.Size = d.Encoded()+".json", d, int64(len(raw))
	el.Body = io.NopCloser(strings.NewReader(string(raw)))
	el.Source = nil
	return el, nil
}

// layer rewrites one layer. It returns the element to pass on and whether
// the layer's content changed.
func (f *Filter) layer(ctx context.Context, el elements.Element) (elements.Element, bool, error) {
	compressed := elements.CompressionOf(el.MediaType) != elements.None
	var orig *tempFile
	if compressed {
		// Keep the bytes as they came, in case nothing changes.
		var err error
		if orig, err = newTempFile(f.tempDir); err != nil {
			el.Close()
			return el, false, err
		}
		el.Body = teeCloser{io.TeeReader(el.Body, orig), el.Body}
	}
	tarStream, err := elements.OpenTar(el) // verifies the old diff ID at the end
	if err != nil {
		orig.discard()
		return el, false, err
	}
	defer tarStream.Close()
	rewritten, err := newTempFile(f.tempDir)
	if err != nil {
		orig.discard()
		return el, false, err
	}
	h := digest.SHA256.Digester()
	rw := tarstream.NewRewriter(ctxReader{ctx, tarStream}, io.MultiWriter(rewritten, h.Hash()))
	state := f.edit.Layer()
	for {
		e, err := rw.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			if f.edit.Entry(state, e) {
				err = rw.Keep()
			} else {
				err = rw.Drop()
			}
		}
		if err != nil {
			orig.discard()
			rewritten.discard()
			return el, false, fmt.Errorf("%s: %s: %w", f.name, el, err)
		}
	}
	if err := rw.Close(); err != nil {
		orig.discard()
		rewritten.discard()
		return el, false, fmt.Errorf("%s: %s: %w", f.name, el, err)
	}
	// Read to the end so that the old diff ID (and digest) are checked.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		orig.discard()
		rewritten.discard()
		return el, false, fmt.Errorf("%s: %s: %w", f.name, el, err)
	}
	if !rw.Changed() {
		out := el
		out.Source = nil
		if compressed {
			rewritten.discard()
			out.Body = orig.reader()
		} else {
			orig.discard()
			out.Body, out.Source = rewritten.reader(), rewritten.source()
		}
		return out, false, nil
	}
	orig.discard()
	d := h.Digest()
	f.log.Debug().Str("layer", el.Name).Str("new", d.Encoded()).Msg("layer rewritten")
	out := el
	out.Name = d.Encoded()
	out.MediaType = elements.LayerMediaType(elements.None)
	out.Digest, out.DiffID = d, d
	out.Size = rewritten.Size()
	out.Body, out.Source = rewritten.reader(), rewritten.source()
	return out, true, nil
}

// teeCloser closes the original body of a tee.
type teeCloser struct {
	io.Reader
	io.Closer
}

// ctxReader stops reading when ctx is done.
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

// tempFile is a layer written once, hashed on the way, and then read: a
// spool.File (unlinked, freed when the last reader closes).
type tempFile struct{ *spool.File }

func newTempFile(dir string) (*tempFile, error) {
	f, err := spool.NewFile(dir)
	if err != nil {
		return nil, err
	}
	return &tempFile{f}, nil
}

// reader returns the file's content as a body; closing it frees the file.
// Its bytes were hashed as they were written, so it is Settled.
func (t *tempFile) reader() io.ReadCloser {
	r := settledBody{t.Open()}
	t.Release() // the reader holds the file now
	return r
}

// settledBody is a temporary file's content, hashed when it was written.
type settledBody struct{ *spool.FileReader }

// Settled reports that the bytes need no verifying read (see
// elements.Settled).
func (settledBody) Settled() bool { return true }

// source returns the file's content as a FileRange, for kernel copies.
func (t *tempFile) source() *elements.FileRange {
	return &elements.FileRange{File: t.OSFile(), Offset: 0, Length: t.Size()}
}

func (t *tempFile) discard() {
	if t != nil {
		t.Release()
	}
}
