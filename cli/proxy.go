package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/catalog"
	"github.com/occystrap/occystrap/stages/proxy"
	"github.com/occystrap/occystrap/stages/registry"
	"github.com/occystrap/occystrap/uri"
)

// shutdownWait is how long the proxy lets images being processed finish
// once asked to stop, as the original did.
const shutdownWait = 300 * time.Second

// ProxyCmd is `occystrap proxy --downstream REGISTRY`.
type ProxyCmd struct {
	Listen           string   `short:"l" default:"127.0.0.1:5050" help:"Address to listen on, HOST:PORT (plain HTTP; a HOST alone means port 5050)."`
	Downstream       string   `short:"d" required:"" help:"Registry to push filtered images to, as HOST[:PORT][/PREFIX]; a prefix goes before every repository name."`
	Filter           []string `short:"f" sep:"none" help:"Filter to apply to every image, as in process; repeat for a chain."`
	Concurrency      int      `short:"c" default:"4" help:"Images processed at once."`
	Upstream         string   `short:"u" help:"Turn on pull-through: images the downstream lacks are copied from this registry, [USER:PASS@]HOST[:PORT][/PREFIX], through the filters."`
	UpstreamUsername string   `env:"OCCYSTRAP_UPSTREAM_USERNAME" help:"User name for the upstream registry (overrides one in --upstream)."`
	UpstreamPassword string   `env:"OCCYSTRAP_UPSTREAM_PASSWORD" help:"Password for the upstream registry (overrides one in --upstream)."`
}

// Help explains the proxy under `occystrap proxy --help`.
func (p *ProxyCmd) Help() string {
	return `A registry that clients push to (docker push, skopeo, buildx): every image pushed
is sent through the filters to the downstream registry, and the client's push
completes only once it is there (500 if that failed). Multi-platform pushes
work: the index is rewritten to the filtered images. With --upstream, pulls of
images the downstream lacks copy them from the upstream through the filters
first; later pulls are served from the downstream.

The proxy speaks plain HTTP and has no authentication: Docker allows that for
127.0.0.0/8 only, unless the address is in the daemon's insecure-registries.
--username/--password, --insecure, --compression, -j and --layer-cache apply
to the downstream. Stop it with Ctrl+C or SIGTERM: images being processed get
up to 5 minutes to finish.

Examples:
  occystrap proxy -d registry.example.com/mirror -f normalize-timestamps
  docker push 127.0.0.1:5050/app:v1    # lands as registry.example.com/mirror/app:v1
  occystrap proxy -d 127.0.0.1:5000 -u registry-1.docker.io -f exclude:pattern=**/*.pyc`
}

// Run starts the proxy and serves until interrupted.
func (p *ProxyCmd) Run(a *app) error {
	listen, err := listenAddress(p.Listen)
	if err != nil {
		return err
	}
	specs := make([]uri.Filter, 0, len(p.Filter))
	for _, s := range p.Filter {
		spec, err := uri.ParseFilter(s)
		if err != nil {
			return err
		}
		specs = append(specs, spec)
	}
	env := a.env()
	env.Progress = &logProgress{log: a.log} // a server logs; no bars
	// Build the chain once now so that a bad filter fails at start-up,
	// not at the first push.
	newFilters := func() ([]stages.Filter, []string, error) {
		var fs []stages.Filter
		var names []string
		for _, spec := range specs {
			f, err := catalog.NewFilter(spec, env)
			if err != nil {
				return nil, nil, err
			}
			fs = append(fs, f)
			names = append(names, "filter "+spec.Name)
		}
		return fs, names, nil
	}
	if _, _, err := newFilters(); err != nil {
		return err // exit 1, as any start-up error of the original's proxy
	}
	upstream, user, pass := splitUpstream(p.Upstream)
	if p.UpstreamUsername != "" {
		user = p.UpstreamUsername
	}
	if p.UpstreamPassword != "" {
		pass = p.UpstreamPassword
	}
	opts := proxy.Options{
		Listen: listen, Downstream: p.Downstream, Upstream: upstream,
		UpstreamUsername: user, UpstreamPassword: pass,
		Concurrency: p.Concurrency, NewFilters: newFilters, Env: env,
	}
	if a.g.LayerCache != "" {
		opts.Cache = registry.OpenLayerCache(a.g.LayerCache, a.log)
	}
	px, err := proxy.Start(opts)
	if err != nil {
		return err
	}
	shown := listen
	if strings.HasSuffix(listen, ":0") {
		shown = px.Addr() // the port the system chose
	}
	a.log.Info().Msgf("Proxy registry listening on %s", shown)
	if upstream == "" {
		a.log.Info().Msg("Ready to receive pushes. Press Ctrl+C to stop.")
	} else {
		a.log.Info().Msg("Ready for pushes and pulls. Press Ctrl+C to stop.")
	}
	<-a.ctx.Done()
	a.log.Info().Msg("Stopping: waiting for images being processed to finish")
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	err = px.Shutdown(ctx)
	s := px.Stats()
	a.log.Info().Msgf("Proxy stopped. Pushed %d images (%d failed). Pulled %d images (%d cache hits, %d misses).",
		s.Pushed, s.Failed, s.Pulled, s.Hits, s.Misses)
	return err
}

// listenAddress reads --listen as the original did: split at the last
// colon, the port an integer; a host alone gets port 5050.
func listenAddress(s string) (string, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return net.JoinHostPort(s, "5050"), nil
	}
	host, port := s[:i], s[i+1:]
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("invalid port: %s", port)
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port), nil
}

// splitUpstream reads --upstream, [USER:PASS@]HOST: credentials before
// the last "@", split at their first ":".
func splitUpstream(s string) (host, user, pass string) {
	i := strings.LastIndex(s, "@")
	if i < 0 {
		return s, "", ""
	}
	user, pass, _ = strings.Cut(s[:i], ":")
	return s[i+1:], user, pass
}
