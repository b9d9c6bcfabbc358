// Package cli is occystrap's command line: kong commands over the stages
// library, logging with zerolog and progress with mpb. It is the only
// package that knows about terminals.
package cli

import (
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
	"math"

	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/alecthomas/kong"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// Version is the program's version, set at build time with
// -ldflags "-X github.com/occystrap/occystrap/cli.Version=...".
var Version = "0.1.0-dev"

// Exit codes, as the original (click) used them.
const (
	exitOK    = 0
	exitError = 1 // the work failed
	exitUsage = 2 // the command line is wrong
)

// defaultBudget bounds the bytes held in flight by all stages together
// (prefetched or buffered layer data). 32 MiB keeps peak memory well under
// the 64 MiB goal while leaving room for parallel transfers.
const defaultBudget = 32 << 20

// Globals are the options that go before (or after) the command name, as
// in the original tool, each bound to its OCCYSTRAP_* variable where the
// original had one.
type Globals struct {
	Verbose       bool    `help:"Log per-layer detail (debug level) to stderr."`
	Debug         bool    `help:"Log everything, including per-request detail (trace level), to stderr."`
	OS            string  `name:"os" default:"linux" help:"Operating system to pick from a multi-platform image."`
	Architecture  string  `default:"amd64" help:"CPU architecture to pick from a multi-platform image."`
	Variant       string  `help:"CPU variant to pick from a multi-platform image (for example v8)."`
	Username      string  `env:"OCCYSTRAP_USERNAME" help:"Registry user name."`
	Password      string  `env:"OCCYSTRAP_PASSWORD" help:"Registry password or token."`
	Insecure      bool    `help:"Talk plain HTTP to registries."`
	Compression   string  `env:"OCCYSTRAP_COMPRESSION" enum:"gzip,zstd," default:"" help:"Layer compression for registry pushes: gzip (default) or zstd."`
	Parallel      int     `short:"j" env:"OCCYSTRAP_PARALLEL" default:"4" help:"Layers transferred or compressed at once."`
	TempDir       string  `env:"OCCYSTRAP_TEMP_DIR" type:"path" help:"Directory for temporary files (default: the system's)."`
	LayerCache    string  `env:"OCCYSTRAP_LAYER_CACHE" type:"path" help:"JSON file caching pushed layers across runs (registry destinations)."`
	OutputFormat  string  `short:"O" enum:"text,json" default:"text" help:"Format of command results on stdout: text or json."`
	Retries       int     `env:"OCCYSTRAP_RETRIES" default:"3" help:"Retries for transient network failures."`
	Stats         bool    `help:"Print per-stage statistics (elements, bytes, busy and waiting time) to stderr at the end."`
	RateLimit     float64 `env:"OCCYSTRAP_RATE_LIMIT" help:"Most registry requests per second, over all connections and retries (default: no limit)."`
	Verify        bool    `default:"true" negatable:"" help:"After process, read the output back and check it (tarball, directory, registry); --no-verify skips it."`
	VerifyFull    bool    `help:"Verify, and also read every layer through as a tar and check its diff ID."`
	ImageParallel int     `short:"J" default:"3" help:"Images processed at once by multi-image sources; accepted for compatibility (every source of this version is one image)."`
	CPUProfile    string  `name:"cpu-profile" hidden:"" type:"path" help:"Write a Go CPU profile to this file."`
}

// CLI is the whole command line.
type CLI struct {
	Globals

	Process ProcessCmd `cmd:"" help:"Copy an image from SOURCE to DESTINATION, applying filters on the way."`
	Search  SearchCmd  `cmd:"" help:"Search an image's layers for files matching a pattern."`
	Info    InfoCmd    `cmd:"" help:"Show an image's metadata without downloading its layers."`
	Check   CheckCmd   `cmd:"" help:"Check an image's validity; exits non-zero when an error is found."`
	Proxy   ProxyCmd   `cmd:"" help:"Run a filtering registry proxy."`
	Version VersionCmd `cmd:"" help:"Print the version."`

	Legacy
}

// app is what every command's Run gets.
type app struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	log    zerolog.Logger
	g      *Globals
	tty    bool
	// limiter paces registry requests (--rate-limit), shared by every
	// client of the run; nil for none.
	limiter *rate.Limiter
}

// env builds the stages' environment from the global options.
func (a *app) env() stages.Env {
	return stages.Env{
		Log:          a.log,
		Parallel:     max(a.g.Parallel, 1),
		Budget:       flow.NewBudget(defaultBudget),
		TempDir:      a.g.TempDir,
		LayerCache:   a.g.LayerCache,
		Platform:     ocispec.Platform{OS: a.g.OS, Architecture: a.g.Architecture, Variant: a.g.Variant},
		Username:     a.g.Username,
		Password:     a.g.Password,
		Insecure:     a.g.Insecure,
		Compression:  a.g.Compression,
		Retries:      a.g.Retries,
		Limiter:      a.limiter,
		Progress:     newProgress(a),
		Stdout:       a.stdout,
		OutputFormat: a.g.OutputFormat,
	}
}

// Run runs the command line args and returns the process exit code. Results
// go to stdout, logs and progress to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c CLI
	exitCode := -1
	parser, err := kong.New(&c,
		kong.Name("occystrap"),
		kong.Description("Move container images between registries, Docker daemons, tarballs and directories, transforming them on the way.\n\n"+schemesHelp()),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exitCode = code }),
		kong.BindTo(ctx, (*context.Context)(nil)),
	)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return exitError
	}
	kctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help or --version
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			fmt.Fprintf(stderr, "Run 'occystrap --help' for usage.\n")
		}
		return exitUsage
	}
	a := &app{ctx: ctx, stdout: stdout, stderr: stderr, g: &c.Globals, tty: isTerminal(stderr)}
	a.log = newLogger(stderr, &c.Globals, a.tty)
	switch r := c.RateLimit; {
	case r < 0 || math.IsNaN(r) || math.IsInf(r, 0):
		fmt.Fprintf(stderr, "Error: --rate-limit %v: give requests per second, a positive number (or 0 for no limit)\n", r)
		return exitUsage
	case r > 0:
		a.limiter = rate.NewLimiter(rate.Limit(r), max(1, int(math.Ceil(r))))
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return exitError
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return exitError
		}
		defer pprof.StopCPUProfile()
	}
	if err := kctx.Run(a); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return exitUsage
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			fmt.Fprintln(stderr, "Error: interrupted")
			return 130
		}
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return exitError
	}
	return exitOK
}

// usageError is an error in the command's arguments (exit code 2).
type usageError struct{ error }

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	// A character device is not enough (/dev/null is one): ask for the
	// terminal's settings, which only a terminal has.
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil && os.Getenv("TERM") != "dumb"
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version to stdout.
func (VersionCmd) Run(a *app) error {
	fmt.Fprintf(a.stdout, "occystrap %s\n", Version)
	return nil
}
