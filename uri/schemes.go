package uri

// SchemeInfo describes one URI scheme for help text.
type SchemeInfo struct {
	Name    string       // canonical scheme name, e.g. "dir"
	Form    string       // syntax, e.g. "dir://PATH[?unique_names=true][&expand=true]"
	Summary string       // one-line description
	Aliases []string     // other accepted names, e.g. "directory"
	Options []OptionInfo // accepted query options, in a stable order
}

// FilterInfo describes one filter for help text.
type FilterInfo struct {
	Name    string       // canonical filter name, e.g. "normalize-timestamps"
	Form    string       // syntax, e.g. "exclude:pattern=GLOB"
	Summary string       // one-line description
	Options []OptionInfo // accepted options, in a stable order
}

// OptionInfo describes one option of a scheme or filter for help text.
type OptionInfo struct {
	Name string // option key
	Help string // one-line description
}

// refMode says whether and how a scheme names an image.
type refMode int

const (
	refNone     refMode = iota // no image reference (file schemes)
	refRegistry                // registry://HOST/IMAGE[:TAG][@DIGEST], required
	refDocker                  // docker://IMAGE[:TAG], required
	refOptional                // docker://IMAGE[:TAG], may be empty (ignored)
)

// schemeSpec drives parsing, validation and help for one scheme in one role.
type schemeSpec struct {
	name    string
	form    string
	summary string
	aliases []string
	file    bool // Path is a filesystem path (spec 3.1 step 5)
	ref     refMode
	opts    []optSpec
}

var (
	optSocket = optSpec{name: "socket", kind: kindNonEmpty,
		help: "path of the daemon's Unix socket (default /var/run/docker.sock; Podman: /run/podman/podman.sock)"}
	optUsername = optSpec{name: "username", kind: kindString,
		help: "registry user name (overrides --username)"}
	optPassword = optSpec{name: "password", kind: kindString,
		help: "registry password or token (overrides --password)"}
	optInsecure = optSpec{name: "insecure", kind: kindBool,
		help: "talk plain HTTP to the registry instead of HTTPS (boolean)"}
	optLayoutTag = optSpec{name: "tag", kind: kindNonEmpty,
		help: "the image to read: its org.opencontainers.image.ref.name in index.json (default: the only image)"}
	optLayoutTagDest = optSpec{name: "tag", kind: kindNonEmpty,
		help: "the org.opencontainers.image.ref.name to list the image under, replacing an image of that tag (default: the source's tag, or latest)"}
	optOS           = optSpec{name: "os", kind: kindNonEmpty, help: "operating system to pick from a multi-platform image (default linux)"}
	optArch         = optSpec{name: "arch", kind: kindNonEmpty, help: "CPU architecture to pick from a multi-platform image (default amd64)"}
	optArchitecture = optSpec{name: "architecture", kind: kindNonEmpty, aliasOf: "arch", help: "same as arch (arch wins if both are given)"}
	optVariant      = optSpec{name: "variant", kind: kindString, help: "CPU variant to pick, e.g. v8 (default none)"}
)

var sourceSchemes = []schemeSpec{
	{
		name:    "registry",
		form:    "registry://HOST[:PORT]/IMAGE[:TAG|@sha256:DIGEST][?OPTIONS]",
		summary: "pull an image from a Docker/OCI registry",
		ref:     refRegistry,
		opts: []optSpec{
			{name: "os", kind: kindNonEmpty, help: "operating system to pick from a multi-platform image (default linux)"},
			{name: "arch", kind: kindNonEmpty, help: "CPU architecture to pick from a multi-platform image (default amd64)"},
			{name: "architecture", kind: kindNonEmpty, aliasOf: "arch", help: "same as arch (arch wins if both are given)"},
			{name: "variant", kind: kindString, help: "CPU variant to pick, e.g. v8 (default none)"},
			optUsername,
			optPassword,
			optInsecure,
			{name: "max_workers", kind: kindPositiveInt, help: "number of layers to download in parallel (integer >= 1, default 4)"},
		},
	},
	{
		name:    "docker",
		form:    "docker://IMAGE[:TAG][?socket=PATH]",
		summary: "export an image from a local Docker or Podman daemon",
		ref:     refDocker,
		opts:    []optSpec{optSocket},
	},
	{
		name:    "dockerpush",
		form:    "dockerpush://IMAGE[:TAG][?socket=PATH]",
		summary: "export an image from a local Docker or Podman daemon by having it push to an embedded registry (layers arrive in parallel; the engine compresses each one)",
		ref:     refDocker,
		opts:    []optSpec{optSocket},
	},
	{
		name:    "tar",
		form:    "tar://PATH",
		summary: "read a docker-save format tarball",
		aliases: []string{"file"},
		file:    true,
	},
	{
		name:    "dir",
		form:    "dir://PATH[?image=NAME][&tag=TAG]",
		summary: "read an image from a directory written by dir:// (layer.tar files, manifests and catalog.json; several images may share it)",
		aliases: []string{"directory"},
		file:    true,
		opts: []optSpec{
			{name: "image", kind: kindNonEmpty, help: "the image to read, by its name in catalog.json (default: the only image, or the only one with tag)"},
			{name: "tag", kind: kindNonEmpty, help: "the image's tag in catalog.json (default: its only tag, else latest)"},
		},
	},
	{
		name:    "oci-layout",
		form:    "oci-layout://PATH[?tag=TAG][&os=OS&arch=ARCH&variant=V]",
		summary: "read an image from an OCI image layout directory (as skopeo's oci:PATH:TAG, umoci, crane, BuildKit)",
		aliases: []string{"ocidir"},
		file:    true,
		opts:    []optSpec{optLayoutTag, optOS, optArch, optArchitecture, optVariant},
	},
	{
		name:    "oci-archive",
		form:    "oci-archive://PATH[?tag=TAG][&os=OS&arch=ARCH&variant=V]",
		summary: "read an image from a tar archive of an OCI image layout",
		file:    true,
		opts:    []optSpec{optLayoutTag, optOS, optArch, optArchitecture, optVariant},
	},
}

var destSchemes = []schemeSpec{
	{
		name:    "tar",
		form:    "tar://PATH",
		summary: "write a docker-loadable (docker save format) tarball",
		aliases: []string{"file"},
		file:    true,
	},
	{
		name:    "dir",
		form:    "dir://PATH[?unique_names=true][&expand=true]",
		summary: "write the image's config, manifest and layers into a directory",
		aliases: []string{"directory"},
		file:    true,
		opts: []optSpec{
			{name: "unique_names", kind: kindBool, help: "name files by content so several images can share the directory (boolean)"},
			{name: "expand", kind: kindBool, help: "also unpack the layers into the directory (boolean)"},
		},
	},
	{
		name:    "oci",
		form:    "oci://PATH",
		summary: "write an OCI runtime bundle (for runc)",
		file:    true,
	},
	{
		name:    "oci-layout",
		form:    "oci-layout://PATH[?tag=TAG]",
		summary: "write the image into an OCI image layout directory, created or added to (layers keep their compression)",
		aliases: []string{"ocidir"},
		file:    true,
		opts:    []optSpec{optLayoutTagDest},
	},
	{
		name:    "oci-archive",
		form:    "oci-archive://PATH[?tag=TAG]",
		summary: "write the image as a tar archive of an OCI image layout",
		file:    true,
		opts:    []optSpec{optLayoutTagDest},
	},
	{
		name:    "mounts",
		form:    "mounts://PATH",
		summary: "write an overlayfs mount layout (needs root)",
		file:    true,
	},
	{
		name:    "docker",
		form:    "docker://[IMAGE:TAG][?socket=PATH]",
		summary: "load the image into a local Docker or Podman daemon (tagged with the destination IMAGE:TAG, or the source name when none is given)",
		ref:     refOptional,
		opts:    []optSpec{optSocket},
	},
	{
		name:    "registry",
		form:    "registry://HOST[:PORT]/IMAGE[:TAG][?OPTIONS]",
		summary: "push the image to a Docker/OCI registry",
		ref:     refRegistry,
		opts: []optSpec{
			optUsername,
			optPassword,
			optInsecure,
			{name: "compression", kind: kindEnum, enum: []string{"gzip", "zstd"}, help: "layer compression: gzip (default) or zstd"},
			{name: "max_workers", kind: kindPositiveInt, help: "number of layers to upload in parallel (integer >= 1, default 4)"},
		},
	},
}

// schemeAliases maps alias scheme names to canonical ones.
var schemeAliases = map[string]string{"file": "tar", "directory": "dir", "ocidir": "oci-layout"}

func schemeTable(role Role) []schemeSpec {
	if role == Dest {
		return destSchemes
	}
	return sourceSchemes
}

func lookupScheme(role Role, name string) (schemeSpec, bool) {
	for _, s := range schemeTable(role) {
		if s.name == name {
			return s, true
		}
	}
	return schemeSpec{}, false
}

func schemeNames(role Role) []string {
	t := schemeTable(role)
	names := make([]string, len(t))
	for i, s := range t {
		names[i] = s.name
	}
	return names
}

// Schemes lists the schemes valid for role, in a stable order, for help text.
func Schemes(role Role) []SchemeInfo {
	t := schemeTable(role)
	out := make([]SchemeInfo, len(t))
	for i, s := range t {
		out[i] = SchemeInfo{
			Name:    s.name,
			Form:    s.form,
			Summary: s.summary,
			Aliases: append([]string(nil), s.aliases...),
			Options: optionInfos(s.opts),
		}
	}
	return out
}

// filterSpec drives parsing, validation and help for one filter.
type filterSpec struct {
	name    string
	form    string
	summary string
	opts    []optSpec
}

var filterTable = []filterSpec{
	{
		name:    "normalize-timestamps",
		form:    "normalize-timestamps[:ts=N]",
		summary: "set the mtime of every file in every layer to N (default 0) for reproducible layers",
		opts: []optSpec{
			{name: "ts", kind: kindNonNegInt, aliasOf: "timestamp", help: "the time to set, in Unix seconds (integer >= 0, default 0)"},
			{name: "timestamp", kind: kindNonNegInt, help: "same as ts (timestamp wins if both are given)"},
		},
	},
	{
		name:    "search",
		form:    "search:pattern=P[,regex=true][,script_friendly=true]",
		summary: "print the layer files whose path matches a pattern; the image passes through unchanged",
		opts: []optSpec{
			{name: "pattern", kind: kindString, required: true, help: "glob (matched against the path or its basename) or regular expression; required"},
			{name: "regex", kind: kindBool, help: "treat pattern as a regular expression (boolean)"},
			{name: "use_regex", kind: kindBool, aliasOf: "regex", help: "same as regex (regex wins if both are given)"},
			{name: "script_friendly", kind: kindBool, help: "print IMAGE:TAG:LAYER:PATH lines (boolean)"},
			{name: "script-friendly", kind: kindBool, aliasOf: "script_friendly", help: "same as script_friendly (script_friendly wins if both are given)"},
		},
	},
	{
		name:    "exclude",
		form:    "exclude:pattern=GLOB[,GLOB...]",
		summary: "drop layer files whose path matches any of the comma-separated globs",
		opts: []optSpec{
			{name: "pattern", kind: kindString, required: true, help: "comma-separated globs matched against the full path; required"},
		},
	},
	{
		name:    "inspect",
		form:    "inspect:file=PATH",
		summary: "append one JSON line describing the layers at this point of the chain to a file",
		opts: []optSpec{
			{name: "file", kind: kindString, required: true, help: "file to append the JSON line to; required"},
		},
	},
}

func lookupFilter(name string) (filterSpec, bool) {
	for _, f := range filterTable {
		if f.name == name {
			return f, true
		}
	}
	return filterSpec{}, false
}

func filterNames() []string {
	names := make([]string, len(filterTable))
	for i, f := range filterTable {
		names[i] = f.name
	}
	return names
}

// Filters lists the known filters, in a stable order, for help text.
func Filters() []FilterInfo {
	out := make([]FilterInfo, len(filterTable))
	for i, f := range filterTable {
		out[i] = FilterInfo{
			Name:    f.name,
			Form:    f.form,
			Summary: f.summary,
			Options: optionInfos(f.opts),
		}
	}
	return out
}
