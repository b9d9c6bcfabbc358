package rewrite

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/occystrap/occystrap/stages/tarstream"
)

// Normalize is the normalize-timestamps editor: every entry's times become
// TS (the header's mtime, PAX mtime records; PAX atime, ctime and
// LIBARCHIVE.creationtime records are removed), and so do the config's
// creation time and its history's, so that the same content always gives
// the same bytes.
type Normalize struct{ TS int64 }

// Layer has no per-layer state.
func (Normalize) Layer() any { return nil }

// Entry sets the entry's times and keeps it.
func (n Normalize) Entry(_ any, e *tarstream.Entry) bool {
	e.SetModTime(n.TS)
	return true
}

// Config sets "created" and every history entry's "created" to TS.
func (n Normalize) Config(cfg []byte) []Splice {
	ts, _ := json.Marshal(time.Unix(n.TS, 0).UTC().Format(time.RFC3339))
	return []Splice{
		{Path: []string{"created"}, Text: ts},
		{Path: []string{"history", "*", "created"}, Text: ts},
	}
}

// Exclude is the exclude editor: entries matching any pattern, or under a
// directory that matches, are dropped, and so are hardlinks to a dropped
// entry (a link without its target would break the layer).
type Exclude struct{ Patterns []*tarstream.Matcher }

// excluded is the per-layer state of Exclude: names dropped so far.
type excluded map[string]bool

// Layer returns an empty set of dropped names.
func (Exclude) Layer() any { return excluded{} }

// Entry drops matching entries.
func (x Exclude) Entry(state any, e *tarstream.Entry) bool {
	dropped := state.(excluded)
	if e.Typeflag == 'g' {
		return true // a PAX global header applies to what follows; not a file
	}
	for _, m := range x.Patterns {
		if m.MatchOrUnder(e.Name) {
			dropped[clean(e.Name)] = true
			return false
		}
	}
	if e.Typeflag == '1' && dropped[clean(e.Linkname)] {
		dropped[clean(e.Name)] = true
		return false
	}
	return true
}

// clean drops the "./" and "/" prefixes tar names may carry, so that a
// hardlink's target compares equal to the entry it names.
func clean(name string) string {
	for {
		switch {
		case strings.HasPrefix(name, "./"):
			name = name[2:]
		case strings.HasPrefix(name, "/"):
			name = name[1:]
		default:
			return name
		}
	}
}

// Config changes nothing beyond the diff IDs.
func (Exclude) Config([]byte) []Splice { return nil }
