package info

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// member is one key of a JSON object; object keeps them in order, where a
// Go map or struct tags could not express the keys that come and go.
type member struct {
	key   string
	value any
}

type object []member

// MarshalJSON writes the members in order, compact and without HTML
// escaping.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := encode(&b, m.key); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := encode(&b, m.value); err != nil {
			return nil, fmt.Errorf("%s: %w", m.key, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func encode(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// orNull is v, or nil (JSON null) where the original had None.
func orNull[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

// object returns the info's keys in the original's order (spec 11.1),
// with manifest_digest after media_type and the index keys after it.
func (inf *Info) object() object {
	o := object{{"image", inf.Image}, {"tag", inf.Tag}}
	if inf.HasManifest {
		o = append(o, member{"schema_version", inf.SchemaVersion}, member{"media_type", orNull(inf.MediaType)},
			member{"manifest_digest", inf.ManifestDigest})
	}
	if inf.HasIndex {
		o = append(o, member{"index_digest", inf.IndexDigest}, member{"index_media_type", orNull(inf.IndexMediaType)},
			member{"platforms", inf.Platforms})
	}
	if inf.HasManifest {
		var size any
		if inf.ConfigDigest != "" {
			size = inf.ConfigSize
		}
		o = append(o, member{"config_digest", orNull(inf.ConfigDigest)}, member{"config_size", size},
			member{"layer_count", inf.LayerCount}, member{"total_compressed_size", inf.TotalCompressedSize},
			member{"layers", inf.layerObjects()})
	}
	if inf.HasConfig {
		var created any
		if inf.Created != nil {
			created = *inf.Created
		}
		o = append(o, member{"architecture", inf.Architecture}, member{"os", inf.OS}, member{"variant", inf.Variant},
			member{"created", created}, member{"diff_ids", inf.DiffIDs})
		if !inf.HasManifest {
			o = append(o, member{"layer_count", inf.LayerCount}, member{"layers", inf.layerObjects()})
		}
		labels := object{}
		for _, l := range inf.Labels {
			labels = append(labels, member{l.Key, l.Value})
		}
		o = append(o, member{"history_count", inf.HistoryCount}, member{"empty_layer_count", inf.EmptyLayerCount},
			member{"labels", labels}, member{"env", inf.Env}, member{"entrypoint", inf.Entrypoint},
			member{"cmd", inf.Cmd}, member{"working_dir", inf.WorkingDir},
			member{"exposed_ports", inf.ExposedPorts}, member{"volumes", inf.Volumes})
	}
	return o
}

func (inf *Info) layerObjects() []object {
	out := make([]object, len(inf.Layers))
	for i, l := range inf.Layers {
		o := object{{"index", l.Index}}
		if l.HasBlob {
			o = append(o, member{"digest", l.Digest}, member{"size", l.Size},
				member{"media_type", l.MediaType}, member{"compression", l.Compression})
		}
		if l.HasDiffID {
			o = append(o, member{"diff_id", l.DiffID})
		}
		if l.HasCreatedBy {
			o = append(o, member{"created_by", l.CreatedBy})
		}
		out[i] = o
	}
	return out
}

// MarshalJSON returns the info as a compact JSON object with the
// original's keys in the original's order.
func (inf *Info) MarshalJSON() ([]byte, error) {
	return inf.object().MarshalJSON()
}

// WriteJSON writes the info as the original's `json.dumps(info, indent=2)`
// did: keys in order, two-space indent, non-ASCII characters escaped as
// \uXXXX, then a newline.
func (inf *Info) WriteJSON(w io.Writer) error {
	compact, err := inf.MarshalJSON()
	if err != nil {
		return err
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, compact, "", "  "); err != nil {
		return err
	}
	out := asciiJSON(ind.Bytes())
	out = append(out, '\n')
	_, err = w.Write(out)
	return err
}

// asciiJSON escapes every character outside printable ASCII the way
// Python's json.dumps does by default (ensure_ascii): \u007f and above as
// lower-case \uXXXX, astral characters as surrogate pairs. Such characters
// can only occur inside JSON strings, so the rest is copied unchanged.
func asciiJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r < utf8.RuneSelf && r != 0x7f:
			out = append(out, b[0])
		case r >= 0x10000:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default: // includes utf8.RuneError for bytes the encoder never leaves
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		b = b[n:]
	}
	return out
}
