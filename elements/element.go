// Package elements defines the unit that flows through an occystrap
// pipeline: an Element, which is the image reference, the config, or one
// layer, with a streaming body and the metadata stages need to route,
// verify and name it.
//
// Ownership: whoever receives an Element owns its Body and must either pass
// the Element on or Close it, exactly once, on every path.
package elements

import (
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// Kind says what an Element carries.
type Kind int

const (
	// KindImage is the first element of every image: Name is the image
	// reference ("busybox:latest", "ghcr.io/org/app:v1"). Body is nil or the
	// raw manifest the input read, with MediaType set.
	KindImage Kind = iota
	// KindConfig carries the image config JSON. Name is the config's name
	// as the input knows it (normally "<hex>.json").
	KindConfig
	// KindLayer carries one filesystem layer. Name is the layer's name as
	// the input knows it (a digest hex or a v1 directory name); Index is its
	// position in image order, from 0.
	KindLayer
)

// String returns the kind's lower-case name.
func (k Kind) String() string {
	switch k {
	case KindImage:
		return "image"
	case KindConfig:
		return "config"
	case KindLayer:
		return "layer"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Element is one piece of an image moving through a pipeline.
//
// Digest, when set, is the digest of the bytes in Body exactly as they are
// (compressed bytes for a compressed layer); the stage that built the Element
// guarantees that reading Body to its end fails with an error if the bytes do
// not match it. DiffID, when set, is the digest of the uncompressed tar
// stream; it is checked by whichever stage decompresses the layer (see
// OpenTar). When Body is uncompressed, Digest and DiffID are equal.
type Element struct {
	Kind      Kind
	Name      string
	Index     int           // image order for layers; -1 for image and config
	MediaType string        // media type of Body: tells its compression
	Digest    digest.Digest // digest of Body's bytes as they are, "" if unknown
	DiffID    digest.Digest // digest of the uncompressed layer tar, "" if unknown
	Size      int64         // bytes in Body, -1 if unknown
	Body      io.ReadCloser // owned by the receiver: pass it on or Close it, once
	// Source, when not nil, says where Body's bytes lie in a file, so that
	// an output can copy them in the kernel (see FileRange). A stage that
	// changes Body must set it to nil.
	Source *FileRange
	// Late, when not nil, marks a layer whose final name and digest are
	// known only once its Body has been read to io.EOF: a filter that
	// rewrites the layer while the next stage reads it. Its Body is an
	// uncompressed tar; Name is the name the layer came with, and Digest,
	// DiffID and Size are unknown. Call Late after EOF for the final
	// values. Only a stage that declared it takes late layers
	// (stages.Env.LateLayers) is given one: every other stage needs names
	// and digests before the bytes.
	Late func() (Final, error)
}

// Final is what a late layer's Body settles on at its end (see
// Element.Late).
type Final struct {
	Name   string        // the layer's new name: its digest's hex
	Digest digest.Digest // digest of the uncompressed tar, and so its diff ID
	Size   int64         // bytes read from Body
}

// Close closes the Element's Body if it has one. It is safe to call on an
// Element without a Body.
func (e *Element) Close() error {
	if e.Body == nil {
		return nil
	}
	err := e.Body.Close()
	e.Body = nil
	return err
}

// String describes the element for logs.
func (e Element) String() string {
	if e.Kind == KindLayer {
		return fmt.Sprintf("layer %d (%s)", e.Index, e.Name)
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Name)
}

// Settled is implemented by bodies whose bytes were already checked
// against the element's digests when they were made (a layer a filter
// rewrote into a temporary file, hashing it on the way). An output that
// copies such a body by its Source range need not read it a second time
// just to verify it.
type Settled interface {
	Settled() bool
}

// IsSettled reports whether el's body needs no verifying read.
func IsSettled(el Element) bool {
	s, ok := el.Body.(Settled)
	return ok && s.Settled()
}
