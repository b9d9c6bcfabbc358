package tarstream

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

type globCase struct {
	name  string
	match bool // Match
	under bool // MatchOrUnder
}

func TestCompileGlob(t *testing.T) {
	tests := []struct {
		pattern string
		cases   []globCase
	}{
		{"etc/*", []globCase{
			{"etc/hello.conf", true, true}, {"./etc/hello.conf", true, true}, {"/etc/hello.conf", true, true},
			{"etc/ssl/certs/x.pem", true, true}, // '*' crosses '/'
			{"etc", false, false}, {"etc/", false, false}, {"usr/etc/x", false, false},
		}},
		{"**/.git/**", []globCase{
			{".git", true, true}, {".git/", true, true}, {"./.git/", true, true}, {".git/config", true, true},
			{"./.git/config", true, true}, {"src/.git", true, true}, {"a/b/.git/objects/ab/cd", true, true},
			{".gitignore", false, false}, {"a/.github/x", false, false}, {"git/x", false, false},
		}},
		{".git", []globCase{
			{".git", true, true}, {"a/.git/", true, true}, {"a/.git/config", false, true}, {".github", false, false},
		}},
		{"*.pyc", []globCase{
			{"x.pyc", true, true}, {"./usr/lib/x.pyc", true, true}, {"x.py", false, false},
			{"cache.pyc/inner", false, true},
		}},
		{"node_modules", []globCase{
			{"node_modules/", true, true}, {"app/node_modules", true, true},
			{"app/node_modules/x/y.js", false, true}, {"app/node_modules_old/y.js", false, false},
		}},
		{"a/**/b", []globCase{
			{"a/b", true, true}, {"./a/b", true, true}, {"a/x/b", true, true}, {"a/x/y/b", true, true},
			{"a/xb", false, false}, {"a/b/c", false, true}, {"c/a/b", false, false},
		}},
		{"a/**", []globCase{{"a", true, true}, {"a/", true, true}, {"a/b/c", true, true}, {"ab", false, false}}},
		{"**", []globCase{{"anything/at/all", true, true}, {".", true, true}}},
		{"**/b", []globCase{{"b", true, true}, {"a/b", true, true}, {"a/cb", false, false}}},
		{"**/**", []globCase{{"x", true, true}, {"x/y", true, true}}},
		{"a**b", []globCase{{"ab", true, true}, {"a/x/b", true, true}, {"a/x/c", false, false}}},
		{"./usr/lib/", []globCase{{"usr/lib", true, true}, {"usr/lib/", true, true}, {"usr/lib/x.so", false, true}, {"usr/lib64", false, false}}},
		{"/usr/lib/*.so", []globCase{{"./usr/lib/libc.so", true, true}, {"usr/lib/x/libc.so", true, true}, {"usr/lib/libc.so.6", false, false}}},
		{"[abc]?", []globCase{{"ax", true, true}, {"d/bé", true, true}, {"dx", false, false}, {"a", false, false}}},
		{"[!a]*", []globCase{{"b", true, true}, {"a", false, false}, {"x/a", true, true}, {"a/a", false, false}}},
		{"[a-c][!0-9]", []globCase{{"bx", true, true}, {"b1", false, false}}},
		{"[]]", []globCase{{"]", true, true}, {"x", false, false}}},
		{"[!]]", []globCase{{"x", true, true}, {"]", false, false}}},
		{"[*]", []globCase{{"*", true, true}, {"x", false, false}}},
		{"*", []globCase{{"", true, true}, {"x/y", true, true}}},
		{"\xff*", []globCase{{"\xffabc", true, true}, {"\xfeabc", false, false}}},
		{"?", []globCase{{"é", true, true}, {"ab", false, false}}},
	}
	for _, tt := range tests {
		m, err := CompileGlob(tt.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tt.pattern, err)
		}
		for _, c := range tt.cases {
			if got := m.Match(c.name); got != c.match {
				t.Errorf("%q Match(%q) = %v", tt.pattern, c.name, got)
			}
			if got := m.MatchOrUnder(c.name); got != c.under {
				t.Errorf("%q MatchOrUnder(%q) = %v", tt.pattern, c.name, got)
			}
		}
	}
	for _, bad := range []string{"[", "a[b", "[!", "[]", "", "./", "/", "[z-a"} {
		if _, err := CompileGlob(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func TestCompileFnmatch(t *testing.T) {
	tests := []struct {
		pattern string
		cases   []globCase
	}{
		{"etc/*", []globCase{{"etc/hello.conf", true, true}, {"./etc/hello.conf", false, false}, {"etc/a/b", true, true}}},
		{"**/.git/**", []globCase{{".git/config", false, false}, {"a/.git/config", true, true}, {".git", false, false}}},
		{"*.conf", []globCase{{"./etc/x.conf", true, true}}},
		{"hosts", []globCase{{"etc/hosts", true, true}, {"etc/hosts/", false, true}, {"hosts2", false, false}}},
		{"[", []globCase{{"[", true, true}, {"a", false, false}}},
		{"a[b", []globCase{{"a[b", true, true}}},
		{"[z-a]", []globCase{{"z", false, false}, {"a", false, false}, {"-", false, false}}},
		{"[!z-a]", []globCase{{"q", true, true}, {"/", true, true}, {"ab", false, false}}},
		{"[a-]", []globCase{{"-", true, true}, {"a", true, true}, {"b", false, false}}},
		{"[^a]", []globCase{{"^", true, true}, {"a", true, true}, {"b", false, false}}},
		{`\*`, []globCase{{`\x`, true, true}, {"*", false, false}}},
		{"?", []globCase{{"é", true, true}, {"\xff", true, true}, {"ab", false, false}}},
		{"*", []globCase{{"", true, true}, {"\n", true, true}}},
	}
	for _, tt := range tests {
		m, err := CompileFnmatch(tt.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tt.pattern, err)
		}
		for _, c := range tt.cases {
			if got := m.Match(c.name); got != c.match {
				t.Errorf("%q Match(%q) = %v", tt.pattern, c.name, got)
			}
			if got := m.MatchOrUnder(c.name); got != c.under {
				t.Errorf("%q MatchOrUnder(%q) = %v", tt.pattern, c.name, got)
			}
		}
	}
}

// TestFnmatchAgainstPython compares CompileFnmatch with Python's fnmatch on
// random patterns and names made of the characters that matter.
func TestFnmatchAgainstPython(t *testing.T) {
	py := python(t)
	const alphabet = "ab/-!^]*?[\\.z"
	extra := []string{"é", "\xff", "\xc3", "&", "~"}
	r := rand.New(rand.NewPCG(1, 2))
	gen := func(n int) string {
		var b strings.Builder
		for range r.IntN(n + 1) {
			if r.IntN(10) == 0 {
				b.WriteString(extra[r.IntN(len(extra))])
			} else {
				b.WriteByte(alphabet[r.IntN(len(alphabet))])
			}
		}
		return b.String()
	}
	type pair struct{ pat, name string }
	var pairs []pair
	var in bytes.Buffer
	for range 30000 {
		p := pair{gen(8), gen(8)}
		pairs = append(pairs, p)
		fmt.Fprintf(&in, "%s %s\n", hex.EncodeToString([]byte(p.pat)), hex.EncodeToString([]byte(p.name)))
	}
	cmd := exec.Command(py, "-c", `
import sys, os, fnmatch, posixpath
out = []
for line in sys.stdin:
    p, n = line.split(" ")
    p = os.fsdecode(bytes.fromhex(p)); n = os.fsdecode(bytes.fromhex(n.strip()))
    try:
        out.append("1" if fnmatch.fnmatch(n, p) or fnmatch.fnmatch(posixpath.basename(n), p) else "0")
    except Exception:
        out.append("E")
print("".join(out))
`)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	res := strings.TrimSpace(string(out))
	if len(res) != len(pairs) {
		t.Fatalf("%d results for %d pairs", len(res), len(pairs))
	}
	bad := 0
	for i, p := range pairs {
		m, err := CompileFnmatch(p.pat)
		got := "E"
		if err == nil {
			got = "0"
			if m.Match(p.name) {
				got = "1"
			}
		}
		if got != res[i:i+1] {
			if bad++; bad < 20 {
				t.Errorf("fnmatch(%q, %q): %s, Python %s", p.name, p.pat, got, res[i:i+1])
			}
		}
	}
}

// TestGlobExtendsFnmatch checks that CompileGlob agrees with Python's
// fnmatch (CompileFnmatch) wherever its extensions do not apply: no "**",
// names and patterns without leading "./" or "/" or trailing "/".
func TestGlobExtendsFnmatch(t *testing.T) {
	const alphabet = "ab/-!]*?[.z"
	r := rand.New(rand.NewPCG(3, 4))
	gen := func(n int) string {
		var b strings.Builder
		for range r.IntN(n + 1) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	plain := func(s string) bool { return s != "" && normaliseName(s) == s }
	n := 0
	for range 100000 {
		p, name := gen(7), gen(7)
		if strings.Contains(p, "**") || !plain(p) || !plain(name) {
			continue
		}
		g, err := CompileGlob(p)
		if err != nil {
			continue // unclosed '['
		}
		f, err := CompileFnmatch(p)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if g.Match(name) != f.Match(name) {
			t.Errorf("%q on %q: glob %v, fnmatch %v", p, name, g.Match(name), f.Match(name))
		}
	}
	if n < 1000 {
		t.Fatalf("only %d cases", n)
	}
}

func BenchmarkMatch(b *testing.B) {
	m, err := CompileGlob("**/node_modules/**/*.[jt]s")
	if err != nil {
		b.Fatal(err)
	}
	name := "./app/src/node_modules/some-package/dist/deep/path/index.js"
	for b.Loop() {
		m.MatchOrUnder(name)
	}
}
