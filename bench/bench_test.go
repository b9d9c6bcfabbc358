// Package bench holds occystrap's Go benchmarks; the side-by-side harness
// against cp, sha256 and tar -x is the command in bench/harness.
//
// The benchmarks run whole pipelines in-process on a generated image of
// OCCYSTRAP_BENCH_SIZE bytes (default 256MiB; KiB, MiB and GiB suffixes),
// and report throughput with b.SetBytes, so `go test -bench . ./bench`
// prints MB/s. Speed goals live here and in the harness, never in timed
// unit tests.
package bench

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/dir"
	"github.com/occystrap/occystrap/stages/rewrite"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/rs/zerolog"
)

var (
	imageOnce sync.Once
	imagePath string
	imageSize int64
	imageErr  error
	workDir   string
)

func benchSize() int64 {
	s := os.Getenv("OCCYSTRAP_BENCH_SIZE")
	if s == "" {
		return 256 << 20
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 256 << 20
	}
	return n * mult
}

// image returns the path of the generated benchmark image.
func image(b *testing.B) string {
	imageOnce.Do(func() {
		workDir, imageErr = os.MkdirTemp("", "occystrap-gobench-")
		if imageErr != nil {
			return
		}
		imagePath = filepath.Join(workDir, "image.tar")
		if _, imageErr = imagegen.WriteFile(imagePath, imagegen.Big(benchSize(), 8), imagegen.Legacy); imageErr != nil {
			return
		}
		var fi os.FileInfo
		if fi, imageErr = os.Stat(imagePath); imageErr == nil {
			imageSize = fi.Size()
		}
	})
	if imageErr != nil {
		b.Fatal(imageErr)
	}
	return imagePath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

func env() stages.Env { return stages.Env{Log: zerolog.Nop(), Parallel: 4} }

func run(b *testing.B, out stages.Output) {
	p := &engine.Pipeline{Input: tarball.NewInput(image(b), env()), Output: out}
	if err := p.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFloorSha256 is the least tar -> tar can cost besides copying:
// one sha256 pass over the file.
func BenchmarkFloorSha256(b *testing.B) {
	path := image(b)
	b.SetBytes(imageSize)
	buf := make([]byte, 1<<20)
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.CopyBuffer(struct{ io.Writer }{h}, struct{ io.Reader }{f}, buf); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkTarToTar converts the image tarball to a tarball.
func BenchmarkTarToTar(b *testing.B) {
	image(b)
	out := filepath.Join(b.TempDir(), "out.tar")
	b.SetBytes(imageSize)
	for b.Loop() {
		run(b, tarball.NewOutput(out, env()))
	}
}

// BenchmarkTarToDir writes the layer files of the image to a directory.
func BenchmarkTarToDir(b *testing.B) {
	image(b)
	tmp := b.TempDir()
	b.SetBytes(imageSize)
	for b.Loop() {
		b.StopTimer()
		os.RemoveAll(filepath.Join(tmp, "d"))
		b.StartTimer()
		run(b, dir.NewOutput(filepath.Join(tmp, "d"), dir.Options{}, env()))
	}
}

// BenchmarkTarToDirExpand writes the layer files and the merged filesystem.
func BenchmarkTarToDirExpand(b *testing.B) {
	image(b)
	tmp := b.TempDir()
	b.SetBytes(imageSize)
	for b.Loop() {
		b.StopTimer()
		os.RemoveAll(filepath.Join(tmp, "d"))
		b.StartTimer()
		run(b, dir.NewOutput(filepath.Join(tmp, "d"), dir.Options{Expand: true}, env()))
	}
}

// BenchmarkTarToTarNormalize is tar -> tar through normalize-timestamps,
// as the CLI runs it: every layer is rewritten (block by block) and
// rehashed while the tarball output writes it, named at its end (late
// layers). The goal is at most 1.3x BenchmarkTarToTar.
func BenchmarkTarToTarNormalize(b *testing.B) { benchNormalize(b, true) }

// BenchmarkTarToTarNormalizeSpooled is the same through the path other
// outputs get: each layer is rewritten into a temporary file first.
func BenchmarkTarToTarNormalizeSpooled(b *testing.B) { benchNormalize(b, false) }

func benchNormalize(b *testing.B, late bool) {
	image(b)
	out := filepath.Join(b.TempDir(), "out.tar")
	fenv := env()
	fenv.LateLayers = late
	b.SetBytes(imageSize)
	for b.Loop() {
		p := &engine.Pipeline{
			Input:   tarball.NewInput(image(b), env()),
			Filters: []stages.Filter{rewrite.New("normalize-timestamps", rewrite.Normalize{TS: 1}, fenv)},
			Output:  tarball.NewOutput(out, env()),
		}
		if err := p.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
