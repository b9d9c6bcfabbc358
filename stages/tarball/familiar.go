package tarball

import "github.com/occystrap/occystrap/uri"

// Familiar returns ref as `docker save` writes it in RepoTags: Docker Hub
// references lose their registry and "library/" prefix, others are kept
// whole ("busybox:latest", "ghcr.io/org/app:v1"). A reference that does not
// parse is returned unchanged.
func Familiar(ref string) string {
	r, err := uri.ParseReference(ref)
	if err != nil {
		return ref
	}
	return r.Familiar()
}
