package cli

import (
	"fmt"
	"net/url"
	"strings"
)

// Legacy holds the original tool's older commands. They still work, as
// thin translations to process and search, and warn that they are
// deprecated.
type Legacy struct {
	FetchToTarfile      FetchToTarfileCmd      `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process registry://REGISTRY/IMAGE:TAG tar://TARFILE"`
	FetchToExtracted    FetchToExtractedCmd    `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process registry://REGISTRY/IMAGE:TAG dir://PATH"`
	FetchToOci          FetchToOciCmd          `cmd:"" name:"fetch-to-oci" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process registry://REGISTRY/IMAGE:TAG oci://PATH"`
	FetchToMounts       FetchToMountsCmd       `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process registry://REGISTRY/IMAGE:TAG mounts://PATH"`
	TarfileToExtracted  TarfileToExtractedCmd  `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process tar://TARFILE dir://PATH"`
	DockerToTarfile     DockerToTarfileCmd     `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process docker://IMAGE:TAG tar://TARFILE"`
	DockerToExtracted   DockerToExtractedCmd   `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process docker://IMAGE:TAG dir://PATH"`
	DockerToOci         DockerToOciCmd         `cmd:"" name:"docker-to-oci" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process docker://IMAGE:TAG oci://PATH"`
	SearchLayers        SearchLayersCmd        `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: search registry://REGISTRY/IMAGE:TAG PATTERN"`
	SearchLayersTarfile SearchLayersTarfileCmd `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: search tar://TARFILE PATTERN"`
	SearchLayersDocker  SearchLayersDockerCmd  `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: search docker://IMAGE:TAG PATTERN"`
	RecreateImage       RecreateImageCmd       `cmd:"" group:"Legacy commands (deprecated):" help:"(Deprecated) Use: process dir://PATH?image=IMAGE&tag=TAG tar://TARFILE"`
}

// RegistryArgs are the positional arguments of the legacy registry commands.
type RegistryArgs struct {
	Registry string `arg:"" help:"Registry host, for example registry-1.docker.io."`
	Image    string `arg:"" help:"Image name, for example library/busybox."`
	Tag      string `arg:"" help:"Image tag."`
}

func (r RegistryArgs) uri() string {
	return "registry://" + r.Registry + "/" + r.Image + ":" + r.Tag
}

// DockerArgs are the positional arguments of the legacy docker commands.
type DockerArgs struct {
	Image string `arg:"" help:"Image name."`
	Tag   string `arg:"" help:"Image tag."`
}

// SocketFlag is the legacy docker commands' --socket.
type SocketFlag struct {
	Socket string `default:"/var/run/docker.sock" help:"Docker or Podman API socket."`
}

func (d DockerArgs) uri(s SocketFlag) string {
	return "docker://" + d.Image + ":" + d.Tag + "?socket=" + url.QueryEscape(s.Socket)
}

// NormalizeFlags are the legacy --normalize-timestamps options.
type NormalizeFlags struct {
	NormalizeTimestamps bool  `help:"Set every file's timestamps to --timestamp."`
	Timestamp           int64 `default:"0" help:"Unix time for --normalize-timestamps."`
}

func (n NormalizeFlags) filters() []string {
	if !n.NormalizeTimestamps {
		return nil
	}
	return []string{fmt.Sprintf("normalize-timestamps:ts=%d", n.Timestamp)}
}

// ExtractFlags are the legacy extraction options.
type ExtractFlags struct {
	UseUniqueNames bool `help:"Name the manifest after the image so that images can share the directory."`
	Expand         bool `help:"Also write the merged filesystem."`
}

func (e ExtractFlags) uri(path string) string {
	return fileURI("dir", path) + fmt.Sprintf("?unique_names=%t&expand=%t", e.UseUniqueNames, e.Expand)
}

// fileURI makes a file-scheme URI of a path, escaping what the URI parser
// would otherwise read as a query or an escape. A relative path is written
// ./PATH: the parser reads SCHEME://localhost/PATH as the absolute /PATH,
// and a bare SCHEME://PATH would take a first component "localhost" as
// that host.
func fileURI(scheme, path string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")
	if strings.HasPrefix(path, "/") || strings.HasPrefix(path, "./") || strings.HasPrefix(path, "../") {
		return scheme + "://" + r.Replace(path)
	}
	return scheme + "://./" + r.Replace(path)
}

// queryValue escapes a URI query value, leaving the "/" and ":" of image
// names readable.
func queryValue(v string) string {
	return strings.NewReplacer("%2F", "/", "%3A", ":").Replace(url.QueryEscape(v))
}

func (a *app) deprecated(name, instead string) {
	a.log.Warn().Msgf("%s is deprecated; use: occystrap %s", name, instead)
}

func (a *app) legacyProcess(name, src, dst string, filters []string) error {
	a.deprecated(name, "process "+src+" "+dst)
	return a.process(src, dst, filters)
}

// FetchToTarfileCmd is the legacy fetch-to-tarfile.
type FetchToTarfileCmd struct {
	RegistryArgs
	Tarfile string `arg:"" help:"Tarball to write."`
	NormalizeFlags
}

// Run translates to process.
func (c *FetchToTarfileCmd) Run(a *app) error {
	return a.legacyProcess("fetch-to-tarfile", c.uri(), fileURI("tar", c.Tarfile), c.filters())
}

// FetchToExtractedCmd is the legacy fetch-to-extracted.
type FetchToExtractedCmd struct {
	RegistryArgs
	Path string `arg:"" help:"Directory to write."`
	ExtractFlags
}

// Run translates to process.
func (c *FetchToExtractedCmd) Run(a *app) error {
	return a.legacyProcess("fetch-to-extracted", c.RegistryArgs.uri(), c.ExtractFlags.uri(c.Path), nil)
}

// FetchToOciCmd is the legacy fetch-to-oci.
type FetchToOciCmd struct {
	RegistryArgs
	Path string `arg:"" help:"Bundle directory to write."`
}

// Run translates to process.
func (c *FetchToOciCmd) Run(a *app) error {
	return a.legacyProcess("fetch-to-oci", c.uri(), fileURI("oci", c.Path), nil)
}

// FetchToMountsCmd is the legacy fetch-to-mounts.
type FetchToMountsCmd struct {
	RegistryArgs
	Path string `arg:"" help:"Directory to write."`
}

// Run translates to process.
func (c *FetchToMountsCmd) Run(a *app) error {
	return a.legacyProcess("fetch-to-mounts", c.uri(), fileURI("mounts", c.Path), nil)
}

// TarfileToExtractedCmd is the legacy tarfile-to-extracted.
type TarfileToExtractedCmd struct {
	Tarfile string `arg:"" help:"Tarball to read."`
	Path    string `arg:"" help:"Directory to write."`
	ExtractFlags
}

// Run translates to process.
func (c *TarfileToExtractedCmd) Run(a *app) error {
	return a.legacyProcess("tarfile-to-extracted", fileURI("tar", c.Tarfile), c.ExtractFlags.uri(c.Path), nil)
}

// DockerToTarfileCmd is the legacy docker-to-tarfile.
type DockerToTarfileCmd struct {
	DockerArgs
	Tarfile string `arg:"" help:"Tarball to write."`
	SocketFlag
	NormalizeFlags
}

// Run translates to process.
func (c *DockerToTarfileCmd) Run(a *app) error {
	return a.legacyProcess("docker-to-tarfile", c.DockerArgs.uri(c.SocketFlag), fileURI("tar", c.Tarfile), c.filters())
}

// DockerToExtractedCmd is the legacy docker-to-extracted.
type DockerToExtractedCmd struct {
	DockerArgs
	Path string `arg:"" help:"Directory to write."`
	SocketFlag
	ExtractFlags
}

// Run translates to process.
func (c *DockerToExtractedCmd) Run(a *app) error {
	return a.legacyProcess("docker-to-extracted", c.DockerArgs.uri(c.SocketFlag), c.ExtractFlags.uri(c.Path), nil)
}

// DockerToOciCmd is the legacy docker-to-oci.
type DockerToOciCmd struct {
	DockerArgs
	Path string `arg:"" help:"Bundle directory to write."`
	SocketFlag
}

// Run translates to process.
func (c *DockerToOciCmd) Run(a *app) error {
	return a.legacyProcess("docker-to-oci", c.DockerArgs.uri(c.SocketFlag), fileURI("oci", c.Path), nil)
}

// SearchFlags are the legacy search options.
type SearchFlags struct {
	Regex          bool `help:"Treat PATTERN as a regular expression."`
	ScriptFriendly bool `help:"Print one IMAGE:TAG:LAYER:PATH line per match."`
}

func (a *app) legacySearch(name, src, pattern string, f SearchFlags) error {
	a.deprecated(name, "search "+src+" "+pattern)
	s := SearchCmd{Source: src, Pattern: pattern, Regex: f.Regex, ScriptFriendly: f.ScriptFriendly}
	return s.Run(a)
}

// SearchLayersCmd is the legacy search-layers.
type SearchLayersCmd struct {
	RegistryArgs
	Pattern string `arg:"" help:"Pattern to search for."`
	SearchFlags
}

// Run translates to search.
func (c *SearchLayersCmd) Run(a *app) error {
	return a.legacySearch("search-layers", c.uri(), c.Pattern, c.SearchFlags)
}

// SearchLayersTarfileCmd is the legacy search-layers-tarfile.
type SearchLayersTarfileCmd struct {
	Tarfile string `arg:"" help:"Tarball to search."`
	Pattern string `arg:"" help:"Pattern to search for."`
	SearchFlags
}

// Run translates to search.
func (c *SearchLayersTarfileCmd) Run(a *app) error {
	return a.legacySearch("search-layers-tarfile", fileURI("tar", c.Tarfile), c.Pattern, c.SearchFlags)
}

// SearchLayersDockerCmd is the legacy search-layers-docker.
type SearchLayersDockerCmd struct {
	DockerArgs
	Pattern string `arg:"" help:"Pattern to search for."`
	SocketFlag
	SearchFlags
}

// Run translates to search.
func (c *SearchLayersDockerCmd) Run(a *app) error {
	return a.legacySearch("search-layers-docker", c.DockerArgs.uri(c.SocketFlag), c.Pattern, c.SearchFlags)
}

// RecreateImageCmd is the legacy recreate-image.
type RecreateImageCmd struct {
	Path    string `arg:"" help:"Directory written by dir:// (or fetch-to-extracted), usually with unique names."`
	Image   string `arg:"" help:"Image name in catalog.json."`
	Tag     string `arg:"" help:"Image tag in catalog.json."`
	Tarfile string `arg:"" help:"Tarball to write."`
	NormalizeFlags
}

// Run translates to process. Unlike the original, the tarball is a
// docker-loadable v1.2 one: layers as <name>/layer.tar and the config
// under its digest.
func (c *RecreateImageCmd) Run(a *app) error {
	src := fileURI("dir", c.Path) + "?image=" + queryValue(c.Image) + "&tag=" + queryValue(c.Tag)
	return a.legacyProcess("recreate-image", src, fileURI("tar", c.Tarfile), c.filters())
}
