package check

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// maxConfigSize bounds the config read into memory.
const maxConfigSize = 64 << 20

// maxDuplicates is how many duplicate-file results are listed before a
// summary line (as the original did).
const maxDuplicates = 10

// Output is the full check: an output that reads every element once as it
// streams in, several layers at a time, and adds its findings to a
// Report. Findings about layers are added in image order once every layer
// has been read, so the report does not depend on timing.
type Output struct {
	report   *Report
	parsed   *Parsed
	meta     Meta
	parallel int
	log      zerolog.Logger
	progress stages.Progress
}

// NewOutput returns the full-check output for an image whose metadata
// checks gave parsed (nil if they could not run).
func NewOutput(r *Report, m Meta, parsed *Parsed, env stages.Env) *Output {
	if parsed == nil {
		parsed = &Parsed{}
	}
	p := env.ProgressOrNone()
	return &Output{report: r, parsed: parsed, meta: m, parallel: max(env.Parallel, 1), log: env.Log, progress: p}
}

// layerResult is what scanning one layer found.
type layerResult struct {
	index    int
	findings []Result
	events   []event // the entries that matter across layers, in order
	zstd     bool
	fatal    error // the input failed: not a finding
}

func (lr *layerResult) add(sev, check, format string, args ...any) {
	i := lr.index
	lr.findings = append(lr.findings, Result{Severity: sev, Check: check, Message: fmt.Sprintf(format, args...), Layer: &i})
}

// event is an entry of a layer as the cross-layer checks see it.
type event struct {
	path string // cleaned
	kind byte   // 'r' regular file, 's' symlink, 'd' directory, 'w' whiteout target, 'o' other
}

// Run consumes the elements, checking the config and every layer.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) error {
	var (
		wg      sync.WaitGroup
		results []*layerResult
		sem     = make(chan struct{}, o.parallel)
	)
	defer wg.Wait()
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
			if o.report.Reference == "" {
				o.report.Reference = el.Name
			}
			el.Close()
		case elements.KindConfig:
			err := o.config(el)
			el.Close()
			if err != nil {
				return err
			}
		case elements.KindLayer:
			lr := &layerResult{index: el.Index}
			results = append(results, lr)
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				el.Close()
				return context.Cause(ctx)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				o.scan(ctx, el, lr)
			}()
		default:
			el.Close()
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	for _, lr := range results {
		if lr.fatal != nil {
			return lr.fatal
		}
	}
	o.merge(results)
	return nil
}

// config checks the config element against the manifest's descriptor.
func (o *Output) config(el elements.Element) error {
	if el.Body == nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(el.Body, maxConfigSize))
	var de *elements.DigestError
	if err != nil && !errors.As(err, &de) {
		return fmt.Errorf("read %s: %w", el, err)
	}
	man := o.parsed.Manifest
	if !o.parsed.HasManifest || man.Config == nil || man.Config.Digest == "" {
		return nil
	}
	got := digest.FromBytes(b)
	if got != man.Config.Digest {
		o.report.Add(Error, "config-digest", "Config digest mismatch: expected %s, got %s", man.Config.Digest, got)
	} else {
		o.report.Add(Info, "config-digest", "Config digest verified: %s", got)
	}
	if int64(len(b)) != man.Config.Size {
		o.report.Add(Error, "config-size", "Config size mismatch: expected %d, got %d", man.Config.Size, len(b))
	} else {
		o.report.Add(Info, "config-size", "Config size verified: %d bytes", len(b))
	}
	return nil
}

// catch reads a body, turning the input's digest verification failure
// into the end of the stream so that the rest of the checks still run.
type catch struct {
	r      io.Reader
	digest *elements.DigestError
	err    error // any other read error
}

func (c *catch) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.As(err, &c.digest) {
			return n, io.EOF
		}
		c.err = err
	}
	return n, err
}

// scan reads one layer to its end.
func (o *Output) scan(ctx context.Context, el elements.Element, lr *layerResult) {
	defer el.Close()
	i := el.Index
	t := o.progress.Track(fmt.Sprintf("Checking layer %d", i), el.Size)
	c := &catch{r: stages.TrackReader(el.Body, t)}
	defer func() { t.Done(lr.fatal) }()
	br := bufio.NewReaderSize(c, 256<<10)
	head, _ := br.Peek(elements.SniffLen)
	fatal := func() bool {
		if c.err != nil {
			if ctx.Err() != nil {
				lr.fatal = context.Cause(ctx)
			} else {
				lr.fatal = fmt.Errorf("read %s: %w", el, c.err)
			}
			return true
		}
		return false
	}
	if fatal() {
		return
	}
	actual := elements.Detect(head)
	declared := elements.CompressionOf(el.MediaType)
	if actual == elements.Zstd {
		lr.zstd = true
	}
	if actual == elements.Unknown {
		lr.add(Error, "tar-format", "Layer %d is not a valid tar: not a tar, gzip or zstd stream (first bytes % x)", i, head[:min(len(head), 8)])
		io.Copy(io.Discard, br)
		fatal()
		o.digestResult(el, c, nil, lr)
		return
	}
	if declared != elements.Unknown && declared != actual && !o.parsed.Sniffed {
		lr.add(Error, "compression-mismatch", "Layer %d media type %s says %s but its content is %s", i, el.MediaType, declared, actual)
	}
	rc, err := elements.Decompress(br, actual, nil)
	if err != nil {
		lr.add(Error, "tar-format", "Layer %d is not a valid tar: %v", i, err)
		io.Copy(io.Discard, br)
		fatal()
		o.digestResult(el, c, nil, lr)
		return
	}
	closeRC := sync.OnceFunc(func() { rc.Close() })
	defer closeRC()
	// The input verifies an uncompressed body against its digest, which
	// is then the diff ID; otherwise the uncompressed stream is hashed here.
	var dg *elements.Digester
	var tarIn io.Reader = rc
	if el.DiffID != "" && !(actual == elements.None && el.Digest == el.DiffID) {
		dg = elements.NewDigester(rc)
		tarIn = dg
	}
	complete := o.entries(tarIn, lr)
	if _, err := io.Copy(io.Discard, tarIn); err != nil && complete {
		if fatal() {
			return
		}
		lr.add(Error, "tar-format", "Layer %d is not a valid tar: %v", i, err)
		complete = false
	}
	if fatal() {
		return
	}
	if !complete && dg != nil && actual != elements.None {
		// A decompression failure: the diff ID cannot be computed. Make
		// sure the raw bytes were read so that their digest is checked,
		// once the decompressor (and its read-ahead) is stopped.
		closeRC()
		io.Copy(io.Discard, br)
		if fatal() {
			return
		}
		dg = nil
		o.digestResult(el, c, nil, lr)
		return
	}
	o.digestResult(el, c, dg, lr)
}

// digestResult adds the layer's digest and diff ID findings.
func (o *Output) digestResult(el elements.Element, c *catch, dg *elements.Digester, lr *layerResult) {
	i := el.Index
	if c.digest != nil {
		// The bytes are not the ones named: that, not the tar or
		// decompression failure it may cause, is the finding.
		kept := lr.findings[:0]
		for _, f := range lr.findings {
			if f.Check != "tar-format" {
				kept = append(kept, f)
			}
		}
		lr.findings = kept
		if el.Digest == el.DiffID {
			lr.add(Error, "diff-id", "Layer %d diff_id mismatch: expected %s, got %s", i, cut(c.digest.Want.String()), cut(c.digest.Got.String()))
			return
		}
		lr.add(Error, "layer-digest", "Layer %d digest mismatch: expected %s, got %s", i, cut(c.digest.Want.String()), cut(c.digest.Got.String()))
	}
	switch {
	case el.DiffID == "":
	case dg != nil:
		if got := dg.Digest(); got != el.DiffID {
			lr.add(Error, "diff-id", "Layer %d diff_id mismatch: expected %s, got %s", i, cut(el.DiffID.String()), cut(got.String()))
		} else {
			lr.add(Info, "diff-id", "Layer %d diff_id verified", i)
		}
	case c.digest == nil && el.Digest == el.DiffID:
		lr.add(Info, "diff-id", "Layer %d diff_id verified", i)
	}
}

// entries reads the layer's tar headers and checks each entry. It returns
// false when the tar is not well formed.
func (o *Output) entries(r io.Reader, lr *layerResult) bool {
	i := lr.index
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	type whiteout struct{ name, target string }
	var whiteouts []whiteout
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			lr.add(Error, "tar-format", "Layer %d is not a valid tar: %v", i, err)
			return false
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := hdr.Name
		clean := cleanName(name)
		if strings.HasPrefix(name, "/") {
			lr.add(Error, "absolute-path", "Layer %d: %s is an absolute path", i, name)
		}
		if escapes(clean) {
			lr.add(Error, "path-traversal", "Layer %d: %s escapes the image root", i, name)
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			if !path.IsAbs(hdr.Linkname) && escapes(path.Join(path.Dir(clean), hdr.Linkname)) {
				lr.add(Error, "link-escape", "Layer %d: symlink %s -> %s points outside the image root", i, name, hdr.Linkname)
			}
		case tar.TypeLink:
			if escapes(cleanName(hdr.Linkname)) {
				lr.add(Error, "link-escape", "Layer %d: hardlink %s -> %s points outside the image root", i, name, hdr.Linkname)
			}
		}
		if base := path.Base(clean); strings.HasPrefix(base, ".wh.") {
			if base != ".wh..wh..opq" {
				target := strings.TrimPrefix(base, ".wh.")
				if target == "" {
					lr.add(Error, "whiteout", "Layer %d: empty whiteout target at %s", i, name)
				} else {
					t := path.Join(path.Dir(clean), target)
					whiteouts = append(whiteouts, whiteout{name, t})
					lr.events = append(lr.events, event{t, 'w'})
				}
			}
			continue
		}
		if hdr.ModTime.Unix() < 0 {
			lr.add(Error, "tar-timestamp", "Layer %d: negative timestamp on %s (mtime=%d)", i, name, hdr.ModTime.Unix())
		}
		if hdr.Mode&0o6000 != 0 && hdr.Mode&0o002 != 0 {
			lr.add(Warning, "tar-permissions", "Layer %d: %s has setuid/setgid with world-writable (mode=0o%o)", i, name, hdr.Mode&0o7777)
		}
		if seen[clean] {
			if hdr.Typeflag != tar.TypeDir {
				lr.add(Warning, "duplicate-entry", "Layer %d: %s appears more than once in the layer", i, name)
			}
		} else {
			seen[clean] = true
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			lr.events = append(lr.events, event{clean, 'r'})
		case tar.TypeSymlink:
			lr.events = append(lr.events, event{clean, 's'})
		case tar.TypeDir:
			// Directories matter only when they replace a symlink.
			lr.events = append(lr.events, event{clean, 'd'})
		default:
			lr.events = append(lr.events, event{clean, 'o'})
		}
	}
	for _, w := range whiteouts {
		if seen[w.target] {
			lr.add(Error, "whiteout-same-layer", "Layer %d: whiteout %s deletes %s, which the same layer adds (whiteouts apply only to lower layers)", i, w.name, w.target)
		}
	}
	return true
}

// cleanName is an entry name as a path inside the image: no leading "/"
// or "./", no trailing "/", cleaned (".." kept where it climbs).
func cleanName(name string) string {
	name = strings.TrimLeft(name, "/")
	c := path.Clean(name)
	if c == "." {
		return ""
	}
	return c
}

// escapes reports whether a cleaned relative path climbs above the root.
func escapes(p string) bool {
	p = path.Clean(p)
	return p == ".." || strings.HasPrefix(p, "../")
}

// merge adds the layers' findings in image order, then the cross-layer
// ones.
func (o *Output) merge(results []*layerResult) {
	zstd := 0
	for _, lr := range results {
		for _, f := range lr.findings {
			o.report.add(f)
		}
		if lr.zstd {
			zstd++
		}
	}
	// Sources without manifest or sniffed tarball layers (a Docker
	// Engine) learn of zstd layers only now.
	if zstd > 0 && !o.parsed.HasManifest && o.meta.TarLayers == nil {
		o.report.Add(Warning, "zstd-compat", "%d layer(s) use zstd compression; Docker Engine < 20.10 and containerd < 1.5 cannot pull this image", zstd)
	}
	// Entries written through a symlink (of this layer or a lower one):
	// extractors either follow it, possibly out of the root, or refuse.
	links := map[string]int{} // symlink path -> layer
	for _, lr := range results {
		warned := map[string]bool{}
		for _, ev := range lr.events {
			if len(links) > 0 {
				for k := 0; k < len(ev.path); k++ {
					if ev.path[k] != '/' {
						continue
					}
					dir := ev.path[:k]
					if j, ok := links[dir]; ok && !warned[dir] {
						warned[dir] = true
						o.report.AddLayer(lr.index, Warning, "symlink-parent", "Layer %d: %s is written through the symlink %s (from layer %d)", lr.index, ev.path, dir, j)
					}
				}
			}
			switch ev.kind {
			case 's':
				links[ev.path] = lr.index
			case 'w':
				delete(links, ev.path)
				if len(links) > 0 {
					for l := range links {
						if strings.HasPrefix(l, ev.path+"/") {
							delete(links, l)
						}
					}
				}
			default:
				delete(links, ev.path)
			}
		}
	}

	where := map[string][]int{}
	var order []string
	for _, lr := range results {
		for _, ev := range lr.events {
			if ev.kind != 'r' {
				continue
			}
			p := ev.path
			ls := where[p]
			if len(ls) > 0 && ls[len(ls)-1] == lr.index {
				continue
			}
			if ls == nil {
				order = append(order, p)
			}
			where[p] = append(ls, lr.index)
		}
	}
	n := 0
	for _, p := range order {
		ls := where[p]
		if len(ls) < 2 {
			continue
		}
		n++
		if n <= maxDuplicates {
			s := make([]string, len(ls))
			for k, l := range ls {
				s[k] = fmt.Sprint(l)
			}
			o.report.Add(Warning, "duplicate-file", "File %s appears in layers [%s]", pyRepr(p), strings.Join(s, ", "))
		}
	}
	if n > maxDuplicates {
		o.report.Add(Warning, "duplicate-file", "... and %d more duplicate files", n-maxDuplicates)
	}
}
