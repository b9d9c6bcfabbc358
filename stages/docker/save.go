package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// maxMetadataSize bounds the JSON members read into memory (manifest.json,
// the config, a legacy layer's json): real ones are kilobytes.
const maxMetadataSize = 64 << 20

// maxJSONBlob bounds the JSON members kept in memory rather than spooled.
const maxJSONBlob = 1 << 20

// maxLinkDepth bounds symlink resolution inside the stream.
const maxLinkDepth = 16

// Facts is what the engine says of an image before its save stream starts
// (`GET /images/{name}/json`): enough to recognise the config and every
// layer as they go by.
type Facts struct {
	Reference string          // sent as the image element's Name
	Config    digest.Digest   // the config's digest; "" when the engine's Id is not one
	DiffIDs   []digest.Digest // the layers' diff IDs, bottom first
}

// SaveStats says how a save stream's members reached the next stage.
type SaveStats struct {
	Streamed     int   // layers passed straight through from the stream
	Spooled      int   // members copied to temporary files first
	SpooledBytes int64 // bytes those held
}

var (
	// <v1id>/layer.tar, <v1id>/json, <v1id>/VERSION: Docker <= 24.
	legacyLayerRE = regexp.MustCompile(`^([0-9a-f]{64})/layer\.tar$`)
	legacyMetaRE  = regexp.MustCompile(`^([0-9a-f]{64})/(?:json|VERSION)$`)
	// Members named after the digest of their own bytes: OCI blobs
	// (Docker >= 25), and <hex>.tar / <hex>.json (the config of Docker
	// <= 24; layers of Podman's docker-archive).
	digestNameRE = regexp.MustCompile(`^(?:blobs/sha256/([0-9a-f]{64})|([0-9a-f]{64})\.(?:tar|json))$`)
)

// ownDigest returns the digest a member's name says its bytes have, or "".
func ownDigest(name string) digest.Digest {
	m := digestNameRE.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return digest.NewDigestFromEncoded(digest.SHA256, m[1]+m[2])
}

// clean turns a member name into the form manifest.json uses.
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// layerName is the name a layer goes by (spec 5.3): the directory of a
// legacy <v1id>/layer.tar, the hex of blobs/sha256/<hex>, the hex of a
// <hex>.tar.
func layerName(p string) string {
	p = clean(p)
	if strings.HasSuffix(p, "/layer.tar") {
		return path.Base(path.Dir(p))
	}
	return strings.TrimSuffix(path.Base(p), ".tar")
}

// manifestEntry is one image of a docker-save manifest.json.
type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// slot is one layer position of the image.
type slot struct {
	b    *blob  // its content, spooled; nil once sent on (or when streamed)
	path string // the member its content came from
}

// saveReader turns a docker-save stream into the element stream, in one
// pass, in image order, holding back (spooling) only what cannot be sent
// on yet. How each member is treated:
//
//   - The config (<Id hex>.json or blobs/sha256/<Id hex>) is read into
//     memory, checked against the inspect Id, and sent at once.
//   - A layer whose position is known when it starts (its name is its
//     diff ID, as blobs/sha256/<diffID>; or, for a legacy <v1id>/layer.tar,
//     the <v1id>/json files seen so far chain it to a layer already
//     placed) and that is the next one expected, after the config, and used
//     only once in the image, streams straight through: the element's body
//     reads the HTTP stream, verified against its diff ID, and the reader
//     waits until the next stage has closed it.
//   - Every other member that may be a layer (or a config the Id did not
//     name) is spooled whole to an unlinked temporary file, hashed on the
//     way; an uncompressed one whose digest is a diff ID fills every
//     position with that diff ID (so a repeated layer is read once and sent
//     twice). Spooled layers are sent as soon as everything before them
//     has been, and their files freed when the next stage closes them.
//   - At the end, manifest.json (which comes last in both layouts) places
//     whatever is left: compressed blobs, and layers the above could not
//     recognise.
type saveReader struct {
	facts   Facts
	tempDir string
	log     zerolog.Logger
	out     chan<- elements.Element
	what    string // "the save stream of REF", for messages

	diffIndex  map[digest.Digest][]int
	slots      []*slot
	next       int // the next layer index to send
	configSent bool
	blobs      map[string]*blob         // spooled members not placed by digest, by name; one reference each
	placed     map[string]digest.Digest // spooled members placed by digest, by name
	jsons      map[string][]byte        // small JSON members, by name
	jsonBytes  int64                    // their total size
	links      map[string]string        // symlink and hardlink members: name -> target
	v1Parent   map[string]string        // legacy v1 id -> its parent's ("" for the bottom layer)
	v1Index    map[string]int
	v1ByIndex  map[int]string
	manifest   *manifestEntry
	stats      SaveStats
	buf        []byte
}

func newSaveReader(f Facts, tempDir string, log zerolog.Logger, out chan<- elements.Element) *saveReader {
	s := &saveReader{
		facts: f, tempDir: tempDir, log: log, out: out,
		what:      "the save stream of " + f.Reference,
		diffIndex: map[digest.Digest][]int{},
		slots:     make([]*slot, len(f.DiffIDs)),
		blobs:     map[string]*blob{},
		placed:    map[string]digest.Digest{},
		jsons:     map[string][]byte{},
		links:     map[string]string{},
		v1Parent:  map[string]string{},
		v1Index:   map[string]int{},
		v1ByIndex: map[int]string{},
		buf:       make([]byte, 1<<20),
	}
	for i, d := range f.DiffIDs {
		s.diffIndex[d] = append(s.diffIndex[d], i)
	}
	return s
}

// run reads the stream r to its end and sends the image's elements on out.
func (s *saveReader) run(ctx context.Context, r io.Reader) error {
	defer s.close()
	if err := flow.Send(ctx, s.out, elements.Element{Kind: elements.KindImage, Name: s.facts.Reference, Index: -1, Size: -1}); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", s.what, err)
		}
		name := clean(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			s.links[name] = clean(path.Join(path.Dir(name), hdr.Linkname))
			continue
		case tar.TypeLink:
			s.links[name] = clean(hdr.Linkname)
			continue
		case tar.TypeReg:
		default:
			continue
		}
		if err := s.member(ctx, tr, name, hdr.Size); err != nil {
			return err
		}
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	return s.finish(ctx)
}

// close frees every spooled file the reader still holds. Bodies already
// sent on keep theirs until they are closed.
func (s *saveReader) close() {
	for _, b := range s.blobs {
		b.Release()
	}
	s.blobs = nil
	for _, sl := range s.slots {
		if sl != nil && sl.b != nil {
			sl.b.Release()
			sl.b = nil
		}
	}
}

func (s *saveReader) member(ctx context.Context, r io.Reader, name string, size int64) error {
	switch {
	case name == "manifest.json":
		raw, err := readSmall(r, size, name)
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		return s.readManifest(raw)
	case name == "index.json", name == "oci-layout", name == "repositories":
		return nil // the OCI index and legacy tags: nothing needed from them
	case legacyMetaRE.MatchString(name):
		if path.Base(name) == "json" {
			raw, err := readSmall(r, size, name)
			if err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
			var v1 struct {
				Parent string `json:"parent"`
			}
			if err := json.Unmarshal(raw, &v1); err != nil {
				return fmt.Errorf("%s: %s is not valid JSON: %w", s.what, name, err)
			}
			s.setParent(path.Dir(name), v1.Parent)
		}
		return nil
	}
	if c := s.facts.Config; c != "" && !s.configSent && (name == c.Encoded()+".json" || name == "blobs/sha256/"+c.Encoded()) {
		raw, err := readSmall(r, size, name)
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		if got := digest.FromBytes(raw); got != c {
			return &elements.DigestError{What: "config " + name + " in " + s.what, Want: c, Got: got}
		}
		return s.sendConfig(ctx, raw)
	}
	if i, ok := s.predict(name); ok && i == s.next && s.configSent && s.slots[i] == nil && len(s.diffIndex[s.facts.DiffIDs[i]]) == 1 {
		return s.stream(ctx, r, name, size, i)
	}
	if size <= maxJSONBlob && s.jsonBytes+size <= maxMetadataSize {
		// Small JSON members (OCI manifests and indexes, a config the
		// inspect Id did not name) stay in memory: they are only needed if
		// manifest.json names them. A layer never looks like one: it is a
		// tar (with its magic at byte 257), gzip or zstd.
		br := bufio.NewReaderSize(r, 4096)
		if head, _ := br.Peek(elements.SniffLen); len(head) > 0 && head[0] == '{' && elements.Detect(head) != elements.None {
			raw, err := readSmall(br, size, name)
			if err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
			if want := ownDigest(name); want != "" && want != digest.FromBytes(raw) {
				return &elements.DigestError{What: name + " in " + s.what, Want: want, Got: digest.FromBytes(raw)}
			}
			s.jsons[name] = raw
			s.jsonBytes += int64(len(raw))
			return nil
		}
		r = br
	}
	b, err := spoolBlob(ctx, s.tempDir, name, r, s.buf)
	if err != nil {
		return err
	}
	s.stats.Spooled++
	s.stats.SpooledBytes += b.size
	s.log.Debug().Str("member", name).Int64("bytes", b.size).Msg("spooled")
	return s.place(b)
}

// readSmall reads a metadata member whole, within maxMetadataSize.
func readSmall(r io.Reader, size int64, name string) ([]byte, error) {
	if size > maxMetadataSize {
		return nil, fmt.Errorf("%s is %d bytes, larger than the %d bytes allowed for metadata", name, size, maxMetadataSize)
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return raw, nil
}

func (s *saveReader) readManifest(raw []byte) error {
	var ms []manifestEntry
	if err := json.Unmarshal(raw, &ms); err != nil {
		return fmt.Errorf("%s: manifest.json is not valid: %w", s.what, err)
	}
	if len(ms) == 0 {
		return fmt.Errorf("%s: manifest.json lists no image", s.what)
	}
	m := &ms[0]
	for i := range ms {
		if s.facts.Config != "" && ownDigest(clean(ms[i].Config)) == s.facts.Config {
			m = &ms[i]
			break
		}
	}
	s.manifest = m
	return nil
}

// predict returns the image position of a member about to be read, when
// it is known before reading it and is a single position.
func (s *saveReader) predict(name string) (int, bool) {
	d := ownDigest(name)
	if m := legacyLayerRE.FindStringSubmatch(name); m != nil {
		if i, ok := s.v1Index[m[1]]; ok {
			return i, true
		}
		d = digest.NewDigestFromEncoded(digest.SHA256, m[1]) // <diffID>/layer.tar, as some tools write
	}
	if idx := s.diffIndex[d]; len(idx) == 1 {
		return idx[0], true
	}
	return 0, false
}

// setParent records a legacy layer's parent from its json, and what it
// tells of positions: the bottom layer has none, and a layer sits one above
// its parent.
func (s *saveReader) setParent(id, parent string) {
	s.v1Parent[id] = parent
	switch i, ok := s.v1Index[parent]; {
	case parent == "":
		s.setV1(id, 0)
	case ok:
		s.setV1(id, i+1)
	default:
		if i, ok := s.v1Index[id]; ok {
			s.setV1(parent, i-1)
		}
	}
}

// setV1 records that legacy layer id sits at position i, and follows the
// parent links known so far up and down from it. Positions are hints: they
// decide what may stream, and a wrong one (a hostile stream) can only fail
// the diff ID check, never place wrong content.
func (s *saveReader) setV1(id string, i int) {
	if i < 0 || i >= len(s.slots) {
		return
	}
	if _, ok := s.v1Index[id]; ok {
		return
	}
	if _, ok := s.v1ByIndex[i]; ok {
		return
	}
	s.v1Index[id], s.v1ByIndex[i] = i, id
	for c, p := range s.v1Parent {
		if p == id {
			s.setV1(c, i+1)
		}
	}
	if p := s.v1Parent[id]; p != "" {
		s.setV1(p, i-1)
	}
}

// place files a spooled member: an uncompressed one whose digest is a diff
// ID fills every empty position with that diff ID; anything else waits for
// manifest.json.
func (s *saveReader) place(b *blob) error {
	if want := ownDigest(b.path); want != "" && want != b.digest {
		b.Release()
		return &elements.DigestError{What: b.path + " in " + s.what, Want: want, Got: b.digest}
	}
	var filled []int
	if b.comp == elements.None {
		for _, i := range s.diffIndex[b.digest] {
			if s.slots[i] == nil {
				b.Hold()
				s.slots[i] = &slot{b: b, path: b.path}
				filled = append(filled, i)
			}
		}
	}
	if len(filled) == 0 {
		if old := s.blobs[b.path]; old != nil {
			old.Release()
		}
		s.blobs[b.path] = b
		return nil
	}
	if m := legacyLayerRE.FindStringSubmatch(b.path); m != nil && len(s.diffIndex[b.digest]) == 1 {
		s.setV1(m[1], filled[0])
	}
	s.placed[b.path] = b.digest
	b.Release() // the positions hold it now
	return nil
}

// nameOf returns layer i's name, or "" while it cannot be told yet (a
// legacy layer whose v1 directory is not known: it comes from the json
// chain or from manifest.json).
func (s *saveReader) nameOf(i int) string {
	if s.manifest != nil && i < len(s.manifest.Layers) {
		return layerName(s.manifest.Layers[i])
	}
	p := s.slots[i].path
	if legacyLayerRE.MatchString(p) && len(s.diffIndex[s.facts.DiffIDs[i]]) > 1 {
		// A repeated layer's content lies in the first copy's directory;
		// its own name is its own directory's.
		return s.v1ByIndex[i]
	}
	return layerName(p)
}

// stream sends layer i with a body that reads the member straight from the
// stream, and waits until the next stage has closed it.
func (s *saveReader) stream(ctx context.Context, r io.Reader, name string, size int64, i int) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(elements.SniffLen)
	comp := elements.Detect(head)
	if comp == elements.Unknown {
		comp = elements.None // fails its diff ID check below, naming the layer
	}
	body := &streamBody{r: br, done: make(chan struct{})}
	el := elements.Element{
		Kind: elements.KindLayer, Name: layerName(name), Index: i,
		MediaType: elements.LayerMediaType(comp), DiffID: s.facts.DiffIDs[i], Size: size, Body: body,
	}
	if comp == elements.None {
		el.Digest = el.DiffID
		el.Body = elements.NewVerifier(body, el.DiffID, el.String()+" from "+s.what)
	}
	s.slots[i] = &slot{path: name}
	s.next++
	s.stats.Streamed++
	s.log.Debug().Str("layer", el.Name).Int("index", i).Int64("bytes", size).Msg("streaming")
	if err := flow.Send(ctx, s.out, el); err != nil {
		return err
	}
	select {
	case <-body.done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// flush sends every layer that is ready, in order.
func (s *saveReader) flush(ctx context.Context) error {
	for s.configSent && s.next < len(s.slots) {
		i := s.next
		sl := s.slots[i]
		if sl == nil || sl.b == nil {
			return nil
		}
		name := s.nameOf(i)
		if name == "" {
			return nil
		}
		b := sl.b
		if b.comp == elements.Unknown {
			return fmt.Errorf("%s: layer %d (%s) is not a tar, gzip or zstd stream", s.what, i, b.path)
		}
		el := elements.Element{
			Kind: elements.KindLayer, Name: name, Index: i,
			MediaType: elements.LayerMediaType(b.comp), Digest: b.digest, DiffID: s.facts.DiffIDs[i],
			Size: b.size, Body: b.Open(),
		}
		if b.comp == elements.None {
			el.Source = &elements.FileRange{File: b.OSFile(), Offset: 0, Length: b.size}
		}
		sl.b = nil
		b.Release()
		s.next++
		if err := flow.Send(ctx, s.out, el); err != nil {
			return err
		}
	}
	return nil
}

func (s *saveReader) sendConfig(ctx context.Context, raw []byte) error {
	var img ocispec.Image
	if err := json.Unmarshal(raw, &img); err != nil {
		return fmt.Errorf("%s: the config is not valid JSON: %w", s.what, err)
	}
	if !slices.Equal(img.RootFS.DiffIDs, s.facts.DiffIDs) {
		return fmt.Errorf("%s: the config lists diff IDs %v, but the engine's inspect said %v", s.what, img.RootFS.DiffIDs, s.facts.DiffIDs)
	}
	d := digest.FromBytes(raw)
	s.configSent = true
	return flow.Send(ctx, s.out, elements.Element{
		Kind: elements.KindConfig, Name: d.Encoded() + ".json", Index: -1,
		MediaType: ocispec.MediaTypeImageConfig, Digest: d, Size: int64(len(raw)),
		Body: io.NopCloser(bytes.NewReader(raw)),
	})
}

// resolve follows links from a member name to the member holding bytes.
func (s *saveReader) resolve(name string) string {
	cur := clean(name)
	for range maxLinkDepth {
		t, ok := s.links[cur]
		if !ok {
			break
		}
		cur = t
	}
	return cur
}

// finish places what is left using manifest.json and sends it.
func (s *saveReader) finish(ctx context.Context) error {
	if s.manifest != nil {
		if !s.configSent {
			p := s.resolve(s.manifest.Config)
			raw, ok := s.jsons[p]
			if b := s.blobs[p]; !ok && b != nil {
				// A config too large to have been kept in memory.
				if b.size > maxMetadataSize {
					return fmt.Errorf("%s: the config %s is %d bytes, larger than the %d bytes allowed", s.what, p, b.size, maxMetadataSize)
				}
				raw = make([]byte, b.size)
				if _, err := b.OSFile().ReadAt(raw, 0); err != nil && !(err == io.EOF && b.size == 0) {
					return fmt.Errorf("%s: read the config: %w", s.what, err)
				}
				ok = true
			}
			if !ok {
				return fmt.Errorf("%s: the config %s named in manifest.json is missing from the stream", s.what, s.manifest.Config)
			}
			if err := s.sendConfig(ctx, raw); err != nil {
				return err
			}
		}
		if n := len(s.manifest.Layers); n != len(s.slots) {
			return fmt.Errorf("%s: manifest.json lists %d layers, but the engine's inspect said %d", s.what, n, len(s.slots))
		}
		for i, lp := range s.manifest.Layers {
			if s.slots[i] != nil {
				continue
			}
			p := s.resolve(lp)
			b := s.blobs[p]
			if b == nil {
				if d, ok := s.placed[p]; ok {
					return &elements.DigestError{What: fmt.Sprintf("layer %d (%s) diff ID in %s", i, lp, s.what), Want: s.facts.DiffIDs[i], Got: d}
				}
				return fmt.Errorf("%s: layer %d (%s) named in manifest.json is missing from the stream", s.what, i, lp)
			}
			if b.comp == elements.None && b.digest != s.facts.DiffIDs[i] {
				return &elements.DigestError{What: fmt.Sprintf("layer %d (%s) diff ID in %s", i, lp, s.what), Want: s.facts.DiffIDs[i], Got: b.digest}
			}
			b.Hold()
			s.slots[i] = &slot{b: b, path: p}
		}
	}
	if err := s.flush(ctx); err != nil {
		return err
	}
	if !s.configSent {
		want := "its config"
		if s.facts.Config != "" {
			want = "its config " + s.facts.Config.Encoded() + ".json"
		}
		return fmt.Errorf("%s ended without %s (and without a manifest.json naming it)", s.what, want)
	}
	if s.next < len(s.slots) {
		if s.manifest == nil {
			return fmt.Errorf("%s ended without manifest.json, and layer %d (diff ID %s) was not found in it", s.what, s.next, s.facts.DiffIDs[s.next])
		}
		return fmt.Errorf("%s: layer %d (diff ID %s) could not be sent", s.what, s.next, s.facts.DiffIDs[s.next])
	}
	return nil
}

// streamBody is the body of a layer read straight from the save stream.
// Closing it tells the reader it may move on.
type streamBody struct {
	r      io.Reader
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, fmt.Errorf("read a layer body after it was closed")
	}
	return b.r.Read(p)
}

func (b *streamBody) Close() error {
	b.once.Do(func() {
		b.closed.Store(true)
		close(b.done)
	})
	return nil
}
