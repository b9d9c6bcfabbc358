package info

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// table is the part of Python's PrettyTable the original used: the
// default style (+---+ rules, a header row, one space of padding), every
// column left-aligned (header included), and per-column maximum widths
// enforced by wrapping each too-long cell line with textwrap.fill.
//
// Widths are counted in characters; PrettyTable counts terminal columns
// (wcwidth), which differs only for wide (East Asian) and zero-width
// characters.
type table struct {
	fields   []string
	maxWidth map[string]int
	rows     [][]string
}

// String renders the table without a final newline; an empty table is "",
// as PrettyTable gives.
func (t *table) String() string {
	if len(t.rows) == 0 {
		return ""
	}
	// A column is as wide as its header and its widest cell line, but no
	// wider than its maximum unless its header is.
	widths := make([]int, len(t.fields))
	for i, f := range t.fields {
		widths[i] = blockWidth(f)
	}
	for _, row := range t.rows {
		for i, v := range row {
			w := blockWidth(v)
			if mw, ok := t.maxWidth[t.fields[i]]; ok {
				w = min(w, mw)
			}
			widths[i] = max(widths[i], w)
		}
	}

	var rule strings.Builder
	rule.WriteByte('+')
	for _, w := range widths {
		rule.WriteString(strings.Repeat("-", w+2))
		rule.WriteByte('+')
	}
	hrule := rule.String()

	var b strings.Builder
	writeLine := func(cells []string) {
		b.WriteByte('|')
		for i, c := range cells {
			b.WriteByte(' ')
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", max(widths[i]-utf8.RuneCountInString(c), 0)))
			b.WriteString(" |")
		}
		b.WriteByte('\n')
	}
	b.WriteString(hrule + "\n")
	writeLine(t.fields)
	b.WriteString(hrule + "\n")
	for _, row := range t.rows {
		cellLines := make([][]string, len(row))
		height := 0
		for i, v := range row {
			var lines []string
			for _, l := range strings.Split(v, "\n") {
				if utf8.RuneCountInString(l) > widths[i] {
					l = pyFill(l, widths[i])
				}
				lines = append(lines, strings.Split(l, "\n")...)
			}
			cellLines[i] = lines
			height = max(height, len(lines))
		}
		for y := range height {
			cells := make([]string, len(row))
			for i, lines := range cellLines {
				if y < len(lines) {
					cells[i] = lines[y]
				}
			}
			writeLine(cells)
		}
	}
	b.WriteString(hrule)
	return b.String()
}

// blockWidth is the width of the widest line of s.
func blockWidth(s string) int {
	w := 0
	for _, l := range strings.Split(s, "\n") {
		w = max(w, utf8.RuneCountInString(l))
	}
	return w
}

// pyFill is Python's textwrap.fill(text, width) with its defaults:
// tabs expanded to 8 columns, whitespace characters turned into spaces,
// the text split into chunks at whitespace and after the hyphens of
// hyphenated words, chunks packed greedily into lines of at most width
// characters with whitespace dropped at line ends (and at line starts
// after the first), and words longer than a line broken, after their last
// hyphen that fits when they have one (as Python 3.12 does).
func pyFill(text string, width int) string {
	r := []rune(expandTabs(text, 8))
	for i, c := range r {
		if isWrapSpace(c) {
			r[i] = ' '
		}
	}
	return strings.Join(wrapChunks(splitChunks(r), width), "\n")
}

// expandTabs is Python's str.expandtabs: the column restarts after \n and
// \r.
func expandTabs(s string, size int) string {
	if !strings.ContainsRune(s, '\t') {
		return s
	}
	var b strings.Builder
	col := 0
	for _, c := range s {
		switch c {
		case '\t':
			n := size - col%size
			b.WriteString(strings.Repeat(" ", n))
			col += n
		case '\n', '\r':
			b.WriteRune(c)
			col = 0
		default:
			b.WriteRune(c)
			col++
		}
	}
	return b.String()
}

// isWrapSpace is textwrap's whitespace: ASCII only.
func isWrapSpace(c rune) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// The character classes of textwrap's wordsep_re, with Python's Unicode
// meanings: \w is a letter, number or '_'; letter is \w but not a decimal
// digit; word_punct is \w or one of !"'&.,?
func isWordChar(c rune) bool { return c == '_' || unicode.IsLetter(c) || unicode.IsNumber(c) }
func isLetter(c rune) bool   { return isWordChar(c) && !unicode.IsDigit(c) }
func isWordPunct(c rune) bool {
	return isWordChar(c) || strings.ContainsRune(`!"'&.,?`, c)
}

// splitChunks splits text as textwrap's wordsep_re does (with
// break_on_hyphens): runs of whitespace; an em-dash ("--" or more) between
// a word_punct character and a word character; and words, ended at
// whitespace or the end, just before such an em-dash, or just after a
// hyphen between letters (two letters, or letter-hyphen-letter, before it,
// and a letter, an optional hyphen and a letter after it).
func splitChunks(r []rune) []string {
	n := len(r)
	at := func(i int) rune {
		if i < 0 || i >= n {
			return -1
		}
		return r[i]
	}
	// hyphens counts the hyphens starting at i.
	hyphens := func(i int) int {
		k := 0
		for at(i+k) == '-' {
			k++
		}
		return k
	}
	// emDashAt reports an em-dash starting at i: two or more hyphens
	// followed by a word character.
	emDashAt := func(i int) (int, bool) {
		h := hyphens(i)
		return h, h >= 2 && i+h < n && isWordChar(r[i+h])
	}
	var chunks []string
	for p := 0; p < n; {
		if isWrapSpace(r[p]) {
			q := p
			for q < n && isWrapSpace(r[q]) {
				q++
			}
			chunks = append(chunks, string(r[p:q]))
			p = q
			continue
		}
		if p > 0 && isWordPunct(r[p-1]) {
			if h, ok := emDashAt(p); ok {
				chunks = append(chunks, string(r[p:p+h]))
				p += h
				continue
			}
		}
		end := n
		for q := p + 1; q <= n; q++ {
			// A hyphen ends the chunk (and belongs to it) between letters.
			if q < n && r[q] == '-' &&
				(isLetter(at(q-2)) && isLetter(at(q-1)) || isLetter(at(q-3)) && at(q-2) == '-' && isLetter(at(q-1))) &&
				isLetter(at(q+1)) && (isLetter(at(q+2)) || at(q+2) == '-' && isLetter(at(q+3))) {
				end = q + 1
				break
			}
			if q == n || isWrapSpace(r[q]) {
				end = q
				break
			}
			if _, ok := emDashAt(q); ok && isWordPunct(r[q-1]) {
				end = q
				break
			}
		}
		chunks = append(chunks, string(r[p:end]))
		p = end
	}
	return chunks
}

// wrapChunks is textwrap's _wrap_chunks with drop_whitespace and
// break_long_words (lengths in characters).
func wrapChunks(chunks []string, width int) []string {
	length := func(s string) int { return utf8.RuneCountInString(s) }
	blank := func(s string) bool { return strings.TrimSpace(s) == "" }
	var lines []string
	for len(chunks) > 0 {
		var cur []string
		curLen := 0
		if blank(chunks[0]) && len(lines) > 0 {
			chunks = chunks[1:]
		}
		for len(chunks) > 0 && curLen+length(chunks[0]) <= width {
			curLen += length(chunks[0])
			cur = append(cur, chunks[0])
			chunks = chunks[1:]
		}
		if len(chunks) > 0 && length(chunks[0]) > width {
			// _handle_long_word: break the word to fill the line, after
			// its last hyphen within reach if there are non-hyphens
			// before that hyphen.
			spaceLeft := width - curLen
			if width < 1 {
				spaceLeft = 1
			}
			word := []rune(chunks[0])
			end := spaceLeft
			if len(word) > spaceLeft {
				if h := lastIndexRune(word[:spaceLeft], '-'); h > 0 && strings.Trim(string(word[:h]), "-") != "" {
					end = h + 1
				}
			}
			end = min(end, len(word))
			cur = append(cur, string(word[:end]))
			chunks[0] = string(word[end:])
		}
		if len(cur) > 0 && blank(cur[len(cur)-1]) {
			cur = cur[:len(cur)-1]
		}
		if len(cur) > 0 {
			lines = append(lines, strings.Join(cur, ""))
		}
	}
	return lines
}

func lastIndexRune(r []rune, c rune) int {
	for i := len(r) - 1; i >= 0; i-- {
		if r[i] == c {
			return i
		}
	}
	return -1
}
