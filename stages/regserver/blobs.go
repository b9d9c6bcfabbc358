package regserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/occystrap/occystrap/engine/spool"
	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
)

// Blob is a blob the server holds, complete and verified.
type Blob struct {
	Digest digest.Digest
	Size   int64
	// Repo is the repository it was first pushed to.
	Repo string
	file *spool.File
}

// Open returns a reader of the blob's bytes (it also seeks). It stays
// readable until it is closed, even after the server is closed.
func (b *Blob) Open() *spool.FileReader { return b.file.Open() }

// upload is one upload session: its bytes so far, hashed as they came.
type upload struct {
	mu      sync.Mutex // one request at a time per session
	id      string
	repo    string
	file    *spool.File
	sha     hash.Hash // sha256 of the bytes so far
	track   stages.Tracker
	started time.Time
	done    bool // finished or cancelled: no more requests
}

func (u *upload) discard() {
	if !u.done {
		u.done = true
		u.track.Done(errors.New("upload abandoned"))
		u.file.Release()
	}
}

// appendFrom copies r to the end of the upload, hashing it.
func (u *upload) appendFrom(r io.Reader) error {
	buf := make([]byte, 256<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := u.file.Write(buf[:n]); werr != nil {
				return &Error{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: werr.Error()}
			}
			u.sha.Write(buf[:n])
			u.track.Add(int64(n))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &Error{Status: http.StatusBadRequest, Code: "BLOB_UPLOAD_INVALID", Message: fmt.Sprintf("reading the request body: %v", err)}
		}
	}
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// uploadHeaders sets what every answer about an open session carries.
func uploadHeaders(w http.ResponseWriter, name string, u *upload) {
	setHeader(w, "Location", "/v2/"+name+"/blobs/uploads/"+u.id)
	setHeader(w, "Docker-Upload-UUID", u.id)
	end := u.file.Size() - 1
	if end < 0 {
		end = 0
	}
	w.Header().Set("Range", "0-"+strconv.FormatInt(end, 10))
	w.Header().Set("Content-Length", "0")
}

// startUpload answers POST /v2/<name>/blobs/uploads/.
func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		if d, err := digest.Parse(m); err == nil {
			if b, ok := s.Blob(d); ok {
				blobCreated(w, name, b.Digest)
				return nil
			}
		}
		// Not held (or not a digest): the spec says start an upload instead.
	}
	f, err := spool.NewFile(s.opts.TempDir)
	if err != nil {
		return err
	}
	u := &upload{id: newID(), repo: name, file: f, sha: sha256.New(), started: time.Now()}
	p := s.opts.Progress
	if p == nil {
		p = stages.NoProgress{}
	}
	u.track = p.Track("receive "+name, -1)
	if want := q.Get("digest"); want != "" {
		// A monolithic upload: the whole blob is this request's body.
		if err := u.appendFrom(r.Body); err != nil {
			u.discard()
			return err
		}
		return s.finish(w, name, u, want)
	}
	s.mu.Lock()
	s.uploads[u.id] = u
	s.mu.Unlock()
	uploadHeaders(w, name, u)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

var errUploadUnknown = &Error{Status: http.StatusNotFound, Code: "BLOB_UPLOAD_UNKNOWN", Message: "no such upload"}

// upload answers PATCH, PUT, GET and DELETE on an upload session.
func (s *Server) upload(w http.ResponseWriter, r *http.Request, name, id string) error {
	s.mu.Lock()
	u := s.uploads[id]
	s.mu.Unlock()
	if u == nil || u.repo != name {
		return errUploadUnknown
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return errUploadUnknown
	}
	switch r.Method {
	case http.MethodGet:
		uploadHeaders(w, name, u)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodDelete:
		s.drop(u)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if err := checkContentRange(r.Header.Get("Content-Range"), u.file.Size(), r.ContentLength); err != nil {
			uploadHeaders(w, name, u)
			return err
		}
		if err := u.appendFrom(r.Body); err != nil {
			return err
		}
		uploadHeaders(w, name, u)
		w.WriteHeader(http.StatusAccepted)
		return nil
	case http.MethodPut:
		want := r.URL.Query().Get("digest")
		if want == "" {
			return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: "the digest parameter is missing"}
		}
		if cr := r.Header.Get("Content-Range"); cr != "" {
			if err := checkContentRange(cr, u.file.Size(), r.ContentLength); err != nil {
				uploadHeaders(w, name, u)
				return err
			}
		}
		if err := u.appendFrom(r.Body); err != nil {
			return err
		}
		s.mu.Lock()
		delete(s.uploads, u.id)
		s.mu.Unlock()
		return s.finish(w, name, u, want)
	}
	return errMethod
}

// drop cancels a session and frees its bytes.
func (s *Server) drop(u *upload) {
	s.mu.Lock()
	delete(s.uploads, u.id)
	s.mu.Unlock()
	u.discard()
}

// checkContentRange accepts a chunk's "start-end" range only if it starts
// where the upload ends (chunks must come in order) and, when the request
// says how long its body is (length, -1 if it does not), covers exactly
// that many bytes.
func checkContentRange(cr string, size, length int64) error {
	if cr == "" {
		return nil
	}
	cr = strings.TrimPrefix(cr, "bytes ")
	startS, endS, ok := strings.Cut(cr, "-")
	start, err1 := strconv.ParseInt(startS, 10, 64)
	end, err2 := strconv.ParseInt(strings.SplitN(endS, "/", 2)[0], 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start-1 {
		return &Error{Status: http.StatusBadRequest, Code: "BLOB_UPLOAD_INVALID", Message: fmt.Sprintf("bad Content-Range %q", cr)}
	}
	if start != size {
		return &Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: "BLOB_UPLOAD_INVALID", Message: fmt.Sprintf("the chunk starts at %d but the upload has %d bytes", start, size)}
	}
	if length >= 0 && length != end-start+1 {
		return &Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: "BLOB_UPLOAD_INVALID", Message: fmt.Sprintf("Content-Range %q does not match the body's %d bytes", cr, length)}
	}
	return nil
}

// finish checks a complete upload against the digest the client claims
// and files it as a blob.
func (s *Server) finish(w http.ResponseWriter, name string, u *upload, want string) error {
	d, err := digest.Parse(want)
	if err != nil {
		u.discard()
		return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf("%q is not a digest", want)}
	}
	var got digest.Digest
	if d.Algorithm() == digest.SHA256 {
		got = digest.NewDigest(digest.SHA256, u.sha)
	} else if d.Algorithm().Available() {
		rd := u.file.Open()
		got, err = d.Algorithm().FromReader(rd)
		rd.Close()
		if err != nil {
			u.discard()
			return err
		}
	} else {
		u.discard()
		return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf("unsupported digest algorithm %q", d.Algorithm())}
	}
	if got != d {
		u.discard()
		return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf("the upload's digest is %s, not %s", got, d)}
	}
	u.done = true
	u.track.Done(nil)
	b := &Blob{Digest: d, Size: u.file.Size(), Repo: name, file: u.file}
	s.mu.Lock()
	if old, ok := s.blobs[d]; ok {
		// The same bytes again: keep the first copy.
		s.mu.Unlock()
		u.file.Release()
		b = old
	} else {
		s.blobs[d] = b
		s.mu.Unlock()
		if h := s.opts.Hooks.BlobReceived; h != nil {
			h(name, b)
		}
	}
	blobCreated(w, name, d)
	return nil
}

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	setHeader(w, "Location", "/v2/"+name+"/blobs/"+d.String())
	setHeader(w, "Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// blob answers HEAD and GET of a blob.
func (s *Server) blob(w http.ResponseWriter, r *http.Request, name string, d digest.Digest) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod
	}
	b, ok := s.Blob(d)
	if !ok {
		if h := s.opts.Hooks.Exists; h != nil && r.Method == http.MethodHead {
			if size, ok := h(name, d); ok {
				setHeader(w, "Docker-Content-Digest", d.String())
				w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
				w.WriteHeader(http.StatusOK)
				return nil
			}
		}
		return &Error{Status: http.StatusNotFound, Code: "BLOB_UNKNOWN", Message: fmt.Sprintf("blob %s is unknown", d)}
	}
	setHeader(w, "Docker-Content-Digest", d.String())
	setHeader(w, "ETag", `"`+d.String()+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	body := b.Open()
	defer body.Close()
	// ServeContent sets Content-Length, answers Range requests and writes
	// no body for HEAD.
	http.ServeContent(w, r, "", time.Time{}, body)
	return nil
}
