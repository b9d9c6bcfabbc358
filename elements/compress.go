package elements

import (
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// GzipLevel is the gzip level outputs compress layers with. klauspost's
// level 6 is markedly faster than zlib's at a similar ratio, and it skips
// incompressible blocks quickly.
const GzipLevel = pgzip.DefaultCompression

// NewCompressor returns a writer that compresses what is written to it into
// w, as gzip (in parallel blocks, with pgzip) or zstd. Close flushes the
// stream; it does not close w.
func NewCompressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		zw, err := pgzip.NewWriterLevel(w, GzipLevel)
		if err != nil {
			return nil, err
		}
		// 1 MiB blocks, a few per CPU: enough to keep every core busy
		// while bounding memory per layer to a few MiB.
		if err := zw.SetConcurrency(1<<20, max(2, runtime.GOMAXPROCS(0))); err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(max(1, runtime.GOMAXPROCS(0))), zstd.WithLowerEncoderMem(true))
	}
	return nil, fmt.Errorf("cannot compress as %s", c)
}
