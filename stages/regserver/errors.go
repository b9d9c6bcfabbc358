package regserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Error is an answer in the distribution API's error format: an HTTP
// status and an error code such as BLOB_UNKNOWN or MANIFEST_INVALID.
// Hooks return one to choose how a request is refused.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

var errMethod = &Error{Status: http.StatusMethodNotAllowed, Code: "UNSUPPORTED", Message: "the operation is unsupported"}

// writeError sends err as a distribution API error body.
func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: err.Error()}
	}
	status, code := e.Status, e.Code
	if status < 400 || status > 599 {
		// A hook's Error without an error status (WriteHeader would
		// panic on 0).
		status = http.StatusInternalServerError
	}
	if code == "" {
		code = "UNKNOWN"
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": e.Message}}})
	h := w.Header()
	if status != http.StatusRequestedRangeNotSatisfiable {
		// A refused chunk keeps the session's Location and Range, for
		// the client to resume from; other errors point nowhere.
		h.Del("Location")
	}
	h.Del("Docker-Content-Digest")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// nameRE is the distribution spec's repository name grammar.
var nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// checkName refuses a repository name outside the spec's grammar (which
// also keeps request data that could split a header out of names).
func checkName(name string) error {
	if len(name) > 255 || !nameRE.MatchString(name) {
		return &Error{Status: http.StatusBadRequest, Code: "NAME_INVALID", Message: fmt.Sprintf("invalid repository name %q", name)}
	}
	return nil
}

// tagRE is the distribution spec's tag grammar.
var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// safe removes control characters (CR, LF, NUL and the rest) from a
// header value, so that no request data can add a header or end the
// header block.
func safe(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// setHeader sets a response header whose value may hold request data.
func setHeader(w http.ResponseWriter, key, value string) {
	w.Header().Set(key, safe(value))
}

// SetHeader sets a response header whose value comes from outside (a
// request, another registry), with its control characters removed, for
// programs that answer some requests themselves (Options.Middleware).
func SetHeader(w http.ResponseWriter, key, value string) { setHeader(w, key, value) }

// WriteError sends err as a distribution API error body: a *Error keeps
// its status and code, anything else is a 500. Programs that answer some
// requests themselves (Options.Middleware) use it to answer alike.
func WriteError(w http.ResponseWriter, err error) { writeError(w, err) }

// ValidName reports whether name is a repository name in the
// distribution spec's grammar.
func ValidName(name string) bool { return checkName(name) == nil }

// ValidReference reports whether ref is a tag or a digest.
func ValidReference(ref string) bool {
	if tagRE.MatchString(ref) {
		return true
	}
	_, err := digest.Parse(ref)
	return err == nil
}
