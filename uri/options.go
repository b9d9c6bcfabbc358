package uri

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Options holds the options of a URI (its query) or of a filter spec, keyed
// by option name. Values are kept as strings, in the order given; a key given
// several times has several values and the last one is the effective value.
// URI query keys and values are percent-decoded ("+" is a space); filter
// values are taken literally. Unlike the Python original, a blank value
// ("?expand=" or a bare "?expand") is kept, as "".
//
// Parse and ParseFilter merge option aliases into one canonical key, the one
// the original gives precedence to: architecture into arch, ts into
// timestamp, use_regex into regex and script-friendly into script_friendly.
// The alias's values come first, so the canonical key wins when both are
// given.
type Options map[string][]string

// Has reports whether key was given at least once.
func (o Options) Has(key string) bool { return len(o[key]) > 0 }

// String returns the last value of key, or def when key was not given. A key
// given with a blank value returns "".
func (o Options) String(key, def string) string {
	v := o[key]
	if len(v) == 0 {
		return def
	}
	return v[len(v)-1]
}

// Bool returns the last value of key as a boolean: true, yes or 1 is true and
// false, no or 0 is false, case-insensitively and ignoring surrounding
// spaces. It returns def when key was not given, and an error wrapping
// ErrInvalidValue, naming the key and value, for anything else.
func (o Options) Bool(key string, def bool) (bool, error) {
	if !o.Has(key) {
		return def, nil
	}
	v := o.String(key, "")
	b, ok := parseBool(v)
	if !ok {
		return def, newErr(ErrInvalidValue, "invalid value %q for option %q: %s", v, key, kindBool.want())
	}
	return b, nil
}

// Int returns the last value of key as a decimal integer, def when key was
// not given, and an error wrapping ErrInvalidValue, naming the key and value,
// when the value is not an integer.
func (o Options) Int(key string, def int) (int, error) {
	if !o.Has(key) {
		return def, nil
	}
	v := o.String(key, "")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return def, newErr(ErrInvalidValue, "invalid value %q for option %q: want an integer", v, key)
	}
	return n, nil
}

func parseBool(v string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "1":
		return true, true
	case "false", "no", "0":
		return false, true
	}
	return false, false
}

// optKind is the type an option's values must have.
type optKind int

const (
	kindString      optKind = iota // anything, including ""
	kindNonEmpty                   // any non-blank string
	kindBool                       // true|yes|1|false|no|0
	kindPositiveInt                // integer >= 1
	kindNonNegInt                  // integer >= 0
	kindEnum                       // one of optSpec.enum
)

// want describes the valid values of a kind, for error messages.
func (k optKind) want() string {
	switch k {
	case kindNonEmpty:
		return "want a non-empty value"
	case kindBool:
		return "want true, yes, 1, false, no or 0"
	case kindPositiveInt:
		return "want an integer >= 1"
	case kindNonNegInt:
		return "want an integer >= 0"
	}
	return "want a string"
}

// optSpec describes one accepted option of a scheme or filter.
type optSpec struct {
	name     string
	help     string
	kind     optKind
	enum     []string // valid values for kindEnum
	aliasOf  string   // canonical key this option is merged into
	required bool     // must be given with a non-blank value
}

// check validates one value; ok is false when it does not fit, and want
// then describes the valid values.
func (s optSpec) check(v string) (want string, ok bool) {
	switch s.kind {
	case kindNonEmpty:
		ok = strings.TrimSpace(v) != ""
	case kindBool:
		_, ok = parseBool(v)
	case kindPositiveInt, kindNonNegInt:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		min := 0
		if s.kind == kindPositiveInt {
			min = 1
		}
		ok = err == nil && n >= min
	case kindEnum:
		for _, e := range s.enum {
			if v == e {
				ok = true
			}
		}
		if !ok {
			return "want one of " + strings.Join(s.enum, ", "), false
		}
	default:
		ok = true
	}
	return s.kind.want(), ok
}

// validateOptions checks every key and value of opts against specs, then
// merges aliases into their canonical keys. what names the owner of the
// options for messages, e.g. "tar:// destination" or "search filter".
func validateOptions(opts Options, specs []optSpec, what string) error {
	names := make([]string, len(specs))
	byName := make(map[string]optSpec, len(specs))
	for i, s := range specs {
		names[i] = s.name
		byName[s.name] = s
	}
	// Keys are checked in sorted order so that the error reported for a
	// given input does not depend on map iteration order.
	for _, key := range sortedKeys(opts) {
		if _, ok := byName[key]; !ok {
			return newErr(ErrUnknownOption, "unknown option %q for %s: valid options are %s",
				key, what, joinOrNone(names))
		}
	}
	for _, s := range specs {
		for _, v := range opts[s.name] {
			if want, ok := s.check(v); !ok {
				return newErr(ErrInvalidValue, "invalid value %q for option %q of %s: %s",
					v, s.name, what, want)
			}
		}
	}
	for _, s := range specs {
		if s.aliasOf == "" || !opts.Has(s.name) {
			continue
		}
		opts[s.aliasOf] = append(append([]string(nil), opts[s.name]...), opts[s.aliasOf]...)
		delete(opts, s.name)
	}
	return nil
}

func sortedKeys(o Options) []string {
	return slices.Sorted(maps.Keys(o))
}

// optionInfos turns specs into the public help form.
func optionInfos(specs []optSpec) []OptionInfo {
	if len(specs) == 0 {
		return nil
	}
	out := make([]OptionInfo, len(specs))
	for i, s := range specs {
		out[i] = OptionInfo{Name: s.name, Help: s.help}
	}
	return out
}
