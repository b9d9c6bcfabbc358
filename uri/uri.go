// Package uri parses the source and destination URIs and the filter specs of
// occystrap (spec sections 3 and 4.1) and describes the valid schemes,
// options and filters for help text.
//
// A URI is SCHEME://REST[?QUERY]. Parse validates the scheme for the role the
// URI plays, checks every query option's name and value, works out the
// filesystem path of file schemes, and checks the image reference of image
// schemes, so that a URI that parses is usable. The package does no I/O.
package uri

import (
	"strings"
)

// Role is where a URI is used.
type Role int

const (
	// Source is the URI an image is read from.
	Source Role = iota
	// Dest is the URI an image is written to.
	Dest
)

// String returns "source" or "destination".
func (r Role) String() string {
	if r == Dest {
		return "destination"
	}
	return "source"
}

// URI is a parsed source or destination.
type URI struct {
	Raw    string // as given
	Scheme string // canonical, lower-case, aliases resolved (file->tar, directory->dir)
	Host   string // netloc as given (may hold user:pass@ and :port)
	// Path is, for the file schemes (tar, dir, oci, mounts), the filesystem
	// path worked out per spec 3.1 step 5 and percent-decoded; for the other
	// schemes, the percent-decoded path after the host (with its leading
	// "/", or "" when there is none).
	Path    string
	Options Options // query options, validated for the scheme and role
}

// Parse parses s as a URI used in role.
//
// A string without "://" but with a ":" takes the part before the first ":"
// as its scheme ("tar:foo.tar" is "tar://foo.tar"). The scheme is
// lower-cased and the aliases file (tar) and directory (dir) are resolved.
// The query starts at the first "?" and is split on "&"; a "#" is part of the
// path, not a fragment. Unlike the original, unknown options and bad option
// values are errors rather than silently ignored.
//
// Errors wrap ErrSyntax (no scheme), ErrUnknownScheme, ErrUnknownOption,
// ErrInvalidValue or ErrMissingPath (a file URI with no path, an image URI
// with no host or image); malformed image references wrap ErrSyntax.
func Parse(s string, role Role) (URI, error) {
	scheme, rest, ok := splitScheme(s)
	if !ok {
		return URI{}, newErr(ErrSyntax,
			"missing scheme in URI %q: use SCHEME://..., for example tar://image.tar (valid %s schemes: %s)",
			RedactString(s), role, strings.Join(schemeNames(role), ", "))
	}
	scheme = strings.ToLower(scheme)
	if canon, ok := schemeAliases[scheme]; ok {
		scheme = canon
	}
	spec, ok := lookupScheme(role, scheme)
	if !ok {
		hint := ""
		if scheme == "oci" && role == Source {
			// skopeo's oci:PATH is an image layout; ours is a runtime
			// bundle, which only an output writes.
			hint = " (oci:// writes an OCI runtime bundle; to read an OCI image layout use oci-layout://PATH)"
		}
		return URI{}, newErr(ErrUnknownScheme, "unknown %s scheme %q: valid %s schemes are %s%s",
			role, scheme, role, strings.Join(schemeNames(role), ", "), hint)
	}

	beforeQuery, query, _ := strings.Cut(rest, "?")
	host, path := beforeQuery, ""
	if i := strings.IndexByte(beforeQuery, '/'); i >= 0 {
		host, path = beforeQuery[:i], beforeQuery[i:]
	}

	u := URI{Raw: s, Scheme: scheme, Host: host, Options: parseQuery(query)}
	what := scheme + ":// " + role.String()
	if err := validateOptions(u.Options, spec.opts, what); err != nil {
		return URI{}, err
	}

	if spec.file {
		p := path
		if host != "" {
			switch {
			case p == "":
				p = host
			case !strings.EqualFold(host, "localhost"):
				p = host + p
			}
		}
		u.Path = unquote(p, false)
		if u.Path == "" {
			output := ""
			if role == Dest && scheme == "tar" {
				output = " output" // the original's wording for this one case
			}
			return URI{}, newErr(ErrMissingPath, "%s://%s URI requires a path", scheme, output)
		}
		return u, nil
	}

	u.Path = unquote(path, false)
	switch spec.ref {
	case refRegistry, refDocker:
		if _, err := u.Reference(); err != nil {
			return URI{}, err
		}
	case refOptional:
		if strings.Trim(u.Host+u.Path, "/") != "" {
			if _, err := u.Reference(); err != nil {
				return URI{}, err
			}
		}
	}
	return u, nil
}

// splitScheme returns the scheme and what follows "://" (or, for the short
// form SCHEME:REST, what follows the ":"). ok is false when s has no valid
// scheme.
func splitScheme(s string) (scheme, rest string, ok bool) {
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i], s[i+3:]
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		scheme, rest = s[:i], s[i+1:]
	} else {
		return "", "", false
	}
	return scheme, rest, validScheme(scheme)
}

// validScheme reports whether s is an RFC 3986 scheme name, as Python's
// urlparse requires before it recognises a scheme.
func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// parseQuery splits a query on "&" and each piece at its first "=", decoding
// keys and values like Python's parse_qs, but keeping blank values.
func parseQuery(q string) Options {
	opts := Options{}
	for piece := range strings.SplitSeq(q, "&") {
		if piece == "" {
			continue
		}
		k, v, _ := strings.Cut(piece, "=")
		k = unquote(k, true)
		opts[k] = append(opts[k], unquote(v, true))
	}
	return opts
}

// unquote percent-decodes s the way Python's unquote does: a "%" not followed
// by two hex digits is kept literally rather than being an error. With plus,
// "+" decodes to a space (query strings).
func unquote(s string, plus bool) string {
	if !strings.ContainsRune(s, '%') && !(plus && strings.ContainsRune(s, '+')) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case c == '+' && plus:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// Userinfo returns the user name and password given before "@" in the host
// (registry://user:pass@host/...), percent-decoded. ok is false when the
// host has no "@"; pass is "" when there is no ":" in the user info.
func (u URI) Userinfo() (user, pass string, ok bool) {
	i := strings.LastIndexByte(u.Host, '@')
	if i < 0 {
		return "", "", false
	}
	user, pass, _ = strings.Cut(u.Host[:i], ":")
	return unquote(user, false), unquote(pass, false), true
}

// Redacted returns Raw with any password replaced by "xxxxx", for logs; see
// RedactString.
func (u URI) Redacted() string { return RedactString(u.Raw) }

// String returns the redacted URI, so that printing a URI never shows a
// password.
func (u URI) String() string { return u.Redacted() }

// redactedKeys are the query options whose values Redacted hides.
var redactedKeys = map[string]bool{"password": true, "token": true}

// RedactString returns the URI string s with the password of any user info
// (scheme://user:PASSWORD@host) and the value of any password= (or token=)
// query option replaced by "xxxxx". It works on strings that do not parse.
func RedactString(s string) string {
	start := -1
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		start = i + 1
	}
	if start >= 0 {
		end := len(s)
		if i := strings.IndexAny(s[start:], "/?"); i >= 0 {
			end = start + i
		}
		auth := s[start:end]
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			if c := strings.IndexByte(auth[:at], ':'); c >= 0 {
				auth = auth[:c+1] + "xxxxx" + auth[at:]
				s = s[:start] + auth + s[end:]
			}
		}
	}
	q := strings.IndexByte(s, '?')
	if q < 0 {
		return s
	}
	pieces := strings.Split(s[q+1:], "&")
	for i, p := range pieces {
		k, _, hasValue := strings.Cut(p, "=")
		if hasValue && redactedKeys[unquote(k, true)] {
			pieces[i] = k + "=xxxxx"
		}
	}
	return s[:q+1] + strings.Join(pieces, "&")
}
