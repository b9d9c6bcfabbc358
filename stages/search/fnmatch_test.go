package search

import (
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

func TestGlobPythonSemantics(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "a/b/c", true}, // * crosses /
		{"*.so", "usr/lib/libfoo.so", true},
		{"*.so", "usr/lib/libfoo.so.1", false},
		{"*.so*", "usr/lib/libfoo.so.1", true},
		{"**", "a/b", true},
		{"**/app/*", "opt/app/new.txt", true},
		{"**/app/*", "app/run.sh", false}, // ** is *: needs a / before app
		{"**/.git/**", ".git/config", false},
		{"**/.git/**", "x/.git/config", true},
		{"etc/*", "./etc/hostname", false}, // ./ kept as stored
		{"./etc/*", "./etc/hostname", true},
		{"?tc", "etc", true},
		{"?tc", "/tc", true},
		{"?", "\n", true}, // DOTALL
		{"a*b", "a\nb", true},
		{"[!a]*", "bin", true},
		{"[!a]*", "app", false},
		{"[!a]", "/", true},
		{"[a-c]x", "bx", true},
		{"[a-c]x", "dx", false},
		{"[c-a]x", "bx", false}, // empty range: never matches
		{"[c-a]x", "cx", false},
		{"[c-ax]", "x", true}, // empty range dropped, x kept
		{"[]]", "]", true},
		{"[!]]", "a", true},
		{"[!]]", "]", false},
		{"[", "[", true},
		{"[abc", "[abc", true},
		{"a[", "a[", true},
		{"[a-]", "-", true},
		{"[-a]", "-", true},
		{"[a-c-e]", "-", true},
		{"[a-c-e]", "d", false},
		{"[!-a]", "-", false},
		{"[\\]", "\\", true}, // no quoting: \ is a member
		{"\\*", "\\abc", true},
		{"\\*", "*", false},
		{"[^a]", "^", true}, // ^ is a member, not a negation
		{"[^a]", "b", false},
		{"[[]", "[", true},
		{"[a[:b]", ":", true},
		{"[&&]", "&", true},
		{"[|~]", "~", true},
		{"a.b", "axb", false}, // . is literal
		{"(x)", "(x)", true},
		{"x+", "xx", false},
		{"ETC", "etc", false}, // case-sensitive
		{"données*", "données/naïve-文件.txt", true},
		{"*文件*", "données/naïve-文件.txt", true},
		{"[z-a!]", "q", true}, // Python quirk: the set becomes "!", any character
	} {
		re, err := Glob(tc.pattern)
		if err != nil {
			t.Errorf("Glob(%q): %v", tc.pattern, err)
			continue
		}
		if got := re.MatchString(tc.name); got != tc.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v (regexp %s)", tc.name, tc.pattern, got, tc.want, re)
		}
	}
}

// TestGlobAgainstPython compares Translate with Python's own fnmatch over
// random patterns and names built from the characters that matter.
func TestGlobAgainstPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const patChars = "ab-!]^[*?/.\\&z"
	const nameChars = "ab-!]^[/.\\&z"
	gen := func(chars string, n int) string {
		var b strings.Builder
		for range rng.IntN(n) {
			b.WriteByte(chars[rng.IntN(len(chars))])
		}
		return b.String()
	}
	type pair struct{ P, N string }
	var pairs []pair
	for range 4000 {
		pairs = append(pairs, pair{gen(patChars, 8), gen(nameChars, 6)})
	}
	for _, p := range []string{"[a-c-e]", "[z-a!]", "[!b-a]", "[b-a]", "[a-z-a]", "[--a]", "[a--]", "[!--]"} {
		for _, n := range []string{"a", "-", "!", "b", "z", ""} {
			pairs = append(pairs, pair{p, n})
		}
	}
	in, _ := json.Marshal(pairs)
	script := `
import fnmatch, json, sys
out = []
for p in json.load(sys.stdin):
    try:
        out.append(fnmatch.fnmatchcase(p["N"], p["P"]))
    except Exception:
        out.append(None)
print(json.dumps(out))`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(string(in))
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want []*bool
	if err := json.Unmarshal(stdout, &want); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, p := range pairs {
		re, err := Glob(p.P)
		switch {
		case want[i] == nil && err == nil:
			t.Errorf("pattern %q: Python fails, Go compiled %s", p.P, re)
		case want[i] != nil && err != nil:
			t.Errorf("pattern %q: Python works, Go: %v", p.P, err)
		case err == nil && re.MatchString(p.N) != *want[i]:
			t.Errorf("fnmatch(%q, %q): Python %v, Go %v (regexp %s)", p.N, p.P, *want[i], !*want[i], re)
		default:
			continue
		}
		if bad++; bad > 20 {
			t.Fatal("too many differences")
		}
	}
}

func TestTranslateIsAnchored(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"*.txt", `^(?s:.*\.txt)\z`},
		{"a**b", `^(?s:a.*b)\z`},
		{"[!a]", `^(?s:[^\x{61}])\z`},
	} {
		got, err := Translate(tc.pattern)
		if err != nil || got != tc.want {
			t.Errorf("Translate(%q) = %q, %v; want %q", tc.pattern, got, err, tc.want)
		}
	}
}
