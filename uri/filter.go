package uri

import "strings"

// Filter is a parsed filter spec, NAME[:KEY=VALUE[,KEY=VALUE...]].
type Filter struct {
	Raw     string  // as given
	Name    string  // canonical: trimmed, lower-case, "_" turned into "-"
	Options Options // validated for the filter; values taken literally
}

// ParseFilter parses a filter spec (spec 4.1, fixed so values can contain
// commas).
//
// The name is everything before the first ":", trimmed, lower-cased and with
// "_" turned into "-". The options after it are split on ","; empty pieces
// are skipped; a piece without "=" continues the previous value, joined back
// with ",", so "exclude:pattern=a,b,c" gives pattern "a,b,c". A piece that
// has an "=" always starts a new option, so a value cannot contain ",K=V".
// Keys and values are trimmed.
//
// Errors wrap ErrSyntax (no name, a first option without "=", an empty key),
// ErrUnknownFilter, ErrUnknownOption, ErrInvalidValue or ErrMissingOption
// (search and exclude need pattern, inspect needs file).
func ParseFilter(s string) (Filter, error) {
	rawName, optString, _ := strings.Cut(s, ":")
	name := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(rawName)), "_", "-")
	if name == "" {
		return Filter{}, newErr(ErrSyntax, "filter spec %q has no name: use NAME[:KEY=VALUE,...] (valid filters are %s)",
			s, strings.Join(filterNames(), ", "))
	}
	spec, ok := lookupFilter(name)
	if !ok {
		return Filter{}, newErr(ErrUnknownFilter, "unknown filter %q: valid filters are %s",
			name, strings.Join(filterNames(), ", "))
	}

	opts := Options{}
	last := ""
	for piece := range strings.SplitSeq(optString, ",") {
		piece = strings.TrimSpace(piece)
		if piece == "" {
			continue
		}
		k, v, hasEq := strings.Cut(piece, "=")
		if !hasEq {
			if last == "" {
				return Filter{}, newErr(ErrSyntax, "invalid filter option (missing =): %s", piece)
			}
			vals := opts[last]
			vals[len(vals)-1] += "," + piece
			continue
		}
		k = strings.TrimSpace(k)
		if k == "" {
			return Filter{}, newErr(ErrSyntax, "invalid filter option (missing key): %s", piece)
		}
		opts[k] = append(opts[k], strings.TrimSpace(v))
		last = k
	}

	if err := validateOptions(opts, spec.opts, name+" filter"); err != nil {
		return Filter{}, err
	}
	for _, o := range spec.opts {
		if o.required && strings.TrimSpace(opts.String(o.name, "")) == "" {
			return Filter{}, newErr(ErrMissingOption, "%s filter requires %s option", name, o.name)
		}
	}
	return Filter{Raw: s, Name: name, Options: opts}, nil
}
