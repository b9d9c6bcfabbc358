// Package inspect is the inspect filter (spec 4.5): a passthrough that
// notes each layer as it is at its point of the filter chain and, when
// the image has gone through, appends one JSON line describing the
// layers, newest first as `docker history` lists them, to a file.
package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/search"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/uri"
	"github.com/rs/zerolog"
)

// Filter is the inspect filter. It is used for one pipeline run.
type Filter struct {
	path string
	log  zerolog.Logger

	image   string
	history []history
	layers  []layerInfo
}

// history is one non-empty entry of the config's history.
type history struct {
	created   int64
	createdBy string
	comment   string
}

// layerInfo is a layer as it passed.
type layerInfo struct {
	index     int
	name      string
	size      int64
	digest    string
	diffID    string
	mediaType string
}

// New returns the filter appending to the file at path. It does no I/O.
func New(path string, env stages.Env) (*Filter, error) {
	if path == "" {
		return nil, fmt.Errorf("inspect filter requires file option: %w", uri.ErrMissingOption)
	}
	return &Filter{path: path, log: env.Log}, nil
}

// FromSpec returns the filter for a parsed filter spec (inspect:file=PATH).
func FromSpec(f uri.Filter, env stages.Env) (*Filter, error) {
	return New(f.Options.String("file", ""), env)
}

// Run passes every element on. The config's bytes are read (configs are
// small) and passed on in a new body; layer bodies are not touched. When
// in closes and the pipeline has not failed, the JSON line is appended.
func (f *Filter) Run(ctx context.Context, in <-chan elements.Element, out chan<- elements.Element) error {
	f.image, f.history, f.layers = "", nil, nil
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch el.Kind {
		case elements.KindImage:
			f.image = el.Name
		case elements.KindConfig:
			if el.Body != nil {
				data, err := tarball.ReadConfig(el) // closes the body
				if err != nil {
					return err
				}
				f.parseConfig(data)
				el.Body = io.NopCloser(bytes.NewReader(data))
				el.Source = nil
			}
		case elements.KindLayer:
			f.layers = append(f.layers, layerInfo{
				index: el.Index, name: el.Name, size: max(el.Size, 0),
				digest: el.Digest.String(), diffID: el.DiffID.String(), mediaType: el.MediaType,
			})
		}
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	// A failed upstream cancels the pipeline before closing its channel.
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	line := f.Line()
	file, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	_, err = file.Write(line)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	name, _ := f.name()
	f.log.Info().Msgf("Wrote inspect data for %s (%d layers) to %s", name, len(f.layers), f.path)
	return nil
}

// parseConfig keeps the config's non-empty history entries. A config
// that does not parse is logged and leaves the history empty, as in the
// original.
func (f *Filter) parseConfig(data []byte) {
	var cfg struct {
		History []map[string]json.RawMessage `json:"history"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		f.log.Warn().Err(err).Msgf("Failed to parse image config: %v", err)
		return
	}
	for _, h := range cfg.History {
		var empty bool
		if json.Unmarshal(h["empty_layer"], &empty) == nil && empty {
			continue
		}
		f.history = append(f.history, history{
			created:   created(h["created"]),
			createdBy: str(h["created_by"]),
			comment:   str(h["comment"]),
		})
	}
}

// created reads a history entry's creation time as Unix seconds: an
// RFC 3339 string (or a number), 0 when absent or unreadable.
func created(raw json.RawMessage) int64 {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0
		}
		sec := t.Unix()
		if sec < 0 && t.Nanosecond() > 0 {
			sec++ // Python's int() truncates towards zero
		}
		return sec
	}
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return int64(n)
	}
	return 0
}

func str(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// name returns "IMAGE:TAG" and whether the image had a name.
func (f *Filter) name() (string, bool) {
	image, tag := search.ImageTag(f.image)
	if image == "" {
		return "", false
	}
	return image + ":" + tag, true
}

// Line returns the JSON line the last run appends, newline included:
// Python's json.dumps(record, sort_keys=True) with its default separators
// and ASCII escapes.
func (f *Filter) Line() []byte {
	name, named := f.name()
	layers := slices.Clone(f.layers)
	slices.SortStableFunc(layers, func(a, b layerInfo) int { return a.index - b.index })
	objs := make([]object, len(layers))
	for i, l := range layers {
		h := history{}
		if i < len(f.history) {
			h = f.history[i]
		}
		id := l.name
		if id != "" && !hasDigestPrefix(id) {
			id = "sha256:" + id
		}
		objs[len(layers)-1-i] = object{
			"Comment": h.comment, "Created": h.created, "CreatedBy": h.createdBy,
			"Id": id, "Size": l.size, "Tags": nil,
			"Digest": l.digest, "DiffID": l.diffID, "MediaType": l.mediaType,
		}
	}
	if len(objs) > 0 && named {
		objs[0]["Tags"] = []string{name}
	}
	var b bytes.Buffer
	writeValue(&b, object{"layers": objs, "name": name})
	b.WriteByte('\n')
	return b.Bytes()
}

// hasDigestPrefix reports whether a layer name already starts with an
// algorithm ("sha256:", "sha512:"...).
func hasDigestPrefix(s string) bool {
	for i, r := range s {
		switch {
		case r == ':':
			return i > 0
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '+', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return false
}

// object is a JSON object written with sorted keys.
type object map[string]any

// writeValue writes v as Python's json.dumps(v, sort_keys=True) does.
func writeValue(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		writeString(b, v)
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case []string:
		b.WriteByte('[')
		for i, s := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writeString(b, s)
		}
		b.WriteByte(']')
	case []object:
		b.WriteByte('[')
		for i, o := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writeValue(b, o)
		}
		b.WriteByte(']')
	case object:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writeString(b, k)
			b.WriteString(": ")
			writeValue(b, v[k])
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("inspect: cannot write %T", v))
	}
}

// writeString writes s as a JSON string the way Python's json.dumps does
// by default (ensure_ascii): \" \\ \n \r \t \b \f, other characters
// outside printable ASCII as lower-case \uXXXX (surrogate pairs above
// U+FFFF). Invalid UTF-8 is written as U+FFFD.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r >= 0x20 && r < 0x7f:
				b.WriteRune(r)
			case r >= 0x10000 && r != utf8.RuneError:
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(b, `\u%04x\u%04x`, r1, r2)
			default:
				fmt.Fprintf(b, `\u%04x`, r)
			}
		}
	}
	b.WriteByte('"')
}
