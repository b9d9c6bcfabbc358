// Command occystrap moves container images between registries, Docker and
// Podman daemons, docker-save tarballs, directories, OCI runtime bundles and
// overlay mounts, transforming them on the way. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/occystrap/occystrap/cli"
)

// memoryLimit is the Go heap's soft limit unless GOMEMLIMIT says
// otherwise. occystrap streams, so its live heap is small whatever the
// image size; the limit stops the garbage collector from letting the
// churn of parallel compressors (pgzip allocates per block) grow the
// process to several times that before collecting.
const memoryLimit = 96 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
