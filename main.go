// Command occystrap moves container images between registries, Docker and
// Podman daemons, docker-save tarballs, directories, OCI runtime bundles and
// overlay mounts, transforming them on the way. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/occystrap/occystrap/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
