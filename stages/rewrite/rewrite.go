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
//
// When the next stage takes late layers (a tarball output, which patches
// each member's header once the member is written), the temporary file is
// skipped: each layer is rewritten into a pipe while the output reads it,
// and named by the digest the output's reads compute.
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
	"github.com/occystrap/occystrap/engine/pipe"
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
	late     bool
	log      zerolog.Logger
}

// New returns a filter named name (for logs) running edit. With
// env.LateLayers it hands layers on as they are rewritten, named at their
// end (see elements.Element.Late); otherwise each layer is rewritten into
// a temporary file first, to learn its new digest.
func New(name string, edit Editor, env stages.Env) *Filter {
	return &Filter{name: name, edit: edit, parallel: max(env.Parallel, 1), tempDir: env.TempDir, late: env.LateLayers, log: env.Log}
}

// Run rewrites the layers from in and sends them, then the config, on out.
func (f *Filter) Run(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element) error {
	busy := semaphore.NewWeighted(int64(f.parallel))
	var (
		mu        sync.Mutex
		newDiffs  = map[int]digest.Digest{}
		config    *elements.Element
		configRaw []byte
		late      sync.WaitGroup // late layers not yet read to their end
		lateErr   error
	)
	lateDone := func(i int, d digest.Digest, err error) {
		mu.Lock()
		if err != nil && lateErr == nil {
			lateErr = err
		} else if err == nil {
			newDiffs[i] = d
		}
		mu.Unlock()
		late.Done()
	}
	runCtx := ctx // late rewrites outlive the callback's context
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
		if f.late {
			late.Add(1)
			return f.lateLayer(runCtx, el, lateDone), true, nil
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
	// Late layers are rewritten as the next stage reads them: their diff
	// IDs are known once it has read them all.
	waited := make(chan struct{})
	go func() { late.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if lateErr != nil {
		return lateErr
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

// fixConfig puts the new diff IDs (those that differ) and whatever else
// the editor asks for in the config, and names it after its new digest.
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
	ids := cfg.RootFS.DiffIDs
	changed := 0
	for i, d := range newDiffs {
		if i < 0 || i >= len(ids) {
			return el, fmt.Errorf("%s: layer %d has no diff ID in the config (it lists %d)", f.name, i, len(ids))
		}
		if ids[i] != d {
			ids[i] = d
			changed++
		}
	}
	if changed > 0 {
		text, _ := json.Marshal(ids)
		splices = append(splices, splice{path: []string{"rootfs", "diff_ids"}, text: text})
		f.log.Info().Msgf("Updating config diff_ids (%d of %d layers modified)", changed, len(ids))
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

// rewrite runs the editor over one layer's tar stream, writing the result
// to w, and then reads the stream to its end so that its old digests are
// checked. It reports whether the content changed.
func (f *Filter) rewrite(ctx context.Context, el elements.Element, tarStream io.Reader, w io.Writer) (bool, error) {
	rw := tarstream.NewRewriter(ctxReader{ctx, tarStream}, w)
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
			return false, fmt.Errorf("%s: %s: %w", f.name, el, err)
		}
	}
	if err := rw.Close(); err != nil {
		return false, fmt.Errorf("%s: %s: %w", f.name, el, err)
	}
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return false, fmt.Errorf("%s: %s: %w", f.name, el, err)
	}
	return rw.Changed(), nil
}

// layer rewrites one layer into a temporary file. It returns the element
// to pass on and whether the layer's content changed.
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
	changed, err := f.rewrite(ctx, el, tarStream, io.MultiWriter(rewritten, h.Hash()))
	if err != nil {
		orig.discard()
		rewritten.discard()
		return el, false, err
	}
	if !changed {
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

// lateLayer returns the late element (see elements.Element.Late) that
// rewrites el as it is read: the first Read starts the rewrite in a
// goroutine, writing into a pipe, and the new digest is computed on the
// reader's side, so that the rewrite (with the check of the old digest)
// and the new hash run on two cores. Nothing runs before the next stage
// reads, and it reads layers one at a time, in order. done is called
// once, when the body is read to its end (with the new digest) or closed
// before it (with an error).
func (f *Filter) lateLayer(ctx context.Context, el elements.Element, done func(int, digest.Digest, error)) elements.Element {
	body := &lateBody{src: el, h: digest.SHA256.Digester()}
	body.start = func() io.Reader {
		// A buffered pipe, so that the rewrite and the reader (hashing
		// and writing) overlap rather than take turns.
		pr, pw := pipe.New(pipeChunk, pipeDepth)
		tarStream, err := elements.OpenTar(el) // verifies the old diff ID at the end
		if err != nil {
			pw.CloseWithError(err)
			return pr
		}
		go func() {
			defer tarStream.Close()
			_, err := f.rewrite(ctx, el, tarStream, pw)
			pw.CloseWithError(err) // nil: the reader sees io.EOF
		}()
		return pr
	}
	body.done = func(d digest.Digest, err error) {
		if err == nil {
			f.log.Debug().Str("layer", el.Name).Str("new", d.Encoded()).Msg("layer rewritten")
		}
		done(el.Index, d, err)
	}
	out := el
	out.Body, out.Source, out.Late = body, nil, body.final
	out.MediaType = elements.LayerMediaType(elements.None)
	out.Digest, out.DiffID, out.Size = "", "", -1
	return out
}

// The late rewrite's pipe: 1 MiB in flight per layer being read.
const (
	pipeChunk = 256 << 10
	pipeDepth = 4
)

// lateBody is a late layer's body: the read end of the rewrite's pipe,
// hashed as it is read.
type lateBody struct {
	src   elements.Element // the layer as it came, until the first Read
	start func() io.Reader // starts the rewrite, returns its pipe
	pr    io.Reader        // the pipe, once started
	h     digest.Digester
	n     int64
	done  func(digest.Digest, error)
	end   *elements.Final // set at io.EOF
}

func (b *lateBody) Read(p []byte) (int, error) {
	if b.pr == nil {
		if b.done == nil {
			return 0, io.ErrClosedPipe
		}
		b.pr = b.start()
		b.src.Body = nil // the rewrite owns it now
	}
	n, err := b.pr.Read(p)
	b.h.Hash().Write(p[:n])
	b.n += int64(n)
	if err == io.EOF && b.end == nil {
		d := b.h.Digest()
		b.end = &elements.Final{Name: d.Encoded(), Digest: d, Size: b.n}
		b.done(d, nil)
		b.done = nil
	}
	return n, err
}

// Close stops the rewrite if it is still running.
func (b *lateBody) Close() error {
	if c, ok := b.pr.(io.Closer); ok {
		c.Close()
	}
	b.src.Close()
	if b.done != nil {
		b.done("", fmt.Errorf("%s was closed before the end of its rewritten stream", b.src))
		b.done = nil
	}
	return nil
}

func (b *lateBody) final() (elements.Final, error) {
	if b.end == nil {
		return elements.Final{}, fmt.Errorf("%s: its name is not known before its end", b.src)
	}
	return *b.end, nil
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
