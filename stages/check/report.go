// Package check is the `check` command's model (spec 2.4 and 11.2): the
// metadata checks run on what an input knows without reading layers, the
// full checks run by an output that reads every layer once as it streams
// past, and the report's text and JSON renderings.
package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/occystrap/occystrap/stages/info"
)

// Severities.
const (
	Error   = "error"
	Warning = "warning"
	Info    = "info"
)

// Result is one finding. Layer is the index of the layer it concerns, nil
// for image-wide findings (beyond the original, which had no such key).
type Result struct {
	Severity string `json:"severity"`
	Check    string `json:"check"`
	Message  string `json:"message"`
	Layer    *int   `json:"layer,omitempty"`
}

// Report collects the results of one check run, in the order found. It is
// safe for concurrent use.
type Report struct {
	Reference string // the image reference ("" when unknown)
	Fast      bool

	mu      sync.Mutex
	results []Result
}

// Add records a finding about the whole image.
func (r *Report) Add(severity, check, format string, args ...any) {
	r.add(Result{Severity: severity, Check: check, Message: fmt.Sprintf(format, args...)})
}

// AddLayer records a finding about layer i.
func (r *Report) AddLayer(i int, severity, check, format string, args ...any) {
	r.add(Result{Severity: severity, Check: check, Message: fmt.Sprintf(format, args...), Layer: &i})
}

func (r *Report) add(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
}

// Results returns the findings so far, in order.
func (r *Report) Results() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results...)
}

// Count returns the number of errors and warnings.
func (r *Report) Count() (errors, warnings int) {
	for _, res := range r.Results() {
		switch res.Severity {
		case Error:
			errors++
		case Warning:
			warnings++
		}
	}
	return errors, warnings
}

// Has reports whether a finding with this check id and severity exists.
func (r *Report) Has(check, severity string) bool {
	for _, res := range r.Results() {
		if res.Check == check && res.Severity == severity {
			return true
		}
	}
	return false
}

func (r *Report) mode() string {
	if r.Fast {
		return "fast"
	}
	return "full"
}

// WriteText writes the original's text layout: Errors, Warnings and Info
// groups, then the summary line.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	rs := r.Results()
	for _, g := range []struct{ title, sev string }{{"Errors:", Error}, {"Warnings:", Warning}, {"Info:", Info}} {
		var lines []string
		for _, res := range rs {
			if res.Severity == g.sev {
				lines = append(lines, fmt.Sprintf("  [%s] %s\n", res.Check, res.Message))
			}
		}
		if len(lines) == 0 {
			continue
		}
		b.WriteString(g.title + "\n")
		for _, l := range lines {
			b.WriteString(l)
		}
		b.WriteString("\n")
	}
	mode := "full"
	if r.Fast {
		mode = "fast (metadata only)"
	}
	e, wn := r.Count()
	fmt.Fprintf(&b, "Check complete (%s): %d error(s), %d warning(s)\n", mode, e, wn)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the original's JSON object (indent 2).
func (r *Report) WriteJSON(w io.Writer) error {
	image, tag := info.SplitReference(r.Reference)
	e, wn := r.Count()
	rs := r.Results()
	if rs == nil {
		rs = []Result{}
	}
	doc := struct {
		Image    string   `json:"image"`
		Tag      string   `json:"tag"`
		Mode     string   `json:"mode"`
		Errors   int      `json:"errors"`
		Warnings int      `json:"warnings"`
		Results  []Result `json:"results"`
	}{image, tag, r.mode(), e, wn, rs}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// pyRepr quotes a string as Python's repr does (for the original's
// messages): single quotes unless the string holds a single quote and no
// double quote.
func pyRepr(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// cut shortens a digest as the original's messages do: the first 25
// characters and "...".
func cut(s string) string {
	if len(s) > 25 {
		return s[:25] + "..."
	}
	return s
}

// formatSize is the original's format_size (binary units, KB/MB/GB).
func formatSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KB", float64(n)/1024)
	case n < 1<<30:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
}
