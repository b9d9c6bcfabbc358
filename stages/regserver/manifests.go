package regserver

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxManifest bounds a manifest's size, as the reference registry does.
const maxManifest = 4 << 20

// dockerManifestV2 is Docker's schema 2 manifest media type, the default
// when a client says nothing.
const dockerManifestV2 = "application/vnd.docker.distribution.manifest.v2+json"

// Manifest is a manifest a client pushed.
type Manifest struct {
	Repo      string        // repository it was pushed to
	Reference string        // the tag or digest it was pushed under
	MediaType string        // from Content-Type, else the body's mediaType
	Digest    digest.Digest // of Raw
	Raw       []byte
}

// IsIndex reports whether the manifest is a Docker manifest list or an
// OCI index.
func (m *Manifest) IsIndex() bool {
	switch m.MediaType {
	case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	var probe struct {
		Manifests json.RawMessage `json:"manifests"`
	}
	return json.Unmarshal(m.Raw, &probe) == nil && probe.Manifests != nil
}

// manifest answers PUT, GET and HEAD of a manifest.
func (s *Server) manifest(w http.ResponseWriter, r *http.Request, name, ref string) error {
	refDigest, refErr := digest.Parse(ref)
	if refErr != nil && !tagRE.MatchString(ref) {
		return &Error{Status: http.StatusBadRequest, Code: "MANIFEST_INVALID", Message: fmt.Sprintf("%q is neither a tag nor a digest", ref)}
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		m, ok := s.Manifest(name, ref)
		if !ok {
			return &Error{Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN", Message: fmt.Sprintf("manifest %s:%s is unknown", name, ref)}
		}
		setHeader(w, "Content-Type", m.MediaType)
		setHeader(w, "Docker-Content-Digest", m.Digest.String())
		setHeader(w, "ETag", `"`+m.Digest.String()+`"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(m.Raw)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(m.Raw)
		}
		return nil
	case http.MethodPut:
	default:
		return errMethod
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "MANIFEST_INVALID", Message: fmt.Sprintf("reading the manifest: %v", err)}
	}
	if len(raw) > maxManifest {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "SIZE_INVALID", Message: fmt.Sprintf("a manifest may have at most %d bytes", maxManifest)}
	}
	var body struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "MANIFEST_INVALID", Message: fmt.Sprintf("the manifest is not JSON: %v", err)}
	}
	alg := digest.SHA256
	if refErr == nil {
		alg = refDigest.Algorithm()
		if !alg.Available() {
			return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf("unsupported digest algorithm %q", alg)}
		}
	}
	m := &Manifest{Repo: name, Reference: ref, MediaType: r.Header.Get("Content-Type"), Digest: alg.FromBytes(raw), Raw: raw}
	if refErr == nil && m.Digest != refDigest {
		return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf("the manifest's digest is %s, not %s", m.Digest, refDigest)}
	}
	if m.MediaType == "" || m.MediaType == "application/octet-stream" {
		m.MediaType = body.MediaType
	}
	if m.MediaType == "" {
		m.MediaType = dockerManifestV2
	}
	if h := s.opts.Hooks.ManifestReceived; h != nil {
		if err := h(r.Context(), m); err != nil {
			return err
		}
	}
	s.mu.Lock()
	refs := s.manifests[name]
	if refs == nil {
		refs = map[string]*Manifest{}
		s.manifests[name] = refs
	}
	refs[ref] = m
	refs[m.Digest.String()] = m
	s.mu.Unlock()
	setHeader(w, "Location", "/v2/"+name+"/manifests/"+m.Digest.String())
	setHeader(w, "Docker-Content-Digest", m.Digest.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// tags answers GET /v2/<name>/tags/list, with the spec's n and last.
func (s *Server) tags(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodGet {
		return errMethod
	}
	s.mu.Lock()
	refs, ok := s.manifests[name]
	tags := []string{}
	for ref := range refs {
		if _, err := digest.Parse(ref); err != nil {
			tags = append(tags, ref)
		}
	}
	s.mu.Unlock()
	if !ok {
		return &Error{Status: http.StatusNotFound, Code: "NAME_UNKNOWN", Message: fmt.Sprintf("repository %s is unknown", name)}
	}
	sort.Strings(tags)
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(tags, last)
		if i < len(tags) && tags[i] == last {
			i++
		}
		tags = tags[i:]
	}
	if nS := q.Get("n"); nS != "" {
		n, err := strconv.Atoi(nS)
		if err != nil || n < 0 {
			return &Error{Status: http.StatusBadRequest, Code: "PAGINATION_NUMBER_INVALID", Message: fmt.Sprintf("bad n %q", nS)}
		}
		if n < len(tags) {
			tags = tags[:n]
			if n > 0 {
				next := url.Values{"n": {nS}, "last": {tags[n-1]}}
				setHeader(w, "Link", "</v2/"+name+"/tags/list?"+next.Encode()+`>; rel="next"`)
			}
		}
	}
	raw, _ := json.Marshal(map[string]any{"name": name, "tags": tags})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(http.StatusOK)
	w.Write(raw)
	return nil
}
