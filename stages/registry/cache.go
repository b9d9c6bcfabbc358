package registry

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// LayerCache remembers, across runs, which compressed blob a layer became
// when it was pushed (--layer-cache FILE), so that pushing the same layer
// again costs a HEAD instead of a compression and an upload.
//
// The file has the original tool's shape (spec 8): {"version": 1,
// "layers": {KEY: {"compressed_digest", "compressed_size", "media_type",
// "filters_hash", "timestamp"}}}. Unlike the original, KEY is the layer's
// diff ID (the digest of its uncompressed tar as it reaches the output,
// after any filter) rather than the input's layer name, which for tarballs
// is not even a digest (spec 13.23); and filters_hash holds the
// compression ("gzip" or "zstd"), since filters are already accounted for
// by the diff ID. An entry is used only after a HEAD shows the destination
// has the blob.
type LayerCache struct {
	path    string
	log     zerolog.Logger
	mu      sync.Mutex
	doc     cacheDoc
	changed bool
}

type cacheDoc struct {
	Version int                   `json:"version"`
	Layers  map[string]cacheEntry `json:"layers"`
}

type cacheEntry struct {
	CompressedDigest digest.Digest `json:"compressed_digest"`
	CompressedSize   int64         `json:"compressed_size"`
	MediaType        string        `json:"media_type"`
	FiltersHash      string        `json:"filters_hash"`
	Timestamp        string        `json:"timestamp"`
	// Repository is where the blob was pushed ("host/repo"), so that
	// another repository of the same registry can mount it (beyond the
	// original's format).
	Repository string `json:"repository,omitempty"`
}

// OpenLayerCache reads the cache file at path; a missing file is an empty
// cache, and an unreadable one is ignored with a warning (it is only a
// cache).
func OpenLayerCache(path string, log zerolog.Logger) *LayerCache {
	c := &LayerCache{path: path, log: log, doc: cacheDoc{Version: 1, Layers: map[string]cacheEntry{}}}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return c
	}
	var doc cacheDoc
	if err == nil {
		err = json.Unmarshal(data, &doc)
	}
	switch {
	case err != nil:
		log.Warn().Err(err).Str("file", path).Msg("ignoring the layer cache: it cannot be read")
	case doc.Version != 1:
		log.Warn().Int("version", doc.Version).Str("file", path).Msg("ignoring the layer cache: unknown version")
	default:
		if doc.Layers != nil {
			c.doc.Layers = doc.Layers
		}
	}
	return c
}

// Lookup returns what diffID became when compressed as compression.
// It also returns the "host/repo" the blob was pushed to, if known.
func (c *LayerCache) Lookup(diffID digest.Digest, compression string) (pushed, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.doc.Layers[diffID.Encoded()]
	if !ok || e.FiltersHash != compression || e.CompressedDigest.Validate() != nil || e.CompressedSize <= 0 {
		return pushed{}, "", false
	}
	return pushed{mediaType: e.MediaType, digest: e.CompressedDigest, size: e.CompressedSize}, e.Repository, true
}

// Record notes what diffID became, and where ("host/repo") it was pushed.
func (c *LayerCache) Record(diffID digest.Digest, compression string, p pushed, repository string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.doc.Layers[diffID.Encoded()] = cacheEntry{
		CompressedDigest: p.digest, CompressedSize: p.size, MediaType: p.mediaType,
		FiltersHash: compression, Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000000+00:00"),
		Repository: repository,
	}
	c.changed = true
}

// Save writes the cache if it changed, atomically (temporary file in the
// same directory, then rename).
func (c *LayerCache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.changed {
		return nil
	}
	data, err := json.MarshalIndent(c.doc, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".occystrap-cache-*")
	if err != nil {
		return fmt.Errorf("save layer cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save layer cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save layer cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		return fmt.Errorf("save layer cache: %w", err)
	}
	c.changed = false
	return nil
}
