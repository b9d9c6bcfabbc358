package tarstream

import (
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"
)

// Matcher matches tar entry names against one shell pattern. It is made
// by CompileGlob (the exclude filter's semantics) or CompileFnmatch (Python
// fnmatch, for search), and is safe for concurrent use.
//
// Matching runs a small NFA over the name, so it takes time proportional to
// the lengths of the name and the pattern, whatever the pattern.
type Matcher struct {
	pattern string
	glob    bool // CompileGlob semantics: names and pattern normalised
	never   bool // the pattern has an empty character class: nothing matches
	nodes   []node
	start   int32
}

type op uint8

const (
	opLit   op = iota // one rune equal to r
	opAny             // any one rune
	opClass           // one rune in cls
	opSplit           // no rune: both out and out1
	opMatch
)

type node struct {
	op   op
	r    rune
	cls  *charClass
	out  int32
	out1 int32
}

// charClass is a bracket expression: ranges (a single rune is a range of
// one), possibly negated.
type charClass struct {
	negate bool
	ranges [][2]rune
}

func (c *charClass) has(r rune) bool {
	in := false
	for _, rg := range c.ranges {
		if r >= rg[0] && r <= rg[1] {
			in = true
			break
		}
	}
	return in != c.negate
}

// Pattern tokens.
type tokKind uint8

const (
	tLit      tokKind = iota
	tAny              // ?
	tClass            // [...]
	tStar             // *: any string, '/' included
	tDirs             // a "**/" segment (glob mode): "" or any string ending in '/'
	tSlashAny         // a final "/**" (glob mode): "" or '/' and any string
)

type token struct {
	kind tokKind
	r    rune
	cls  *charClass
}

// CompileGlob compiles a pattern of the exclude filter. Its semantics,
// which fix the original's surprises (spec §4.4, §13 item 2):
//
//   - Leading "./" and "/" are stripped from the pattern and from names,
//     and so are trailing '/' (directories are often stored as "dir/"),
//     so "etc/*" matches "./etc/hosts" and "/etc/hosts".
//   - A pattern matches a name if it matches the whole (normalised) path
//     or its base name: "*.pyc" matches "usr/lib/x.pyc".
//   - '*' matches any string, '/' included (as Python's fnmatch); '?'
//     any one character; "[...]" and "[!...]" a character in or not in the
//     set, with ranges "a-z" (']' first and '-' first or last are literal;
//     the details follow Python's fnmatch). There is no escape character:
//     "[*]" matches a literal '*'.
//   - "**" as a whole path segment matches any number of segments, none
//     included: "**/.git/**" matches ".git", ".git/config" and
//     "src/.git/HEAD"; "a/**/b" matches "a/b" and "a/x/y/b". Elsewhere
//     "**" is the same as '*'.
//   - An unclosed '[' is an error, as is a pattern that is empty once
//     normalised.
//
// Use MatchOrUnder to exclude what is under a matching directory too.
func CompileGlob(pattern string) (*Matcher, error) {
	p := normaliseName(pattern)
	if p == "" {
		return nil, fmt.Errorf("invalid pattern %q: empty", pattern)
	}
	toks, err := tokenize(p, true)
	if err != nil {
		return nil, fmt.Errorf("invalid pattern %q: %w", pattern, err)
	}
	return compile(pattern, toks, true), nil
}

// CompileFnmatch compiles a pattern with Python's fnmatch semantics, as
// the search filter and command use it (spec §4.3): the name is matched
// exactly as stored (a "./" prefix stays), '*' matches any string, '/'
// included, "**" is the same as '*', '?' any one character, "[...]" and
// "[!...]" as Python translates them (reversed ranges are dropped, an
// unclosed '[' is a literal '['), and there is no escape character. Match
// is true when the pattern matches the full name or its base name (what
// follows the last '/', empty for "dir/"). Names that are not valid UTF-8
// are matched as Python sees them (each invalid byte one character).
func CompileFnmatch(pattern string) (*Matcher, error) {
	toks, err := tokenize(pattern, false)
	if err != nil {
		return nil, fmt.Errorf("invalid pattern %q: %w", pattern, err)
	}
	return compile(pattern, toks, false), nil
}

// String returns the pattern as given.
func (m *Matcher) String() string { return m.pattern }

// Match reports whether the pattern matches name or its base name.
func (m *Matcher) Match(name string) bool {
	if m.glob {
		name = normaliseName(name)
	}
	return m.matchPath(name)
}

// MatchOrUnder reports whether the pattern matches name or one of its
// parent directories (each prefix of the name that ends before a '/'),
// each by its full path or base name: an excluded directory excludes what
// is under it.
func (m *Matcher) MatchOrUnder(name string) bool {
	if m.glob {
		name = normaliseName(name)
	}
	if m.matchPath(name) {
		return true
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' && i > 0 && m.matchPath(name[:i]) {
			return true
		}
	}
	return false
}

func (m *Matcher) matchPath(name string) bool {
	if m.never {
		return false
	}
	if m.run(name) {
		return true
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return m.run(name[i+1:])
	}
	return false
}

// normaliseName strips leading "./" and "/" and trailing "/"; "." is the
// empty name.
func normaliseName(s string) string {
	for {
		if strings.HasPrefix(s, "./") {
			s = s[2:]
		} else if strings.HasPrefix(s, "/") {
			s = s[1:]
		} else {
			break
		}
	}
	s = strings.TrimRight(s, "/")
	if s == "." {
		return ""
	}
	return s
}

// decodeRunes decodes s as Python decodes file names (UTF-8 with
// surrogateescape): each byte that is not part of valid UTF-8 becomes the
// lone surrogate U+DC80..U+DCFF.
func decodeRunes(s string) []rune {
	rs := make([]rune, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			r = 0xDC00 | rune(s[i])
		}
		rs = append(rs, r)
		i += n
	}
	return rs
}

// tokenize turns a pattern into tokens, following CPython's
// fnmatch.translate (3.11) for '*', '?' and bracket expressions; glob adds
// the "**" segments and makes an unclosed '[' an error.
func tokenize(pattern string, glob bool) ([]token, error) {
	pat := decodeRunes(pattern)
	var toks []token
	n := len(pat)
	for i := 0; i < n; {
		c := pat[i]
		i++
		switch c {
		case '*':
			j := i
			for j < n && pat[j] == '*' {
				j++
			}
			run := j - i + 1
			i = j
			if glob && run >= 2 && (i-run == 0 || pat[i-run-1] == '/') {
				atEnd := i == n
				switch {
				case atEnd && i-run == 0:
					toks = append(toks, token{kind: tStar})
				case atEnd && toks[len(toks)-1].kind == tLit:
					// "/**" at the end: the '/' before is part of it.
					toks = toks[:len(toks)-1]
					toks = append(toks, token{kind: tSlashAny})
				case atEnd:
					// "**/**": the '/' went to the "**/" before.
					toks = appendStar(toks)
				case pat[i] == '/':
					toks = append(toks, token{kind: tDirs})
					i++ // the '/' is part of it
				default:
					toks = appendStar(toks)
				}
				continue
			}
			toks = appendStar(toks)
		case '?':
			toks = append(toks, token{kind: tAny})
		case '[':
			cls, next, ok, err := parseClass(pat, i)
			if err != nil {
				return nil, err
			}
			if !ok {
				if glob {
					return nil, fmt.Errorf("unclosed '['")
				}
				toks = append(toks, token{kind: tLit, r: '['})
				continue
			}
			i = next
			toks = append(toks, token{kind: tClass, cls: cls})
		default:
			toks = append(toks, token{kind: tLit, r: c})
		}
	}
	return toks, nil
}

// appendStar appends a '*', merged with one just before it.
func appendStar(toks []token) []token {
	if len(toks) > 0 && toks[len(toks)-1].kind == tStar {
		return toks
	}
	return append(toks, token{kind: tStar})
}

// classItem is one character of a bracket expression as CPython's
// translate leaves it: a literal, or the hyphen of a range.
type classItem struct {
	r       rune
	isRange bool
}

// parseClass parses the bracket expression whose '[' is just before
// pat[i], as CPython 3.11's fnmatch.translate does. It returns the class
// (nil for an empty class, which matches nothing), the index after the
// closing ']', and ok false when there is no closing ']'.
func parseClass(pat []rune, i int) (*charClass, int, bool, error) {
	n := len(pat)
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
		return nil, 0, false, nil
	}
	stuff := pat[i:j]
	var items []classItem
	lits := func(rs []rune) {
		for _, r := range rs {
			items = append(items, classItem{r: r})
		}
	}
	if !containsRune(stuff, '-') {
		lits(stuff)
	} else {
		// Split at the hyphens that make ranges.
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
			chunks = append(chunks, append([]rune(nil), pat[i:k]...))
			i = k + 1
			k += 3
		}
		if chunk := pat[i:j]; len(chunk) > 0 {
			chunks = append(chunks, append([]rune(nil), chunk...))
		} else {
			chunks[len(chunks)-1] = append(chunks[len(chunks)-1], '-')
		}
		// Remove empty (reversed) ranges.
		for k := len(chunks) - 1; k > 0; k-- {
			prev, cur := chunks[k-1], chunks[k]
			if len(prev) > 0 && len(cur) > 0 && prev[len(prev)-1] > cur[0] {
				chunks[k-1] = append(prev[:len(prev)-1], cur[1:]...)
				chunks = append(chunks[:k], chunks[k+1:]...)
			}
		}
		for ci, ch := range chunks {
			if ci > 0 {
				items = append(items, classItem{r: '-', isRange: true})
			}
			lits(ch)
		}
	}
	next := j + 1
	if len(items) == 0 {
		return nil, next, true, nil // never matches
	}
	cls := &charClass{}
	if !items[0].isRange && items[0].r == '!' {
		if len(items) == 1 {
			cls.negate = true // "[!]" after removals: any character
			return cls, next, true, nil
		}
		cls.negate = true
		items = items[1:]
	}
	for x := 0; x < len(items); x++ {
		lo := items[x].r
		if x+2 < len(items) && items[x+1].isRange {
			hi := items[x+2].r
			if lo > hi {
				return nil, 0, false, fmt.Errorf("bad character range %c-%c", lo, hi)
			}
			cls.ranges = append(cls.ranges, [2]rune{lo, hi})
			x += 2
			continue
		}
		cls.ranges = append(cls.ranges, [2]rune{lo, lo})
	}
	return cls, next, true, nil
}

func containsRune(rs []rune, r rune) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// indexRune returns the index of r in pat[from:to], or -1.
func indexRune(pat []rune, r rune, from, to int) int {
	for k := from; k < to; k++ {
		if pat[k] == r {
			return k
		}
	}
	return -1
}

// compile builds the NFA of the tokens, from the end backwards.
func compile(pattern string, toks []token, glob bool) *Matcher {
	m := &Matcher{pattern: pattern, glob: glob}
	add := func(nd node) int32 {
		m.nodes = append(m.nodes, nd)
		return int32(len(m.nodes) - 1)
	}
	// star adds "any string, then next".
	star := func(next int32) int32 {
		s := add(node{op: opSplit})
		a := add(node{op: opAny, out: s})
		m.nodes[s].out, m.nodes[s].out1 = a, next
		return s
	}
	next := add(node{op: opMatch})
	for t := len(toks) - 1; t >= 0; t-- {
		tok := toks[t]
		switch tok.kind {
		case tLit:
			next = add(node{op: opLit, r: tok.r, out: next})
		case tAny:
			next = add(node{op: opAny, out: next})
		case tClass:
			if tok.cls == nil {
				m.never = true
				next = add(node{op: opClass, cls: &charClass{}, out: next})
				continue
			}
			next = add(node{op: opClass, cls: tok.cls, out: next})
		case tStar:
			next = star(next)
		case tDirs:
			slash := add(node{op: opLit, r: '/', out: next})
			x := star(slash)
			next = add(node{op: opSplit, out: next, out1: x})
		case tSlashAny:
			slash := add(node{op: opLit, r: '/', out: star(next)})
			next = add(node{op: opSplit, out: next, out1: slash})
		}
	}
	m.start = next
	return m
}

// stateSet is a set of NFA states.
type stateSet []uint64

func (s stateSet) has(i int32) bool { return s[i>>6]&(1<<(i&63)) != 0 }
func (s stateSet) set(i int32)      { s[i>>6] |= 1 << (i & 63) }
func (s stateSet) clear() {
	for i := range s {
		s[i] = 0
	}
}

// add adds state i and what it reaches without consuming a rune.
func (m *Matcher) add(s stateSet, i int32) {
	if s.has(i) {
		return
	}
	s.set(i)
	if nd := &m.nodes[i]; nd.op == opSplit {
		m.add(s, nd.out)
		m.add(s, nd.out1)
	}
}

// run reports whether the pattern matches all of s.
func (m *Matcher) run(s string) bool {
	words := (len(m.nodes) + 63) / 64
	var stack [8]uint64
	var cur, nxt stateSet
	if 2*words <= len(stack) {
		cur, nxt = stack[:words], stack[words:2*words]
	} else {
		buf := make([]uint64, 2*words)
		cur, nxt = buf[:words], buf[words:]
	}
	m.add(cur, m.start)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			r = 0xDC00 | rune(s[i])
		}
		i += n
		nxt.clear()
		alive := false
		for w, word := range cur {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				nd := &m.nodes[w*64+b]
				var ok bool
				switch nd.op {
				case opLit:
					ok = nd.r == r
				case opAny:
					ok = true
				case opClass:
					ok = nd.cls.has(r)
				}
				if ok {
					m.add(nxt, nd.out)
					alive = true
				}
			}
		}
		if !alive {
			return false
		}
		cur, nxt = nxt, cur
	}
	for w, word := range cur {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			if m.nodes[w*64+b].op == opMatch {
				return true
			}
		}
	}
	return false
}
