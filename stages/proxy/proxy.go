// Package proxy is `occystrap proxy`: a registry that clients push to (and,
// with an upstream, pull from), which sends every image through the
// configured filters to a downstream registry.
//
// Pushes: the proxy is a stages/regserver registry on the listen address,
// over plain HTTP. When a client puts an image manifest, the proxy runs a
// pipeline (the blobs the client uploaded, then the filters, then a
// registry output to DOWNSTREAM/NAME:REF) and answers only when it is done:
// 201 once the image is in the downstream registry, 500 if the pipeline
// failed. The answer carries the digest of the manifest the client sent,
// which is what the client checks; the downstream one differs when a filter
// changed something, and is logged. Index pushes (multi-platform images,
// whose per-platform manifests come first, by digest) are supported,
// unlike in the original tool: each entry is rewritten to the manifest the
// proxy pushed downstream for it.
//
// Pulls, with an upstream: a manifest the downstream registry has is served
// from it; one it lacks is first copied from UPSTREAM/NAME:REF through the
// filters to the downstream (once, however many clients ask at once), then
// served. Blobs are streamed from the downstream, verified on the way.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/registry"
	"github.com/occystrap/occystrap/stages/regserver"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// Options configure a Proxy.
type Options struct {
	// Listen is the HOST:PORT to serve on (plain HTTP).
	Listen string
	// Downstream is the registry images go to: HOST[:PORT], optionally
	// followed by a path prefix (ghcr.io/myorg) put before every
	// repository name.
	Downstream string
	// Upstream, when set, turns on pull-through: HOST[:PORT] of the
	// registry images missing downstream are copied from.
	Upstream string
	// UpstreamUsername and UpstreamPassword are the upstream's
	// credentials (else ~/.docker/config.json, else anonymous).
	UpstreamUsername, UpstreamPassword string
	// Concurrency is how many images are processed at once (default 4).
	Concurrency int
	// NewFilters builds the filter chain for one image; it is called
	// afresh for each. Nil means no filters.
	NewFilters func() ([]stages.Filter, []string, error)
	// Env holds the settings shared with process: log, temp dir, layer
	// parallelism, compression, retries, --insecure, the downstream's
	// credentials (Username, Password) and the platform pull-through
	// picks from a multi-platform upstream image.
	Env stages.Env
	// Cache, when set, is the layer cache every push shares.
	Cache *registry.LayerCache
}

// Stats counts what a proxy did.
type Stats struct {
	Pushed, Failed       int64 // images pushed through, and pushes that failed
	Pulled, Hits, Misses int64 // pull-through: images copied, manifests found downstream, and not
}

// Proxy is a running proxy.
type Proxy struct {
	opts     Options
	log      zerolog.Logger
	srv      *regserver.Server
	ready    chan struct{} // closed once srv is set; handlers wait for it
	downHost string        // host[:port]
	prefix   string        // path prefix, "" or "org/team"
	upHost   string        // pull-through upstream host[:port], "" for none
	upPrefix string        // and its path prefix
	sem      chan struct{}

	// ctx lives as long as the proxy: pull-through copies run under it
	// (not under the request that started them, whose client may leave
	// while others wait for the copy). Shutdown cancels it.
	ctx     context.Context
	cancel  context.CancelFunc
	reading sync.WaitGroup // pull-through handlers running

	mu      sync.Mutex
	sent    map[sentKey]ocispec.Descriptor // manifest received -> manifest pushed downstream
	pulls   map[string]*pullLock           // name:ref -> the lock of its pull-through copy
	copied  map[string]digest.Digest       // name:ref -> the upstream manifest it was copied from
	clients map[string]*registry.Client    // "down/" or "up/" + repository -> client

	pushed, failed, pulled, hits, misses atomic.Int64
}

// sentKey names a manifest received: its repository and digest.
type sentKey struct {
	repo string
	d    digest.Digest
}

// maxConfig bounds an image config read into memory.
const maxConfig = 16 << 20

// maxEntries bounds the proxy's per-name maps (clients, copies
// remembered); past it they start afresh.
const maxEntries = 4096

// pullLock serialises the pull-through copies of one name:ref; users
// counts the handlers holding or waiting for it, so that it can be
// dropped when none is left.
type pullLock struct {
	ch    chan struct{}
	users int
}

// Start checks the options, listens and serves in the background until
// Shutdown.
func Start(opts Options) (*Proxy, error) {
	host, prefix, err := SplitRegistry(opts.Downstream)
	if err != nil {
		return nil, fmt.Errorf("--downstream: %w", err)
	}
	if opts.Upstream != "" {
		if _, _, err := SplitRegistry(opts.Upstream); err != nil {
			return nil, fmt.Errorf("--upstream: %w", err)
		}
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 4
	}
	if opts.NewFilters == nil {
		opts.NewFilters = func() ([]stages.Filter, []string, error) { return nil, nil, nil }
	}
	p := &Proxy{
		opts: opts, log: opts.Env.Log, downHost: host, prefix: prefix,
		sem:  make(chan struct{}, opts.Concurrency),
		sent: map[sentKey]ocispec.Descriptor{}, pulls: map[string]*pullLock{},
		copied: map[string]digest.Digest{}, clients: map[string]*registry.Client{},
		ready: make(chan struct{}),
	}
	if opts.Upstream != "" {
		p.upHost, p.upPrefix, _ = SplitRegistry(opts.Upstream)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	srvOpts := regserver.Options{
		Addr: opts.Listen, TempDir: opts.Env.TempDir, Log: opts.Env.Log,
		// Pushes wait for their images; clients keep connections open
		// between requests for a few minutes, as the original allowed.
		IdleTimeout: 300 * time.Second,
		Hooks:       regserver.Hooks{ManifestReceived: p.manifestReceived},
	}
	if opts.Upstream != "" {
		srvOpts.Middleware = p.pullThrough
	}
	if p.srv, err = regserver.Start(srvOpts); err != nil {
		p.cancel()
		return nil, err
	}
	close(p.ready) // the server may have taken requests already
	return p, nil
}

// SplitRegistry splits HOST[:PORT][/PREFIX] into the host and the path
// prefix, refusing a URL scheme, user info or an empty host.
func SplitRegistry(s string) (host, prefix string, err error) {
	if strings.Contains(s, "://") {
		return "", "", fmt.Errorf("%q: give HOST[:PORT][/PREFIX] without a scheme (use --insecure for plain HTTP)", s)
	}
	host, prefix, _ = strings.Cut(strings.Trim(s, "/"), "/")
	if host == "" || strings.ContainsAny(host, "@ ") {
		return "", "", fmt.Errorf("%q is not a registry HOST[:PORT]", s)
	}
	return host, prefix, nil
}

// Addr returns the HOST:PORT the proxy listens on.
func (p *Proxy) Addr() string { return p.srv.Addr() }

// Stats returns what the proxy did so far.
func (p *Proxy) Stats() Stats {
	return Stats{Pushed: p.pushed.Load(), Failed: p.failed.Load(), Pulled: p.pulled.Load(),
		Hits: p.hits.Load(), Misses: p.misses.Load()}
}

// Shutdown stops accepting connections, lets images being processed
// finish until ctx is done, then cuts what is left and deletes every blob
// and unfinished upload.
func (p *Proxy) Shutdown(ctx context.Context) error {
	err := p.srv.Shutdown(ctx)
	p.cancel() // pull-through copies still running past the deadline
	p.reading.Wait()
	if p.opts.Cache != nil {
		if serr := p.opts.Cache.Save(); serr != nil {
			p.log.Warn().Err(serr).Msg("the layer cache could not be saved")
		}
	}
	return err
}

// repo is the downstream repository for a name pushed or pulled.
func (p *Proxy) repo(name string) string {
	if p.prefix == "" {
		return name
	}
	return p.prefix + "/" + name
}

// clientOptions are the downstream's connection settings.
func (p *Proxy) clientOptions() registry.Options {
	env := p.opts.Env
	return registry.Options{Log: env.Log, Username: env.Username, Password: env.Password,
		Insecure: env.Insecure, Retries: env.Retries, Conns: max(env.Parallel, 1), Limiter: env.Limiter}
}

// downstream returns the client for the downstream repository of name.
// Clients are kept (each has its connections and tokens), one per
// repository.
func (p *Proxy) downstream(name string) *registry.Client {
	return p.client("down/"+p.repo(name), uri.Reference{Registry: p.downHost, Repository: p.repo(name)}, p.clientOptions())
}

// upstream returns the client for the upstream repository of name.
func (p *Proxy) upstream(name string) *registry.Client {
	return p.client("up/"+p.upRepo(name), uri.Reference{Registry: p.upHost, Repository: p.upRepo(name)}, p.upstreamOptions())
}

// upRepo is the upstream repository for a name pulled.
func (p *Proxy) upRepo(name string) string {
	if p.upPrefix == "" {
		return name
	}
	return p.upPrefix + "/" + name
}

// upstreamOptions are the upstream's connection settings.
func (p *Proxy) upstreamOptions() registry.Options {
	o := p.clientOptions()
	o.Username, o.Password = p.opts.UpstreamUsername, p.opts.UpstreamPassword
	return o
}

func (p *Proxy) client(key string, ref uri.Reference, opts registry.Options) *registry.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[key]; ok {
		return c
	}
	if len(p.clients) >= maxEntries {
		p.clients = map[string]*registry.Client{}
	}
	c, _ := registry.NewFromReference(ref, []string{"pull", "push"}, opts)
	p.clients[key] = c
	return c
}

// acquire waits for one of the --concurrency processing slots.
func (p *Proxy) acquire(ctx context.Context) (release func(), err error) {
	select {
	case p.sem <- struct{}{}:
		return func() { <-p.sem }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// manifestReceived is the push path: it runs when a client puts a
// manifest, and the client's request waits for it.
func (p *Proxy) manifestReceived(ctx context.Context, m *regserver.Manifest) error {
	<-p.ready
	log := p.log.With().Str("image", m.Repo+":"+m.Reference).Logger()
	var err error
	if m.IsIndex() {
		err = p.pushIndex(ctx, m)
	} else {
		err = p.pushImage(ctx, m)
	}
	if err != nil {
		p.failed.Add(1)
		log.Error().Err(err).Msg("push through the proxy failed")
		var re *regserver.Error
		if errors.As(err, &re) {
			return err
		}
		return &regserver.Error{Status: http.StatusInternalServerError, Code: "UNKNOWN",
			Message: fmt.Sprintf("occystrap proxy: sending %s:%s to %s failed: %v", m.Repo, m.Reference, p.opts.Downstream, err)}
	}
	p.pushed.Add(1)
	return nil
}

// pushImage sends one image through the filters to the downstream.
func (p *Proxy) pushImage(ctx context.Context, m *regserver.Manifest) error {
	var man ocispec.Manifest
	if err := json.Unmarshal(m.Raw, &man); err != nil || man.Config.Digest == "" {
		return &regserver.Error{Status: http.StatusBadRequest, Code: "MANIFEST_INVALID", Message: "the manifest names no config"}
	}
	if man.Config.Size > maxConfig {
		return &regserver.Error{Status: http.StatusBadRequest, Code: "SIZE_INVALID",
			Message: fmt.Sprintf("the config is %d bytes; at most %d are accepted", man.Config.Size, maxConfig)}
	}
	blobs := make([]blobSource, 0, 1+len(man.Layers))
	for _, d := range append([]ocispec.Descriptor{man.Config}, man.Layers...) {
		src, err := p.blobSource(ctx, m.Repo, d)
		if err != nil {
			return err
		}
		blobs = append(blobs, src)
	}
	release, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	if !isImage(man) {
		return p.copyArtifact(ctx, m, man, blobs)
	}
	in := &pushedImage{name: p.Addr() + "/" + m.Repo + ":" + m.Reference, manifest: m, image: man, blobs: blobs}
	out, err := p.run(ctx, in, m.Repo, m.Reference)
	if err != nil {
		return err
	}
	p.remember(m, out)
	return nil
}

// remember notes what a manifest received became downstream.
func (p *Proxy) remember(m *regserver.Manifest, out ocispec.Descriptor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sent) >= maxEntries*4 {
		p.sent = map[sentKey]ocispec.Descriptor{}
	}
	p.sent[sentKey{m.Repo, m.Digest}] = out
}

// isImage reports whether a manifest is a container image (an image
// config and layer tars) rather than another artifact that uses the
// manifest format, such as buildx's attestations (in-toto layers) or a
// Helm chart.
func isImage(man ocispec.Manifest) bool {
	switch man.Config.MediaType {
	case ocispec.MediaTypeImageConfig, elements.MediaTypeDockerConfig:
	default:
		return false
	}
	for _, l := range man.Layers {
		if elements.CompressionOf(l.MediaType) == elements.Unknown {
			return false
		}
	}
	return true
}

// copyArtifact sends a manifest that is not a container image to the
// downstream as it is: its blobs (those the downstream lacks) and then the
// manifest itself, unfiltered.
func (p *Proxy) copyArtifact(ctx context.Context, m *regserver.Manifest, man ocispec.Manifest, blobs []blobSource) error {
	c := p.downstream(m.Repo)
	for i, d := range append([]ocispec.Descriptor{man.Config}, man.Layers...) {
		if ok, err := c.HasBlob(ctx, d.Digest); err != nil {
			return err
		} else if ok {
			continue
		}
		u, _, err := c.StartUpload(ctx, "", "")
		if err != nil {
			return err
		}
		body, err := blobs[i](ctx)
		if err != nil {
			u.Cancel()
			return err
		}
		err = u.Put(ctx, d.Digest, body, d.Size)
		body.Close()
		if err != nil {
			return err
		}
	}
	if err := c.PutManifest(ctx, m.Reference, m.MediaType, m.Raw); err != nil {
		return err
	}
	p.remember(m, ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Raw))})
	p.log.Info().Str("destination", p.downHost+"/"+p.repo(m.Repo)+":"+m.Reference).Str("config_media_type", man.Config.MediaType).
		Msg("not a container image: sent downstream unfiltered")
	return nil
}

// blobSource opens a blob a pushed manifest names.
type blobSource func(ctx context.Context) (io.ReadCloser, error)

// blobSource finds a blob a pushed manifest names: one the client
// uploaded, or, in pull-through mode (where a HEAD asks the downstream,
// so a client skips the blobs the downstream has), one the downstream
// repository has, read from it when needed.
func (p *Proxy) blobSource(ctx context.Context, name string, d ocispec.Descriptor) (blobSource, error) {
	if b, ok := p.srv.Blob(d.Digest); ok {
		if b.Size != d.Size {
			return nil, &regserver.Error{Status: http.StatusBadRequest, Code: "SIZE_INVALID",
				Message: fmt.Sprintf("the manifest gives blob %s %d bytes; %d were pushed", d.Digest, d.Size, b.Size)}
		}
		return func(context.Context) (io.ReadCloser, error) { return b.Open(), nil }, nil
	}
	if p.opts.Upstream != "" {
		down := p.downstream(name)
		if size, err := down.StatBlob(ctx, d.Digest); err == nil && size == d.Size {
			return func(ctx context.Context) (io.ReadCloser, error) { return down.OpenBlob(ctx, d) }, nil
		}
	}
	return nil, &regserver.Error{Status: http.StatusBadRequest, Code: "MANIFEST_BLOB_UNKNOWN",
		Message: fmt.Sprintf("blob %s was not pushed to this proxy", d.Digest)}
}

// run sends an image from in through a fresh filter chain to the
// downstream repository of name, under ref (a tag; a digest reference is
// pushed by the digest of what reaches the downstream), and returns the
// manifest pushed.
func (p *Proxy) run(ctx context.Context, in stages.Input, name, ref string) (ocispec.Descriptor, error) {
	dst := uri.Reference{Registry: p.downHost, Repository: p.repo(name), Tag: ref}
	if _, err := digest.Parse(ref); err == nil {
		dst.Tag = ""
	}
	env := p.opts.Env
	out, err := registry.NewOutput(dst, registry.OutputOptions{Compression: env.Compression, Parallel: env.Parallel, Cache: p.opts.Cache},
		p.clientOptions(), env)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	filters, names, err := p.opts.NewFilters()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	pl := &engine.Pipeline{Input: in, Filters: filters, FilterNames: names, Output: out,
		InputName: "input proxy", OutputName: "output registry"}
	start := time.Now()
	if err := pl.Run(ctx); err != nil {
		return ocispec.Descriptor{}, err
	}
	d := out.Manifest()
	p.log.Info().Str("destination", dst.String()).Str("digest", d.Digest.String()).
		Dur("took", time.Since(start).Round(time.Millisecond)).Msg("image sent downstream")
	return d, nil
}

// pushIndex pushes a multi-platform index whose images were pushed
// through the proxy just before, each entry rewritten to what the proxy
// pushed downstream for it.
func (p *Proxy) pushIndex(ctx context.Context, m *regserver.Manifest) error {
	var ix ocispec.Index
	if err := json.Unmarshal(m.Raw, &ix); err != nil {
		return &regserver.Error{Status: http.StatusBadRequest, Code: "MANIFEST_INVALID", Message: fmt.Sprintf("the index is not valid: %v", err)}
	}
	changed := false
	renamed := map[digest.Digest]digest.Digest{}
	for i, d := range ix.Manifests {
		p.mu.Lock()
		sent, ok := p.sent[sentKey{m.Repo, d.Digest}]
		p.mu.Unlock()
		if !ok {
			// In pull-through mode a client skips a manifest the
			// downstream has (a HEAD asks it): keep that entry.
			if p.upHost != "" {
				if got, err := p.downstream(m.Repo).ManifestDigest(ctx, d.Digest.String()); err == nil && got == d.Digest {
					continue
				}
			}
			return &regserver.Error{Status: http.StatusBadRequest, Code: "MANIFEST_BLOB_UNKNOWN",
				Message: fmt.Sprintf("the index lists manifest %s, which was not pushed through this proxy", d.Digest)}
		}
		if sent.Digest != d.Digest || sent.MediaType != d.MediaType {
			changed = true
			renamed[d.Digest] = sent.Digest
			ix.Manifests[i].Digest, ix.Manifests[i].Size, ix.Manifests[i].MediaType = sent.Digest, sent.Size, sent.MediaType
		}
	}
	// buildx's attestations name the image they describe.
	const refAnnotation = "vnd.docker.reference.digest"
	for i, d := range ix.Manifests {
		if old, err := digest.Parse(d.Annotations[refAnnotation]); err == nil {
			if nd, ok := renamed[old]; ok {
				ix.Manifests[i].Annotations = maps.Clone(d.Annotations)
				ix.Manifests[i].Annotations[refAnnotation] = nd.String()
				changed = true
			}
		}
	}
	raw := m.Raw
	if changed {
		var err error
		if raw, err = json.Marshal(ix); err != nil {
			return err
		}
	}
	ref := m.Reference
	if _, err := digest.Parse(ref); err == nil {
		ref = digest.FromBytes(raw).String()
	}
	c, _ := registry.NewFromReference(uri.Reference{Registry: p.downHost, Repository: p.repo(m.Repo)}, []string{"pull", "push"}, p.clientOptions())
	if err := c.PutManifest(ctx, ref, m.MediaType, raw); err != nil {
		return err
	}
	d := ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	p.remember(m, d)
	p.log.Info().Str("destination", p.downHost+"/"+p.repo(m.Repo)+":"+ref).Str("digest", d.Digest.String()).
		Int("images", len(ix.Manifests)).Msg("index sent downstream")
	return nil
}

// pushedImage is the input of the push path: the manifest, config and
// layers a client uploaded, as the registry input would send them.
type pushedImage struct {
	name     string
	manifest *regserver.Manifest
	image    ocispec.Manifest
	blobs    []blobSource // config, then the layers in order
}

// Run sends the image element (carrying the client's manifest, so that
// an image no filter changed keeps its digest downstream), the config and
// the layers, each layer's body read from the blob the client uploaded.
func (in *pushedImage) Run(ctx context.Context, out chan<- elements.Element) error {
	r, err := in.blobs[0](ctx)
	if err != nil {
		return fmt.Errorf("read the config: %w", err)
	}
	config, err := io.ReadAll(io.LimitReader(r, in.image.Config.Size+1))
	r.Close()
	if err != nil {
		return fmt.Errorf("read the config: %w", err)
	}
	if got := digest.FromBytes(config); got != in.image.Config.Digest {
		return &elements.DigestError{What: "config", Want: in.image.Config.Digest, Got: got}
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(config, &cfg); err != nil {
		return fmt.Errorf("image %s: the config is not valid: %w", in.name, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(in.image.Layers) {
		return fmt.Errorf("image %s is inconsistent: its manifest lists %d layers but its config %d diff IDs", in.name, len(in.image.Layers), len(cfg.RootFS.DiffIDs))
	}
	els := []elements.Element{
		{Kind: elements.KindImage, Name: in.name, Index: -1, MediaType: in.manifest.MediaType, Digest: in.manifest.Digest,
			Size: int64(len(in.manifest.Raw)), Body: io.NopCloser(bytes.NewReader(in.manifest.Raw))},
		{Kind: elements.KindConfig, Name: in.image.Config.Digest.Encoded() + ".json", Index: -1, MediaType: in.image.Config.MediaType,
			Digest: in.image.Config.Digest, Size: int64(len(config)), Body: io.NopCloser(bytes.NewReader(config))},
	}
	for i, l := range in.image.Layers {
		if err := cfg.RootFS.DiffIDs[i].Validate(); err != nil {
			return fmt.Errorf("image %s: config diff ID %d is invalid: %w", in.name, i, err)
		}
		els = append(els, elements.Element{Kind: elements.KindLayer, Name: l.Digest.Encoded(), Index: i,
			MediaType: l.MediaType, Digest: l.Digest, DiffID: cfg.RootFS.DiffIDs[i], Size: l.Size})
	}
	for i, el := range els {
		if el.Kind == elements.KindLayer {
			el.Body = &lazyBody{ctx: ctx, open: in.blobs[i-1]}
		}
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	return nil
}

// lazyBody opens its blob at the first Read, so that a layer the output
// never reads (the downstream has it) is never fetched.
type lazyBody struct {
	ctx  context.Context
	open blobSource
	rc   io.ReadCloser
	err  error
}

func (l *lazyBody) Read(b []byte) (int, error) {
	if l.rc == nil && l.err == nil {
		l.rc, l.err = l.open(l.ctx)
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.rc.Read(b)
}

func (l *lazyBody) Close() error {
	if l.rc == nil {
		l.err = errors.New("layer body closed")
		return nil
	}
	return l.rc.Close()
}

// pullThrough answers manifest and blob reads the local registry cannot
// (pull-through mode), and passes everything else on.
func (p *Proxy) pullThrough(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		name, kind, ref, ok := splitPath(r.URL.Path)
		if !ok || !regserver.ValidName(name) || !regserver.ValidReference(ref) {
			next.ServeHTTP(w, r)
			return
		}
		p.reading.Add(1)
		defer p.reading.Done()
		<-p.ready
		switch kind {
		case "manifests":
			if _, held := p.srv.Manifest(name, ref); held {
				next.ServeHTTP(w, r)
				return
			}
			p.serveManifest(w, r, name, ref)
		case "blobs":
			d, err := digest.Parse(ref)
			if _, held := p.srv.Blob(d); err != nil || held {
				next.ServeHTTP(w, r)
				return
			}
			p.serveBlob(w, r, name, d)
		}
	})
}

// splitPath splits /v2/NAME/manifests/REF and /v2/NAME/blobs/DIGEST.
func splitPath(path string) (name, kind, ref string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", "", "", false
	}
	i := strings.LastIndex(rest, "/")
	if i < 0 {
		return "", "", "", false
	}
	head, ref := rest[:i], rest[i+1:]
	j := strings.LastIndex(head, "/")
	if j <= 0 || ref == "" {
		return "", "", "", false
	}
	name, kind = head[:j], head[j+1:]
	if kind != "manifests" && kind != "blobs" {
		return "", "", "", false
	}
	return name, kind, ref, true
}

// serveManifest serves a manifest from the downstream registry, first
// copying the image from the upstream if the downstream lacks it, or if
// the upstream's tag moved since this proxy copied it. A HEAD starts a
// copy too: containerd-based clients look a tag up with HEAD and give up
// on a 404 (the original copied on GET only).
func (p *Proxy) serveManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	ctx := r.Context()
	down := p.downstream(name)
	m, err := down.GetManifest(ctx, ref)
	if err == nil && p.current(ctx, name, ref) {
		p.hit(w, r, m)
		return
	}
	if err != nil && !isNotFound(err) {
		p.fail(w, r, err)
		return
	}
	unlock, err := p.lock(ctx, name+":"+ref)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	defer unlock()
	// Another client's copy may have finished while this one waited.
	if m, err := down.GetManifest(ctx, ref); err == nil && p.current(ctx, name, ref) {
		p.hit(w, r, m)
		return
	}
	p.misses.Add(1)
	// The copy is the proxy's, not this request's: if this client
	// leaves, the others waiting for the same image still get it.
	copyCtx, cancel := context.WithCancel(p.ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	d, err := p.copyFromUpstream(copyCtx, name, ref)
	stop()
	cancel()
	if err != nil {
		p.log.Error().Err(err).Str("image", name+":"+ref).Msg("pull-through copy failed")
		p.fail(w, r, &upstreamError{err})
		return
	}
	p.pulled.Add(1)
	if want, err := digest.Parse(ref); err == nil && want != d.Digest {
		p.fail(w, r, &registry.HTTPError{Method: r.Method, URL: r.URL.Path, Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN",
			Message: fmt.Sprintf("the filters changed the image: its digest downstream is %s; pull it by tag", d.Digest)})
		return
	}
	if m, err = down.GetManifest(ctx, d.Digest.String()); err != nil {
		p.fail(w, r, err)
		return
	}
	writeManifest(w, r, m)
}

// hit serves a manifest found downstream.
func (p *Proxy) hit(w http.ResponseWriter, r *http.Request, m registry.Manifest) {
	if r.Method == http.MethodGet { // a client's HEAD before its GET is one pull
		p.hits.Add(1)
	}
	writeManifest(w, r, m)
}

// current reports whether the downstream copy of name:ref is still that of
// the upstream's ref: a tag this proxy copied is checked with a HEAD on the
// upstream (a digest never moves). When the upstream cannot be asked, or
// the copy was made before this proxy started, the copy is served.
func (p *Proxy) current(ctx context.Context, name, ref string) bool {
	if _, err := digest.Parse(ref); err == nil {
		return true
	}
	p.mu.Lock()
	from, ok := p.copied[name+":"+ref]
	p.mu.Unlock()
	if !ok {
		return true
	}
	now, err := p.upstream(name).ManifestDigest(ctx, ref)
	if err != nil {
		p.log.Debug().Err(err).Str("image", name+":"+ref).Msg("cannot check the upstream; serving the downstream copy")
		return true
	}
	if now != from {
		p.log.Info().Str("image", name+":"+ref).Str("was", from.String()).Str("now", now.String()).Msg("the upstream tag moved; copying it again")
	}
	return now == from
}

// copyFromUpstream copies UPSTREAM/name:ref through the filters to the
// downstream.
func (p *Proxy) copyFromUpstream(ctx context.Context, name, ref string) (ocispec.Descriptor, error) {
	release, err := p.acquire(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer release()
	src := uri.Reference{Registry: p.upHost, Repository: p.upRepo(name), Tag: ref}
	_, refErr := digest.Parse(ref)
	if refErr == nil {
		src.Tag, src.Digest = "", ref
	}
	var from digest.Digest
	if refErr != nil {
		if from, err = p.upstream(name).ManifestDigest(ctx, ref); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	env := p.opts.Env
	in := registry.NewInput(src, registry.InputOptions{Platform: env.Platform, Parallel: env.Parallel}, p.upstreamOptions(), env)
	p.log.Info().Str("source", src.String()).Msg("pulling through from upstream")
	d, err := p.run(ctx, in, name, ref)
	if err == nil && from != "" {
		p.mu.Lock()
		if len(p.copied) >= maxEntries {
			p.copied = map[string]digest.Digest{}
		}
		p.copied[name+":"+ref] = from
		p.mu.Unlock()
	}
	return d, err
}

// lock takes the lock that makes one copy per name:ref at a time, or
// fails when ctx ends first. The lock is dropped from the map once no
// handler holds or waits for it.
func (p *Proxy) lock(ctx context.Context, key string) (unlock func(), err error) {
	p.mu.Lock()
	l, ok := p.pulls[key]
	if !ok {
		l = &pullLock{ch: make(chan struct{}, 1)}
		p.pulls[key] = l
	}
	l.users++
	p.mu.Unlock()
	done := func() {
		p.mu.Lock()
		if l.users--; l.users == 0 {
			delete(p.pulls, key)
		}
		p.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, context.Cause(ctx)
	}
}

// serveBlob streams a blob from the downstream registry, verified against
// its digest on the way (a mismatch cuts the response short).
func (p *Proxy) serveBlob(w http.ResponseWriter, r *http.Request, name string, d digest.Digest) {
	ctx := r.Context()
	down := p.downstream(name)
	size, err := down.StatBlob(ctx, d)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	body, err := down.OpenBlob(ctx, ocispec.Descriptor{Digest: d, Size: size})
	if err != nil {
		h.Del("Content-Length")
		p.fail(w, r, err)
		return
	}
	defer body.Close()
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, body); err != nil {
		p.log.Warn().Err(err).Str("blob", d.String()).Msg("serving a blob from the downstream registry failed")
		panic(http.ErrAbortHandler) // cut the connection: the client must not take a short body
	}
}

// writeManifest sends a manifest with its type and digest.
func writeManifest(w http.ResponseWriter, r *http.Request, m registry.Manifest) {
	h := w.Header()
	regserver.SetHeader(w, "Content-Type", m.MediaType) // the downstream's data
	h.Set("Docker-Content-Digest", m.Digest.String())
	h.Set("Content-Length", strconv.Itoa(len(m.Raw)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(m.Raw)
	}
}

// upstreamError marks a failed pull-through copy, answered 502.
type upstreamError struct{ err error }

func (e *upstreamError) Error() string { return e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// fail answers a pull-through read that failed: 404 for what the
// downstream does not have, 502 for a failed copy or any other error, with
// the registry's JSON error document.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := http.StatusBadGateway, "UNKNOWN"
	var ue *upstreamError
	if !errors.As(err, &ue) && isNotFound(err) {
		status, code = http.StatusNotFound, "MANIFEST_UNKNOWN"
		if _, kind, _, _ := splitPath(r.URL.Path); kind == "blobs" {
			code = "BLOB_UNKNOWN"
		}
	}
	if status >= 500 {
		p.log.Warn().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("pull-through request failed")
	}
	regserver.WriteError(w, &regserver.Error{Status: status, Code: code, Message: err.Error()})
}

// isNotFound reports whether err is a registry's 404.
func isNotFound(err error) bool {
	var he *registry.HTTPError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}
