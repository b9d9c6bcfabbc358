package rewrite

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// A splice replaces the JSON value at a path with new text, leaving every
// other byte of the document as it was: a config keeps its key order,
// spacing and any fields we do not know, so only what a filter changed
// changes its digest.
type splice struct {
	path []string // object keys, or "*" for every element of an array
	text []byte   // the new value's JSON text
}

// applySplices returns doc with the value at each path replaced. Paths that
// do not exist are ignored.
func applySplices(doc []byte, splices []splice) ([]byte, error) {
	type edit struct {
		start, end int
		text       []byte
	}
	var edits []edit
	p := &jsonParser{doc: doc}
	p.skipSpace()
	var walk func(path []string, want []splice) error
	walk = func(path []string, want []splice) error {
		start := p.i
		for _, s := range want {
			if len(s.path) == len(path) {
				end, err := p.skipValue()
				if err != nil {
					return err
				}
				edits = append(edits, edit{start, end, s.text})
				return nil
			}
		}
		if len(want) == 0 {
			_, err := p.skipValue()
			return err
		}
		switch p.peek() {
		case '{':
			p.i++
			for {
				p.skipSpace()
				if p.peek() == '}' {
					p.i++
					return nil
				}
				key, err := p.str()
				if err != nil {
					return err
				}
				p.skipSpace()
				if p.peek() != ':' {
					return p.errorf("':' expected")
				}
				p.i++
				p.skipSpace()
				var sub []splice
				for _, s := range want {
					if s.path[len(path)] == key {
						sub = append(sub, s)
					}
				}
				if err := walk(append(path, key), sub); err != nil {
					return err
				}
				p.skipSpace()
				switch p.peek() {
				case ',':
					p.i++
				case '}':
				default:
					return p.errorf("',' or '}' expected")
				}
			}
		case '[':
			p.i++
			for n := 0; ; n++ {
				p.skipSpace()
				if p.peek() == ']' {
					p.i++
					return nil
				}
				var sub []splice
				for _, s := range want {
					if s.path[len(path)] == "*" || s.path[len(path)] == strconv.Itoa(n) {
						sub = append(sub, s)
					}
				}
				if err := walk(append(path, "*"), sub); err != nil {
					return err
				}
				p.skipSpace()
				switch p.peek() {
				case ',':
					p.i++
				case ']':
				default:
					return p.errorf("',' or ']' expected")
				}
			}
		}
		_, err := p.skipValue()
		return err
	}
	if err := walk(nil, splices); err != nil {
		return nil, fmt.Errorf("config JSON: %w", err)
	}
	sort.Slice(edits, func(a, b int) bool { return edits[a].start > edits[b].start })
	out := bytes.Clone(doc)
	for _, e := range edits {
		out = append(out[:e.start], append(bytes.Clone(e.text), out[e.end:]...)...)
	}
	return out, nil
}

// jsonParser skips over JSON values, recording nothing but positions.
type jsonParser struct {
	doc []byte
	i   int
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jsonParser) peek() byte {
	if p.i >= len(p.doc) {
		return 0
	}
	return p.doc[p.i]
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.doc) {
		switch p.doc[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// str reads a string and returns its decoded value.
func (p *jsonParser) str() (string, error) {
	start := p.i
	if err := p.skipString(); err != nil {
		return "", err
	}
	s, err := strconv.Unquote(string(p.doc[start:p.i]))
	if err != nil {
		// JSON escapes that Go's unquote does not know (\/): keep raw.
		return string(p.doc[start+1 : p.i-1]), nil
	}
	return s, nil
}

func (p *jsonParser) skipString() error {
	if p.peek() != '"' {
		return p.errorf("string expected")
	}
	for p.i++; p.i < len(p.doc); p.i++ {
		switch p.doc[p.i] {
		case '\\':
			p.i++
		case '"':
			p.i++
			return nil
		}
	}
	return errors.New("unterminated string")
}

// skipValue skips one value and returns the offset just after it.
func (p *jsonParser) skipValue() (int, error) {
	depth := 0
	for {
		p.skipSpace()
		switch c := p.peek(); c {
		case 0:
			return 0, p.errorf("unexpected end")
		case '"':
			if err := p.skipString(); err != nil {
				return 0, err
			}
		case '{', '[':
			depth++
			p.i++
			continue
		case '}', ']':
			depth--
			p.i++
		case ',', ':':
			p.i++
			continue
		default:
			start := p.i
			for p.i < len(p.doc) && !bytes.ContainsRune([]byte(" \t\r\n,:]}"), rune(p.doc[p.i])) {
				p.i++
			}
			if p.i == start {
				return 0, p.errorf("value expected")
			}
		}
		if depth <= 0 {
			if depth < 0 {
				return 0, p.errorf("unbalanced brackets")
			}
			return p.i, nil
		}
	}
}
