// Package search is the search filter (spec 4.3) and what the search
// command runs: it lists the members of every layer as the layer streams
// past and reports those whose path matches a glob or a regular
// expression. Elements pass through unchanged; each layer's body is teed
// into a goroutine that decompresses it and reads its tar headers, so
// memory stays constant whatever the layer's size.
package search

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarstream"
	"github.com/occystrap/occystrap/uri"
	"github.com/rs/zerolog"
)

// Options are the search filter's options (spec 4.3).
type Options struct {
	Pattern        string // glob, or regular expression when Regex
	Regex          bool   // Pattern is a Go (RE2) regular expression, searched unanchored
	ScriptFriendly bool   // print IMAGE:TAG:LAYER:PATH lines
}

// Match is one layer member whose path matched.
type Match struct {
	Layer    string `json:"layer"`
	Path     string `json:"path"`
	Type     string `json:"type"` // file, directory, symlink, hardlink, fifo, character device, block device or unknown
	Size     int64  `json:"size"`
	Mode     int64  `json:"mode"`
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	MTime    int64  `json:"mtime"` // Unix seconds
	Linkname string `json:"linkname"`
}

// Filter is the search filter. It is used for one pipeline run.
type Filter struct {
	opts   Options
	match  func(string) bool
	stdout io.Writer
	json   bool
	log    zerolog.Logger

	image  string
	layers []*layer // in arrival order

	mu    sync.Mutex
	fatal error // a layer that could not be read to its end
}

// layer is the search of one layer, filled by its scanner goroutine.
type layer struct {
	name    string
	matches []Match
	done    chan struct{} // closed when the scanner has returned
}

// New returns the filter. An invalid pattern is an error wrapping
// uri.ErrInvalidValue. Results are printed to env.Stdout, as JSON when
// env.OutputFormat is "json".
func New(opts Options, env stages.Env) (*Filter, error) {
	if opts.Pattern == "" {
		return nil, fmt.Errorf("search filter requires pattern option: %w", uri.ErrMissingOption)
	}
	var match func(string) bool
	if opts.Regex {
		re, err := regexp.Compile(opts.Pattern)
		if err != nil {
			return nil, fmt.Errorf("invalid regular expression %q: %v: %w", opts.Pattern, strings.TrimPrefix(err.Error(), "error parsing regexp: "), uri.ErrInvalidValue)
		}
		match = re.MatchString
	} else {
		m, err := tarstream.CompileFnmatch(opts.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, uri.ErrInvalidValue)
		}
		match = m.Match // the full path or its base name
	}
	out := env.Stdout
	if out == nil {
		out = io.Discard
	}
	return &Filter{opts: opts, match: match, stdout: out, json: env.OutputFormat == "json", log: env.Log}, nil
}

// FromSpec returns the filter for a parsed filter spec
// (search:pattern=P[,regex=true][,script_friendly=true]).
func FromSpec(f uri.Filter, env stages.Env) (*Filter, error) {
	var opts Options
	var err error
	opts.Pattern = f.Options.String("pattern", "")
	if opts.Regex, err = f.Options.Bool("regex", false); err != nil {
		return nil, err
	}
	if opts.ScriptFriendly, err = f.Options.Bool("script_friendly", false); err != nil {
		return nil, err
	}
	return New(opts, env)
}

// Matches reports whether a member path matches: in glob mode the path or
// its base name (what follows the last "/"), in regex mode anywhere in the
// path.
func (f *Filter) Matches(path string) bool { return f.match(path) }

// Run passes every element on unchanged, searching each layer's tar as
// its body is read downstream. When in closes it waits until every layer
// has been read (or closed) downstream, then prints the results.
func (f *Filter) Run(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element) error {
	f.image, f.layers, f.fatal = "", nil, nil
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
			f.image = el.Name
		case elements.KindLayer:
			if el.Body != nil {
				el.Body = f.watch(ctx, el)
			}
		}
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	// A failed upstream cancels the pipeline before closing its channel.
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	for _, l := range f.layers {
		select {
		case <-l.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	f.mu.Lock()
	fatal := f.fatal
	f.mu.Unlock()
	if fatal != nil {
		return fatal
	}
	return f.print()
}

// Results returns the matches of the last run, in layer arrival order and
// member order within a layer. Valid after Run returned nil.
func (f *Filter) Results() []Match {
	var ms []Match
	for _, l := range f.layers {
		ms = append(ms, l.matches...)
	}
	return ms
}

// ImageTag splits an image reference into the image and its tag: the tag
// follows the last ":" after the last "/", "latest" when there is none; a
// digest ("@sha256:...") stands in for a missing tag. An empty reference
// gives two empty strings.
func ImageTag(ref string) (image, tag string) {
	if ref == "" {
		return "", ""
	}
	name, dgst, hasDigest := strings.Cut(ref, "@")
	image, tag = name, ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		image, tag = name[:i], name[i+1:]
	}
	if tag == "" {
		tag = "latest"
		if hasDigest {
			tag = dgst
		}
	}
	return image, tag
}

func (f *Filter) print() error {
	image, tag := ImageTag(f.image)
	ms := f.Results()
	if f.json {
		doc := struct {
			Image   string  `json:"image"`
			Matches []Match `json:"matches"`
		}{image + ":" + tag, ms}
		if doc.Matches == nil {
			doc.Matches = []Match{}
		}
		if f.image == "" {
			doc.Image = ""
		}
		enc := json.NewEncoder(f.stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	var b strings.Builder
	switch {
	case len(ms) == 0:
		if !f.opts.ScriptFriendly {
			b.WriteString("No matches found.\n")
		}
	case f.opts.ScriptFriendly:
		for _, m := range ms {
			fmt.Fprintf(&b, "%s:%s:%s:%s\n", image, tag, m.Layer, m.Path)
		}
	default:
		// Layers by name in first-seen order, as the original grouped
		// them (a layer used twice shows once, with both sets of matches).
		var order []string
		byLayer := map[string][]Match{}
		for _, m := range ms {
			if _, seen := byLayer[m.Layer]; !seen {
				order = append(order, m.Layer)
			}
			byLayer[m.Layer] = append(byLayer[m.Layer], m)
		}
		for _, name := range order {
			fmt.Fprintf(&b, "Layer: %s\n", name)
			for _, m := range byLayer[name] {
				switch m.Type {
				case "symlink", "hardlink":
					fmt.Fprintf(&b, "  %s -> %s (%s)\n", m.Path, m.Linkname, m.Type)
				case "file":
					fmt.Fprintf(&b, "  %s (file, %d bytes)\n", m.Path, m.Size)
				default:
					fmt.Fprintf(&b, "  %s (%s)\n", m.Path, m.Type)
				}
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Found %d match%s in %d layer%s.\n", len(ms), plural(len(ms), "es"), len(order), plural(len(order), "s"))
	}
	_, err := io.WriteString(f.stdout, b.String())
	return err
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}

// errAborted ends a scan whose body was closed without being read to
// its end: when the pipeline is being cancelled, or during a Read in
// another goroutine.
var errAborted = errors.New("search aborted")

// watch returns el's body teed into a new scanner goroutine.
func (f *Filter) watch(ctx context.Context, el elements.Element) io.ReadCloser {
	pr, pw := io.Pipe()
	l := &layer{name: el.Name, done: make(chan struct{})}
	f.layers = append(f.layers, l)
	t := &tee{ctx: ctx, src: el.Body, pw: pw, teeing: true, done: l.done}
	scan := el
	scan.Body = pr
	f.log.Info().Str("layer", el.Name).Msg("Searching layer")
	go func() {
		defer close(l.done)
		err := f.scan(l, scan)
		pr.Close() // the tee stops writing
		up := t.upstreamErr()
		switch {
		case up != nil && errors.Is(up, errAborted):
			// Cancelled, or closed during a Read in another goroutine:
			// the layer was not searched whole. Run reports it unless
			// the pipeline is failing anyway.
			f.setFatal(fmt.Errorf("search %s: its body was closed while being read", el))
		case up != nil:
			f.setFatal(fmt.Errorf("search %s: %w", el, up))
		case err == nil:
		case errors.Is(err, elements.ErrDigestMismatch):
			f.setFatal(err)
		default:
			f.log.Error().Str("layer", el.Name).Err(err).Msgf("Failed to read layer %s: %v", el.Name, err)
		}
	}()
	return t
}

func (f *Filter) setFatal(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fatal == nil {
		f.fatal = err
	}
}

// scan reads the layer's tar headers, recording matches, then reads the
// rest of the stream so that its diff ID is checked.
func (f *Filter) scan(l *layer, el elements.Element) error {
	rc, err := elements.OpenTar(el)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // not a member (Python's tarfile applies it silently)
		}
		name := hdr.Name
		if hdr.Typeflag == tar.TypeDir {
			// Python's tarfile strips a directory's trailing slashes
			// ("./" becomes "."), and the original matched and printed
			// the names it gave.
			name = strings.TrimRight(name, "/")
		}
		if f.Matches(name) {
			l.matches = append(l.matches, Match{
				Layer: l.name, Path: name, Type: typeName(hdr.Typeflag),
				Size: hdr.Size, Mode: hdr.Mode, UID: hdr.Uid, GID: hdr.Gid,
				MTime: hdr.ModTime.Unix(), Linkname: hdr.Linkname,
			})
		}
	}
	_, err = io.Copy(io.Discard, rc)
	return err
}

// typeName names a member's type as the original did.
func typeName(t byte) string {
	switch t {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		return "file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	}
	return "unknown"
}

// tee is the body passed downstream: what is read from src is also
// written to the scanner's pipe. Closing it before the end reads the
// rest through, so that the scanner sees the whole layer, unless the
// pipeline is being cancelled.
type tee struct {
	ctx  context.Context
	src  io.ReadCloser
	pw   *io.PipeWriter
	done chan struct{} // the scanner returned

	rmu    sync.Mutex // held while reading src
	teeing bool       // false once the scanner stopped reading; under rmu

	mu       sync.Mutex
	finished bool  // pw closed
	upstream error // why src failed, if it did

	closeOnce sync.Once
	closeErr  error
}

func (t *tee) Read(p []byte) (int, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	return t.read(p)
}

func (t *tee) read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 && t.teeing {
		if _, werr := t.pw.Write(p[:n]); werr != nil {
			t.teeing = false
		}
	}
	if err != nil {
		if err == io.EOF {
			t.finish(nil)
		} else {
			t.finish(err)
		}
	}
	return n, err
}

// finish closes the pipe: at the end of src (err nil) or because of err.
func (t *tee) finish(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	t.finished = true
	t.upstream = err
	if err != nil {
		t.pw.CloseWithError(err)
	} else {
		t.pw.Close()
	}
}

func (t *tee) isFinished() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished
}

func (t *tee) upstreamErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.upstream
}

// Close reads what is left of src through the scanner (unless it has
// stopped, the pipeline is being cancelled, or a Read is under way in
// another goroutine, which Close is then meant to interrupt), closes src
// and waits for the scanner to return.
func (t *tee) Close() error {
	t.closeOnce.Do(func() {
		if t.rmu.TryLock() {
			buf := make([]byte, 32<<10)
			for t.teeing && !t.isFinished() && t.ctx.Err() == nil {
				t.read(buf)
			}
			stopped := !t.teeing
			t.rmu.Unlock()
			if stopped {
				t.finish(nil) // the scanner stopped already and reports why
			}
		}
		t.finish(errAborted) // unless finished: cancelled, the scanner stops quietly
		t.closeErr = t.src.Close()
		<-t.done
	})
	return t.closeErr
}
