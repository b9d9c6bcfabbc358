// Package stages holds the contracts every pipeline stage implements: an
// Input produces the elements of an image, a Filter transforms or inspects
// them on the way, and an Output writes them somewhere. Each format lives in
// a package of its own under stages/ (stages/tarball, stages/dir, ...) that
// provides the input and output of that format; stages/catalog maps URI
// schemes to them.
//
// The element stream of one image is, in order: one KindImage element, one
// KindConfig element (filters that change layers may hold the config back
// until after the layers), then the KindLayer elements in image order.
//
// Channel contract: the engine makes every channel and closes it after its
// sender's Run returns; stages never close a channel. Every send and receive
// goes through flow.Send and flow.Recv, which give up when ctx is done.
// Whoever receives an element owns its Body (see package elements).
package stages

import (
	"context"
	"errors"
	"io"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Input produces the elements of one image on out. It returns when it has
// sent them all, or with the first error.
type Input interface {
	Run(ctx context.Context, out chan<- elements.Element) error
}

// Filter reads elements from in and sends what it makes of them on out.
type Filter interface {
	Run(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element) error
}

// Output consumes every element from in and writes the image. It must leave
// no partial output behind when it fails or ctx is cancelled.
type Output interface {
	Run(ctx context.Context, in <-chan elements.Element) error
}

// Result is what an output reports once it has written an image: the
// summary line's figures.
type Result struct {
	Image  string `json:"image"`  // the reference written
	Bytes  int64  `json:"bytes"`  // config bytes plus layer bytes as written
	Layers int    `json:"layers"` // layers written (or skipped as already present)
	Path   string `json:"path,omitempty"`
}

// Resulter is implemented by outputs that report a Result after Run
// returned nil.
type Resulter interface {
	Result() Result
}

// Verifier is implemented by outputs that can check what their last
// successful Run wrote by reading it back (process --verify, on by
// default): every piece the image needs is there, where and as large as
// its manifest says. With full, every layer is also read through as a tar
// and checked against its diff ID (--verify-full). An error says what is
// wrong; it wraps ErrVerify.
type Verifier interface {
	Verify(ctx context.Context, full bool) (Verified, error)
}

// Verified describes a successful verification.
type Verified struct {
	Layers  int    // layers checked
	Message string // for the log, e.g. "All 3 layers verified in tarball"
}

// ErrVerify is wrapped by verification failures.
var ErrVerify = errors.New("verification failed")

// Env is what factories get besides the parsed URI: shared settings and
// services. Factories validate and do no I/O; I/O happens in Run.
type Env struct {
	Log         zerolog.Logger   // where stages log; they never print
	Parallel    int              // worker count for parallel fetch, compress and upload
	Budget      *flow.Budget     // bytes in flight, shared by every stage
	TempDir     string           // where temporary files go ("" = system default)
	LayerCache  string           // --layer-cache file for registry pushes ("" = none)
	Platform    ocispec.Platform // platform to pick from a multi-platform index
	Username    string           // registry credentials
	Password    string
	Insecure    bool          // plain HTTP (or unverified TLS) for registries
	Compression string        // layer compression for outputs that compress: gzip or zstd
	Retries     int           // retries for transient network failures
	Limiter     *rate.Limiter // --rate-limit: paces every registry request; nil for none
	Progress    Progress
	// Stdout is where stages that produce a command's result (the search
	// filter's report) print it; logs never go there. nil discards.
	Stdout io.Writer
	// OutputFormat is the format of such results: "text" (or "") or
	// "json", from the global -O flag.
	OutputFormat string
	// KeepCompressed says that nothing downstream reads layers as tar
	// streams (no filter, and a destination that stores blobs as they
	// are). An input that has to decompress a layer anyway (dockerpush://,
	// to recognise it) hands on the compressed bytes only then, and
	// otherwise the tar stream it made, so nothing decompresses twice.
	KeepCompressed bool
	// LateLayers says that the next stage (past the decompress stage, which
	// passes uncompressed layers through) takes layers whose name and
	// digest are known only at their end (elements.Element.Late): a
	// filter that rewrites layers can then stream them instead of
	// rewriting each into a temporary file to learn its digest first.
	// Only the last filter of a chain is told so.
	LateLayers bool
}

// Progress receives progress reports from long work. Only the cli package
// turns them into bars or log lines. Implementations must be safe for
// concurrent use.
type Progress interface {
	// Track starts tracking one piece of work of total bytes (-1 if
	// unknown), named for display.
	Track(name string, total int64) Tracker
}

// Tracker follows one piece of work started with Progress.Track.
type Tracker interface {
	// Add counts n more bytes done.
	Add(n int64)
	// Done ends the piece of work; err is nil on success.
	Done(err error)
}

// NoProgress is a Progress that reports nothing.
type NoProgress struct{}

// Track returns a Tracker that does nothing.
func (NoProgress) Track(string, int64) Tracker { return noTracker{} }

type noTracker struct{}

func (noTracker) Add(int64)  {}
func (noTracker) Done(error) {}

// TrackReader returns r wrapped so that every byte read is counted by t.
func TrackReader(r io.Reader, t Tracker) io.Reader {
	return trackedReader{r, t}
}

type trackedReader struct {
	r io.Reader
	t Tracker
}

func (tr trackedReader) Read(p []byte) (int, error) {
	n, err := tr.r.Read(p)
	tr.t.Add(int64(n))
	return n, err
}

// ProgressOrNone returns e.Progress, or NoProgress when it is nil, so that
// stages can report progress without checking.
func (e Env) ProgressOrNone() Progress {
	if e.Progress == nil {
		return NoProgress{}
	}
	return e.Progress
}
