package uri

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so callers can classify failures with errors.Is; the message itself
// is complete and lists the valid values where there is a fixed set.
var (
	// ErrUnknownScheme reports a URI scheme that is not valid for its role.
	ErrUnknownScheme = errors.New("unknown scheme")
	// ErrUnknownOption reports a query or filter option that the scheme or
	// filter does not accept.
	ErrUnknownOption = errors.New("unknown option")
	// ErrUnknownFilter reports a filter name that does not exist.
	ErrUnknownFilter = errors.New("unknown filter")
	// ErrMissingPath reports a file URI without a path, or an image URI
	// without a registry host or image name.
	ErrMissingPath = errors.New("missing path")
	// ErrSyntax reports a malformed URI, image reference or filter spec
	// (including a URI with no scheme at all).
	ErrSyntax = errors.New("invalid syntax")
	// ErrInvalidValue reports an option value of the wrong type or out of
	// range (a bad boolean, a non-integer, an unknown compression...).
	ErrInvalidValue = errors.New("invalid option value")
	// ErrMissingOption reports a filter used without one of its required
	// options (search and exclude need pattern, inspect needs file).
	ErrMissingOption = errors.New("missing option")
)

// uriError is an error with a complete message that unwraps to a sentinel.
type uriError struct {
	kind error
	msg  string
}

func (e *uriError) Error() string { return e.msg }

// Unwrap returns the sentinel, so errors.Is(err, ErrXxx) works.
func (e *uriError) Unwrap() error { return e.kind }

func newErr(kind error, format string, args ...any) error {
	return &uriError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// joinOrNone lists names for a message, or "(none)" when there are none.
func joinOrNone(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}
