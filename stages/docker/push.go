package docker

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/engine/spool"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/regserver"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// cleanupTimeout bounds the engine calls that undo a push's temporary
// tag, which run even when the pipeline was cancelled.
const cleanupTimeout = 30 * time.Second

// PushInput exports one image from the engine by having the engine push
// it (dockerpush://): it starts an embedded registry (package regserver)
// over HTTPS on a free port of 127.0.0.1, tags the image for it, asks the
// engine to push, and removes the tag and stops the registry when done.
// The engine pushes layers several at a time, each compressed (gzip), where
// `docker save` writes one sequential tar. That can pay off with many
// layers and the cores to compress them; on two cores the engine's gzip
// makes it slower than docker:// (docs/benchmarks.md).
//
// The engine's uploads carry no layer position, so each blob is told
// apart by its content as soon as it is complete: it is decompressed and
// hashed, and its diff ID names its position (the engine's inspect gives
// the diff IDs in order). Layers go on in image order as soon as each is
// known, while later ones still upload. When the destination stores
// blobs as they are (stages.Env.KeepCompressed), layers keep the engine's
// gzip bytes; otherwise the tar stream made while recognising a layer is
// its body, so no layer is decompressed twice. The config comes after the layers
// (the engine pushes it last), and the manifest the engine pushes at the
// end is checked against what was sent: the same config, and the same
// blobs in the same order.
//
// Blobs are kept in unlinked temporary files in --temp-dir while the
// image goes through. Docker treats loopback registries as insecure (no
// certificate check), so no daemon setting is needed; Podman's
// compatible API is asked not to verify TLS.
type PushInput struct {
	ref      uri.Reference
	client   *Client
	tempDir  string
	log      zerolog.Logger
	progress stages.Progress
	parallel int
	keepGzip bool   // hand on the engine's gzip bytes rather than the tar
	addr     string // the embedded registry's address during Run
}

// NewPushInput returns a PushInput for the image ref on the engine at
// socket. It does no I/O.
func NewPushInput(ref uri.Reference, socket string, env stages.Env) *PushInput {
	return &PushInput{ref: ref, client: NewClient(socket), tempDir: env.TempDir, log: env.Log,
		progress: env.ProgressOrNone(), parallel: max(env.Parallel, 1), keepGzip: env.KeepCompressed}
}

// Describe is Input.Describe: the engine's inspect, no layer read.
func (in *PushInput) Describe(ctx context.Context) (reference string, config []byte, err error) {
	return (&Input{ref: in.ref.String(), client: in.client}).Describe(ctx)
}

// pushTarget is the repository and tag the image is pushed as: the
// image's path on the embedded registry, and its tag (or a fixed one for
// a reference by digest or ID).
func pushTarget(addr string, ref uri.Reference) (repo, tag string) {
	name := strings.TrimPrefix(ref.Repository, "/")
	if name == "" || strings.HasPrefix(ref.String(), "sha256:") {
		name = "occystrap/image"
	}
	tag = ref.Tag
	if tag == "" {
		tag = "occystrap-push"
	}
	return addr + "/" + name, tag
}

// Run sends the image, layer and config elements on out.
func (in *PushInput) Run(ctx context.Context, out chan<- elements.Element) (err error) {
	defer in.client.CloseIdle()
	ref := in.ref.String()
	insp, f, err := inspectImage(ctx, in.client, ref)
	if err != nil {
		return err
	}
	if len(insp.RepoTags) == 0 {
		// Removing the temporary tag of an image with no other tag would
		// delete the image.
		return fmt.Errorf("dockerpush:// needs a tagged image, and %s has no tag in the Docker Engine at %s: tag it (docker tag) or use docker://", ref, in.client.socket)
	}
	g, gctx := errgroup.WithContext(ctx)
	rc := newReceipt(gctx, f, in.parallel)
	rc.tempDir, rc.keepGzip = in.tempDir, in.keepGzip
	defer rc.release()
	srv, err := regserver.Start(regserver.Options{
		TLS: true, TempDir: in.tempDir, Log: in.log, Progress: in.progress,
		Hooks: regserver.Hooks{BlobReceived: rc.received, ManifestReceived: rc.manifestPut},
	})
	if err != nil {
		return err
	}
	in.addr = srv.Addr()
	defer func() {
		srv.Close()
		rc.wg.Wait() // no identification still reading a blob
	}()
	repo, tag := pushTarget(srv.Addr(), in.ref)
	if err := in.client.Tag(ctx, ref, repo, tag); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if uerr := in.client.Untag(cctx, repo+":"+tag); uerr != nil {
			in.log.Warn().Err(uerr).Str("tag", repo+":"+tag).Msg("could not remove the temporary tag")
			if err == nil {
				err = fmt.Errorf("remove the temporary tag %s:%s: %w", repo, tag, uerr)
			}
		}
	}()
	in.log.Info().Str("image", ref).Int("layers", len(f.DiffIDs)).Str("registry", srv.URL()).Msg("pushing from the Docker Engine to the embedded registry")
	if err := flow.Send(ctx, out, elements.Element{Kind: elements.KindImage, Name: ref, Index: -1, Size: -1}); err != nil {
		return err
	}
	g.Go(func() error {
		err := in.client.Push(gctx, repo, tag, nil)
		rc.pushed(err)
		return err
	})
	g.Go(func() error { return rc.emit(gctx, out) })
	if err := g.Wait(); err != nil {
		return err
	}
	in.log.Info().Str("image", ref).Int("layers", len(f.DiffIDs)).Msg("received the image from the Docker Engine")
	return nil
}

// receipt follows what the engine pushes: which blob is which layer, the
// config, the manifest.
type receipt struct {
	facts     Facts
	diffIndex map[digest.Digest][]int
	sem       chan struct{} // bounds identifications running at once
	keepGzip  bool          // only hash the tar streams; do not keep them
	tempDir   string        // where the tar streams go otherwise
	ctx       context.Context
	wg        sync.WaitGroup // identifications running

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	slots    []*regserver.Blob
	comps    map[digest.Digest]elements.Compression
	tars     map[digest.Digest]*spool.File     // blob digest -> its tar stream
	others   map[digest.Digest]*regserver.Blob // blobs that are no layer
	pending  int                               // identifications not finished
	manifest *ocispec.Manifest
	// manifestDigest is the manifest's digest, which an engine whose
	// images live in containerd gives as the image ID.
	manifestDigest digest.Digest
	done           bool  // the push call returned
	err            error // the push's or an identification's failure
}

// newReceipt returns a receipt for an image of facts f; identifications
// run parallel at a time and stop when ctx is done.
func newReceipt(ctx context.Context, f Facts, parallel int) *receipt {
	rc := &receipt{
		facts: f, diffIndex: map[digest.Digest][]int{}, sem: make(chan struct{}, parallel),
		ctx: ctx, changed: make(chan struct{}), slots: make([]*regserver.Blob, len(f.DiffIDs)),
		comps: map[digest.Digest]elements.Compression{}, tars: map[digest.Digest]*spool.File{}, others: map[digest.Digest]*regserver.Blob{},
	}
	for i, d := range f.DiffIDs {
		rc.diffIndex[d] = append(rc.diffIndex[d], i)
	}
	return rc
}

// notify wakes whoever waits for a change; call it with mu held.
func (rc *receipt) notify() {
	close(rc.changed)
	rc.changed = make(chan struct{})
}

// received is the registry's BlobReceived hook: it starts telling the blob
// apart in the background, so the engine's next upload is not held up.
func (rc *receipt) received(_ string, b *regserver.Blob) {
	rc.mu.Lock()
	rc.pending++
	rc.mu.Unlock()
	rc.wg.Add(1)
	go func() {
		defer rc.wg.Done()
		comp, diffID, tar, err := rc.identify(b)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.pending--
		defer rc.notify()
		if err != nil {
			if rc.err == nil {
				rc.err = err
			}
			return
		}
		if tar != nil {
			rc.tars[b.Digest] = tar
		}
		placed := false
		if diffID != "" {
			for _, i := range rc.diffIndex[diffID] {
				if rc.slots[i] == nil {
					rc.slots[i], placed = b, true
				}
			}
		}
		if placed {
			rc.comps[b.Digest] = comp
		} else {
			rc.others[b.Digest] = b
		}
	}()
}

// identify works out what a blob is: the config (by its digest, or
// because it is not a tar stream in any compression), or a layer, whose
// diff ID it computes by decompressing it. Unless keepGzip, the tar
// stream is kept in a spool.File (returned), so that it is the layer's
// body and nothing decompresses it again.
func (rc *receipt) identify(b *regserver.Blob) (elements.Compression, digest.Digest, *spool.File, error) {
	if b.Digest == rc.facts.Config {
		return elements.Unknown, "", nil, nil
	}
	select {
	case rc.sem <- struct{}{}:
	case <-rc.ctx.Done():
		return elements.Unknown, "", nil, context.Cause(rc.ctx)
	}
	defer func() { <-rc.sem }()
	body := b.Open()
	defer body.Close()
	br := bufio.NewReaderSize(body, 64<<10)
	head, _ := br.Peek(elements.SniffLen)
	comp := elements.Detect(head)
	switch comp {
	case elements.Unknown:
		return comp, "", nil, nil // not a layer: the config, or something else
	case elements.None:
		return comp, b.Digest, nil, nil
	}
	r, err := elements.Decompress(br, comp, nil)
	if err != nil {
		return comp, "", nil, fmt.Errorf("the engine pushed blob %s, which does not decompress as %s: %w", b.Digest, comp, err)
	}
	defer r.Close()
	h := sha256.New()
	var dst io.Writer = h
	var tar *spool.File
	if !rc.keepGzip {
		if tar, err = spool.NewFile(rc.tempDir); err != nil {
			return comp, "", nil, err
		}
		dst = io.MultiWriter(tar, h)
	}
	if _, err := elements.CopyContext(rc.ctx, dst, r, nil); err != nil {
		if tar != nil {
			tar.Release()
		}
		if rc.ctx.Err() != nil {
			return comp, "", nil, context.Cause(rc.ctx)
		}
		return comp, "", nil, fmt.Errorf("the engine pushed blob %s, which does not decompress as %s: %w", b.Digest, comp, err)
	}
	return comp, digest.NewDigest(digest.SHA256, h), tar, nil
}

// release frees the tar streams kept (bodies still open keep theirs).
func (rc *receipt) release() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for d, f := range rc.tars {
		f.Release()
		delete(rc.tars, d)
	}
}

// manifestPut is the registry's ManifestReceived hook: it keeps the
// image manifest (a manifest list is refused; an engine pushing one image
// never sends one).
func (rc *receipt) manifestPut(_ context.Context, m *regserver.Manifest) error {
	if m.IsIndex() {
		return &regserver.Error{Status: 400, Code: "MANIFEST_INVALID", Message: "this registry takes one image manifest, not a list"}
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(m.Raw, &man); err != nil {
		return &regserver.Error{Status: 400, Code: "MANIFEST_INVALID", Message: fmt.Sprintf("the manifest is not valid: %v", err)}
	}
	rc.mu.Lock()
	rc.manifest, rc.manifestDigest = &man, m.Digest
	rc.notify()
	rc.mu.Unlock()
	return nil
}

// pushed records that the push call returned.
func (rc *receipt) pushed(err error) {
	rc.mu.Lock()
	rc.done = true
	if err != nil && rc.err == nil {
		rc.err = err
	}
	rc.notify()
	rc.mu.Unlock()
}

// wait blocks until cond, called with mu held, says ready or fails.
func (rc *receipt) wait(ctx context.Context, cond func() (bool, error)) error {
	for {
		rc.mu.Lock()
		ok, err := cond()
		if !ok && rc.err != nil {
			err = rc.err // the cause comes first: what is missing may follow from it
		}
		ch := rc.changed
		rc.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ch:
		}
	}
}

// settled is the end of the push: the call returned and every blob is
// told apart, so whatever is missing will not come.
func (rc *receipt) settled() bool { return rc.done && rc.pending == 0 }

// emit sends the layers in image order as each becomes known, then the
// config once the manifest has confirmed it.
func (rc *receipt) emit(ctx context.Context, out chan<- elements.Element) error {
	f := rc.facts
	for i, diffID := range f.DiffIDs {
		var b *regserver.Blob
		err := rc.wait(ctx, func() (bool, error) {
			b = rc.slots[i]
			if b == nil && rc.settled() {
				return false, fmt.Errorf("the Docker Engine pushed no blob for layer %d (diff ID %s) of %s", i, diffID, f.Reference)
			}
			return b != nil, nil
		})
		if err != nil {
			return err
		}
		rc.mu.Lock()
		comp, tar := rc.comps[b.Digest], rc.tars[b.Digest]
		rc.mu.Unlock()
		el := elements.Element{Kind: elements.KindLayer, Name: diffID.Encoded(), Index: i, DiffID: diffID}
		var body *spool.FileReader
		if tar != nil {
			body = tar.Open()
			el.MediaType, el.Digest, el.Size = elements.LayerMediaType(elements.None), diffID, tar.Size()
		} else {
			body = b.Open()
			el.MediaType, el.Digest, el.Size = elements.LayerMediaType(comp), b.Digest, b.Size
		}
		el.Body, el.Source = settledReader{body}, &elements.FileRange{File: body.File(), Offset: 0, Length: el.Size}
		if err := flow.Send(ctx, out, el); err != nil {
			el.Close()
			return err
		}
	}
	var man *ocispec.Manifest
	if err := rc.wait(ctx, func() (bool, error) {
		man = rc.manifest
		if man == nil && rc.settled() {
			return false, fmt.Errorf("the Docker Engine finished pushing %s but sent no manifest", f.Reference)
		}
		return man != nil, nil
	}); err != nil {
		return err
	}
	var config *regserver.Blob
	if err := rc.wait(ctx, func() (bool, error) {
		config = rc.others[man.Config.Digest]
		if config == nil && rc.settled() {
			return false, fmt.Errorf("the Docker Engine pushed a manifest for %s whose config %s it did not push", f.Reference, man.Config.Digest)
		}
		return config != nil, nil
	}); err != nil {
		return err
	}
	if err := rc.check(man); err != nil {
		return err
	}
	raw, err := readConfig(config)
	if err != nil {
		return err
	}
	el := elements.Element{
		Kind: elements.KindConfig, Name: config.Digest.Encoded() + ".json", Index: -1,
		MediaType: ocispec.MediaTypeImageConfig, Digest: config.Digest, Size: int64(len(raw)),
		Body: io.NopCloser(strings.NewReader(string(raw))),
	}
	return flow.Send(ctx, out, el)
}

// check compares the engine's manifest with what was sent: the config the
// inspect named (or, for an engine that stores images in containerd, a
// manifest whose digest is the image ID), and each layer's blob in order.
func (rc *receipt) check(man *ocispec.Manifest) error {
	f := rc.facts
	if f.Config != "" && man.Config.Digest != f.Config && rc.manifestDigest != f.Config {
		return fmt.Errorf("the Docker Engine pushed %s with config %s, but its inspect says %s", f.Reference, man.Config.Digest, f.Config)
	}
	if len(man.Layers) != len(f.DiffIDs) {
		return fmt.Errorf("the Docker Engine pushed a manifest for %s with %d layers, but the image has %d", f.Reference, len(man.Layers), len(f.DiffIDs))
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, l := range man.Layers {
		if got := rc.slots[i].Digest; l.Digest != got {
			return fmt.Errorf("the Docker Engine's manifest for %s says layer %d is blob %s, but its diff ID %s is in blob %s", f.Reference, i, l.Digest, f.DiffIDs[i], got)
		}
	}
	return nil
}

// maxConfig bounds a config blob read into memory.
const maxConfig = 16 << 20

func readConfig(b *regserver.Blob) ([]byte, error) {
	if b.Size > maxConfig {
		return nil, fmt.Errorf("the image config %s has %d bytes, more than the %d allowed", b.Digest, b.Size, maxConfig)
	}
	r := b.Open()
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read the config %s: %w", b.Digest, err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("the image config %s is not JSON: %w", b.Digest, err)
	}
	return raw, nil
}

// settledReader marks a received blob's body as checked: the registry
// verified its digest when the upload ended, and its diff ID is how it was
// recognised.
type settledReader struct{ *spool.FileReader }

// Settled reports that the bytes need no verifying read.
func (settledReader) Settled() bool { return true }
