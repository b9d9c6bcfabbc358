package uri

import (
	"regexp"
	"strings"
)

// Reference is the image named by a registry://, docker:// or dockerpush://
// URI.
type Reference struct {
	Registry   string // host[:port] for registry:// (user info removed); "" for docker/dockerpush
	Repository string // e.g. "library/busybox", "org/app"
	Tag        string // "" when only a digest is given; "latest" when neither
	Digest     string // "sha256:<64 lower-case hex>" when given as NAME@sha256:...
}

// dockerHub is the registry host Normalized uses for Docker Hub.
const dockerHub = "registry-1.docker.io"

var (
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// Reference returns the image named by a registry, docker or dockerpush URI.
//
// For registry:// the registry is the host without user info, and the rest
// of the path, minus its leading "/", names the image. For docker:// and
// dockerpush:// the host and path together name the image. The name is
// IMAGE[:TAG][@sha256:DIGEST]; the tag follows the last ":" unless that ":"
// comes before a "/" (a registry port, as in "localhost:5000/img"). With
// neither tag nor digest the tag is "latest". Unlike the original, digests
// are understood rather than mistaken for tags.
//
// Errors wrap ErrSyntax (a malformed reference, or a scheme that names no
// image) or ErrMissingPath (no registry host or no image name).
func (u URI) Reference() (Reference, error) {
	var r Reference
	var name, example string
	switch u.Scheme {
	case "registry":
		r.Registry = u.Host
		if i := strings.LastIndexByte(u.Host, '@'); i >= 0 {
			r.Registry = u.Host[i+1:]
		}
		example = "registry://docker.io/library/busybox:latest"
		if r.Registry == "" {
			return Reference{}, newErr(ErrMissingPath,
				"registry:// URI requires a registry host, for example %s", example)
		}
		name = strings.TrimLeft(u.Path, "/")
	case "docker", "dockerpush":
		example = u.Scheme + "://busybox:latest"
		name = strings.TrimLeft(unquote(u.Host, false)+u.Path, "/")
	default:
		return Reference{}, newErr(ErrSyntax, "%s:// URI does not name an image", u.Scheme)
	}
	if name == "" {
		return Reference{}, newErr(ErrMissingPath, "%s:// URI requires an image name, for example %s",
			u.Scheme, example)
	}
	repo, tag, digest, err := splitReference(name)
	if err != nil {
		return Reference{}, err
	}
	if repo == "" {
		return Reference{}, newErr(ErrMissingPath, "%s:// URI requires an image name, for example %s",
			u.Scheme, example)
	}
	r.Repository, r.Tag, r.Digest = repo, tag, digest
	return r, nil
}

// ParseReference parses an image name, IMAGE[:TAG][@sha256:DIGEST], as the
// docker:// scheme does (so Registry is "" and a leading "host:port/" stays
// in Repository). It is a convenience for names that come from elsewhere,
// such as a tarball's RepoTags.
func ParseReference(name string) (Reference, error) {
	repo, tag, digest, err := splitReference(name)
	if err != nil {
		return Reference{}, err
	}
	if repo == "" {
		return Reference{}, newErr(ErrMissingPath, "image reference %q has no image name", name)
	}
	return Reference{Repository: repo, Tag: tag, Digest: digest}, nil
}

// splitReference splits IMAGE[:TAG][@DIGEST] and validates the parts.
func splitReference(s string) (repo, tag, digest string, err error) {
	name, dig, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		digest = strings.ToLower(dig)
		if !digestRE.MatchString(digest) {
			return "", "", "", newErr(ErrSyntax,
				"invalid digest %q in image reference %q: want sha256: followed by 64 hex digits", dig, s)
		}
	}
	repo = name
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		repo, tag = name[:i], name[i+1:]
		if !tagRE.MatchString(tag) {
			return "", "", "", newErr(ErrSyntax,
				"invalid tag %q in image reference %q: want up to 128 letters, digits, _, . or - (not starting with . or -)",
				tag, s)
		}
	}
	if repo != "" {
		if strings.HasPrefix(repo, "/") || strings.HasSuffix(repo, "/") || strings.Contains(repo, "//") {
			return "", "", "", newErr(ErrSyntax, "invalid image name %q in image reference %q: empty path component", repo, s)
		}
		if strings.ContainsFunc(repo, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' || r == '?' }) {
			return "", "", "", newErr(ErrSyntax, "invalid image name %q in image reference %q: contains a space, control character, # or ?", repo, s)
		}
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	return repo, tag, digest, nil
}

// String returns "registry/repository:tag", with "@digest" appended when
// there is one (and ":tag" left out when there is no tag), and without
// "registry/" when Registry is "".
func (r Reference) String() string {
	s := r.Repository
	if r.Registry != "" {
		s = r.Registry + "/" + s
	}
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// IsDockerHub reports whether host names Docker Hub (docker.io,
// index.docker.io or registry-1.docker.io, case-insensitively).
func IsDockerHub(host string) bool {
	switch strings.ToLower(host) {
	case "docker.io", "index.docker.io", dockerHub:
		return true
	}
	return false
}

// Normalized returns r as it must be used to talk to its registry: a Docker
// Hub registry becomes registry-1.docker.io, and a Docker Hub repository
// without "/" gets "library/" prefixed. References to other registries, and
// docker:// references (Registry ""), are returned unchanged.
func (r Reference) Normalized() Reference {
	if !IsDockerHub(r.Registry) {
		return r
	}
	r.Registry = dockerHub
	if !strings.Contains(r.Repository, "/") {
		r.Repository = "library/" + r.Repository
	}
	return r
}

// Familiar returns the name as `docker save` writes it in RepoTags. Docker
// Hub images lose the registry and an official image's "library/"
// ("busybox:latest", "myorg/app:v1"); other registries keep theirs
// ("ghcr.io/org/app:v1", "127.0.0.1:5000/x:y"). A docker:// reference
// (Registry "") keeps its repository as given, minus a leading Docker Hub
// host and "library/". The suffix is ":tag", or "@digest" when there is only
// a digest.
func (r Reference) Familiar() string {
	name := r.Repository
	switch {
	case r.Registry == "":
		if host, rest, ok := strings.Cut(name, "/"); ok && IsDockerHub(host) {
			name = rest
		}
		name = trimLibrary(name)
	case IsDockerHub(r.Registry):
		name = trimLibrary(name)
	default:
		name = r.Registry + "/" + name
	}
	switch {
	case r.Tag != "":
		return name + ":" + r.Tag
	case r.Digest != "":
		return name + "@" + r.Digest
	}
	return name
}

// trimLibrary drops "library/" from an official image's name, but not from
// deeper names such as "library/a/b", as Docker does.
func trimLibrary(name string) string {
	if rest, ok := strings.CutPrefix(name, "library/"); ok && !strings.Contains(rest, "/") {
		return rest
	}
	return name
}
