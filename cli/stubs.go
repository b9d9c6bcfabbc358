package cli

import "fmt"

// ProxyCmd is `occystrap proxy --downstream REGISTRY`.
type ProxyCmd struct {
	Listen           string   `short:"l" default:"127.0.0.1:5050" help:"Address to listen on, HOST:PORT."`
	Downstream       string   `short:"d" required:"" help:"Registry (and optional path prefix) to push filtered images to."`
	Filter           []string `short:"f" sep:"none" help:"Filter to apply to every image; repeatable."`
	Concurrency      int      `short:"c" default:"4" help:"Images processed at once."`
	Upstream         string   `short:"u" help:"Registry to pull through from, as [USER:PASS@]HOST."`
	UpstreamUsername string   `env:"OCCYSTRAP_UPSTREAM_USERNAME" help:"User name for the upstream registry."`
	UpstreamPassword string   `env:"OCCYSTRAP_UPSTREAM_PASSWORD" help:"Password for the upstream registry."`
}

// Run is not implemented yet.
func (p *ProxyCmd) Run(a *app) error {
	return fmt.Errorf("the proxy command is not implemented yet in this version of occystrap")
}
