package search

import (
	"fmt"
	"regexp"
	"strings"
)

// Translate returns the Go regular expression that matches what Python's
// fnmatch.fnmatchcase(name, pattern) matches, anchored at both ends: it
// follows fnmatch.translate (Python 3.11) step by step.
//
//   - "*" matches any run of characters, "/" and newlines included; runs
//     of "*" count as one, so "**" is the same as "*";
//   - "?" matches any one character;
//   - "[...]" is a set and "[!...]" its complement; a "]" right after "["
//     or "[!" is a member, "a-z" is a range, an empty range ("z-a") is
//     dropped, and a "[" with no closing "]" is a literal "[";
//   - everything else, "\" included, is literal: there is no quoting.
//
// Matching is case-sensitive, as fnmatch is on Linux. The error reports
// a set that Python's re would refuse too (a range running backwards
// after the empty ones were dropped).
func Translate(pattern string) (string, error) {
	pat := []rune(pattern)
	n := len(pat)
	var pieces []string // "" stands for a star
	const star = ""
	for i := 0; i < n; {
		c := pat[i]
		i++
		switch c {
		case '*':
			if len(pieces) == 0 || pieces[len(pieces)-1] != star {
				pieces = append(pieces, star)
			}
		case '?':
			pieces = append(pieces, ".")
		case '[':
			j := i
			if j < n && pat[j] == '!' {
				j++
			}
			if j < n && pat[j] == ']' {
				j++
			}
			for j < n && pat[j] != ']' {
				j++
			}
			if j >= n {
				pieces = append(pieces, `\[`)
				continue
			}
			set, err := translateSet(pat, i, j)
			if err != nil {
				return "", fmt.Errorf("invalid glob %q: %w", pattern, err)
			}
			pieces = append(pieces, set)
			i = j + 1
		default:
			pieces = append(pieces, regexp.QuoteMeta(string(c)))
		}
	}
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for _, p := range pieces {
		if p == star {
			// Python writes interior stars as atomic groups "(?>.*?X)",
			// which match exactly what ".*X" does when every X is a
			// run of single-character items, as it always is here.
			b.WriteString(".*")
			continue
		}
		b.WriteString(p)
	}
	b.WriteString(`)\z`)
	return b.String(), nil
}

// translateSet translates the set pat[i:j] (between "[" and its "]") to a
// Go character class, as fnmatch.translate and then Python's re read it.
func translateSet(pat []rune, i, j int) (string, error) {
	var stuff []rune
	if !containsRune(pat[i:j], '-') {
		stuff = escapeBackslashes(pat[i:j])
	} else {
		var chunks [][]rune
		k := i + 1
		if pat[i] == '!' {
			k = i + 2
		}
		for {
			k = indexRune(pat, '-', k, j)
			if k < 0 {
				break
			}
			chunks = append(chunks, pat[i:k])
			i = k + 1
			k += 3
		}
		if chunk := pat[i:j]; len(chunk) > 0 {
			chunks = append(chunks, chunk)
		} else {
			last := len(chunks) - 1
			chunks[last] = append(append([]rune{}, chunks[last]...), '-')
		}
		// Remove empty ranges: invalid in a regular expression.
		for k := len(chunks) - 1; k > 0; k-- {
			prev, cur := chunks[k-1], chunks[k]
			if len(prev) == 0 || len(cur) == 0 {
				// Python fails with an IndexError here.
				return "", fmt.Errorf("unusable range in a [...] set")
			}
			if prev[len(prev)-1] > cur[0] {
				chunks[k-1] = append(append([]rune{}, prev[:len(prev)-1]...), cur[1:]...)
				chunks = append(chunks[:k], chunks[k+1:]...)
			}
		}
		// Escape backslashes and hyphens; hyphens that make ranges are
		// the joins.
		for k, ch := range chunks {
			if k > 0 {
				stuff = append(stuff, '-')
			}
			for _, r := range ch {
				switch r {
				case '\\':
					stuff = append(stuff, '\\', '\\')
				case '-':
					stuff = append(stuff, '\\', '-')
				default:
					stuff = append(stuff, r)
				}
			}
		}
	}
	// Escape set operations (&&, ~~ and ||).
	var esc []rune
	for _, r := range stuff {
		if r == '&' || r == '~' || r == '|' {
			esc = append(esc, '\\')
		}
		esc = append(esc, r)
	}
	stuff = esc
	switch {
	case len(stuff) == 0:
		return `[^\x00-\x{10FFFF}]`, nil // empty set: never matches
	case len(stuff) == 1 && stuff[0] == '!':
		return ".", nil // negated empty set: any character
	}
	negate := false
	switch stuff[0] {
	case '!':
		negate = true
		stuff = stuff[1:]
	case '^', '[':
		stuff = append([]rune{'\\'}, stuff...)
	}
	return goClass(stuff, negate)
}

// goClass reads the body of a Python regular-expression set as
// translateSet builds it (escapes are a backslash and one character, an
// unescaped "-" between two items is a range) and writes the same set as
// a Go class, every member spelled \x{...} so that nothing in it is special.
func goClass(stuff []rune, negate bool) (string, error) {
	var b strings.Builder
	b.WriteByte('[')
	if negate {
		b.WriteByte('^')
	}
	item := func(k int) (rune, int) {
		if stuff[k] == '\\' && k+1 < len(stuff) {
			return stuff[k+1], k + 2
		}
		return stuff[k], k + 1
	}
	for k := 0; k < len(stuff); {
		lo, next := item(k)
		k = next
		hi := lo
		if k+1 < len(stuff) && stuff[k] == '-' {
			hi, k = item(k + 1)
			if hi < lo {
				return "", fmt.Errorf("bad character range %c-%c", lo, hi)
			}
		}
		fmt.Fprintf(&b, `\x{%x}`, lo)
		if hi != lo {
			fmt.Fprintf(&b, `-\x{%x}`, hi)
		}
	}
	b.WriteByte(']')
	return b.String(), nil
}

func escapeBackslashes(rs []rune) []rune {
	out := make([]rune, 0, len(rs))
	for _, r := range rs {
		if r == '\\' {
			out = append(out, '\\')
		}
		out = append(out, r)
	}
	return out
}

func containsRune(rs []rune, r rune) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// indexRune is Python's str.find(r, from, to) over runes.
func indexRune(rs []rune, r rune, from, to int) int {
	for k := max(from, 0); k < to && k < len(rs); k++ {
		if rs[k] == r {
			return k
		}
	}
	return -1
}

// Glob compiles a pattern with Translate.
func Glob(pattern string) (*regexp.Regexp, error) {
	expr, err := Translate(pattern)
	if err != nil {
		return nil, err
	}
	return regexp.Compile(expr)
}
