package info

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// WriteText writes the info in the original's text layout (spec 11.1):
// aligned header lines, the layer count, a PrettyTable of the layers, the
// history summary and the container config.
//
// One deliberate difference: control characters in strings taken from the
// image (other than tab, and newline inside the layer table, where
// PrettyTable splits cells on it) are shown escaped as \xNN, so that an
// image cannot send escape sequences to the terminal.
func (inf *Info) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	line("Image:         %s:%s", clean(inf.Image), clean(inf.Tag))
	if inf.HasManifest {
		line("Media type:    %s", orNone(clean(inf.MediaType)))
		line("Manifest:      %s", clean(string(inf.ManifestDigest)))
	}
	if inf.HasIndex {
		line("Index:         %s", clean(string(inf.IndexDigest)))
		line("Index type:    %s", orNone(clean(inf.IndexMediaType)))
		line("Platforms:     %s", clean(strings.Join(inf.Platforms, ", ")))
	}
	if inf.HasManifest {
		line("Schema:        v%d", inf.SchemaVersion)
	}
	if inf.HasConfig {
		arch := inf.Architecture
		if inf.Variant != "" {
			arch += "/" + inf.Variant
		}
		line("Platform:      %s/%s", clean(inf.OS), clean(arch))
		created := "None"
		if inf.Created != nil {
			created = clean(*inf.Created)
		}
		line("Created:       %s", created)
	}
	if inf.HasManifest {
		size := "N/A"
		if inf.ConfigDigest != "" {
			size = FormatSize(inf.ConfigSize)
		}
		line("Config digest: %s", orNone(clean(string(inf.ConfigDigest))))
		line("Config size:   %s", size)
	}
	line("")
	line("Layers: %d", inf.LayerCount)
	if inf.HasManifest {
		line("Total compressed size: %s", FormatSize(inf.TotalCompressedSize))
	}
	if len(inf.Layers) > 0 {
		line("")
		line("%s", inf.layerTable())
	}
	if inf.HasConfig {
		line("")
		line("History: %d entries (%d empty)", inf.HistoryCount, inf.EmptyLayerCount)
		line("")
		line("Container Config:")
		if len(inf.Entrypoint) > 0 {
			line("  Entrypoint: %s", PyRepr(inf.Entrypoint))
		}
		if len(inf.Cmd) > 0 {
			line("  Cmd:        %s", PyRepr(inf.Cmd))
		}
		if inf.WorkingDir != "" {
			line("  WorkingDir: %s", clean(inf.WorkingDir))
		}
		if len(inf.ExposedPorts) > 0 {
			line("  Ports:      %s", clean(strings.Join(inf.ExposedPorts, ", ")))
		}
		if len(inf.Volumes) > 0 {
			line("  Volumes:    %s", clean(strings.Join(inf.Volumes, ", ")))
		}
		if len(inf.Env) > 0 {
			line("  Environment:")
			for _, e := range inf.Env {
				line("    %s", clean(e))
			}
		}
		if len(inf.Labels) > 0 {
			line("  Labels:")
			for _, l := range inf.Labels {
				line("    %s=%s", clean(l.Key), clean(l.Value))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// layerTable renders the layers as the original's PrettyTable: a column
// only when some layer has its key, digests cut to 25 characters plus
// "...", sizes through FormatSize, Created By at most 50 wide.
func (inf *Info) layerTable() string {
	var hasBlob, hasDiffID, hasCreatedBy bool
	for _, l := range inf.Layers {
		hasBlob = hasBlob || l.HasBlob
		hasDiffID = hasDiffID || l.HasDiffID
		hasCreatedBy = hasCreatedBy || l.HasCreatedBy
	}
	t := &table{fields: []string{"#"}}
	if hasBlob {
		t.fields = append(t.fields, "Compressed Digest")
	}
	if hasDiffID {
		t.fields = append(t.fields, "DiffID")
	}
	if hasBlob {
		t.fields = append(t.fields, "Size", "Compression")
	}
	if hasCreatedBy {
		t.fields = append(t.fields, "Created By")
		t.maxWidth = map[string]int{"Created By": 50}
	}
	for _, l := range inf.Layers {
		row := []string{strconv.Itoa(l.Index)}
		if hasBlob {
			row = append(row, shortDigest(string(l.Digest)))
		}
		if hasDiffID {
			row = append(row, shortDigest(string(l.DiffID)))
		}
		if hasBlob {
			size := "N/A"
			if l.HasBlob {
				size = FormatSize(l.Size)
			}
			row = append(row, size, clean(l.Compression))
		}
		if hasCreatedBy {
			row = append(row, cleanKeepNewline(l.CreatedBy))
		}
		t.rows = append(t.rows, row)
	}
	return t.String()
}

// shortDigest cuts a digest longer than 25 characters to 25 plus "...".
func shortDigest(d string) string {
	d = clean(d)
	if utf8.RuneCountInString(d) > 25 {
		return string([]rune(d)[:25]) + "..."
	}
	return d
}

func orNone(s string) string {
	if s == "" {
		return "None"
	}
	return s
}

// FormatSize formats a byte count as the original's format_size did:
// "<n> B" under 1024, then "%.1f KB", "%.1f MB" and "%.1f GB" in binary
// units. (The original's "N/A" for an unknown size is left to callers.)
func FormatSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
}

// PyRepr formats a list of strings as Python's repr does, for example
// ['/bin/sh', '-c'].
func PyRepr(list []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pyStrRepr(s))
	}
	b.WriteByte(']')
	return b.String()
}

// pyStrRepr is Python's repr of a str: single quotes unless the string
// holds a single quote and no double quote; backslash, the quote, \t, \n
// and \r escaped; other control characters as \xNN; non-printable
// non-ASCII as \xNN, \uNNNN or \UNNNNNNNN; printable characters as they
// are. (Go's unicode.IsPrint and Python's str.isprintable agree: both
// exclude the C* and Z* categories except the space.)
func pyStrRepr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x7f || unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// clean escapes control characters other than tab as \xNN (\u2028-style
// for the non-Latin-1 line and paragraph separators), so strings from an
// image cannot move the cursor or send escape sequences.
func clean(s string) string { return escapeControls(s, false) }

// cleanKeepNewline is clean but keeps newlines, which the table turns into
// cell lines as PrettyTable does.
func cleanKeepNewline(s string) string { return escapeControls(s, true) }

func escapeControls(s string, keepNewline bool) string {
	isControl := func(r rune) bool {
		switch {
		case r == '\t', r == '\n' && keepNewline:
			return false
		case r < ' ', r >= 0x7f && r < 0xa0, r == 0x2028, r == 0x2029:
			return true
		}
		return false
	}
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !isControl(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}
