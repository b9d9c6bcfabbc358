package info

import (
	"slices"
	"strings"
	"testing"
)

// The expected outputs below are Python's (3.11 textwrap, PrettyTable 3.6).

func TestTable(t *testing.T) {
	tb := &table{
		fields:   []string{"#", "Name", "Created By"},
		maxWidth: map[string]int{"Created By": 12},
		rows: [][]string{
			{"0", "a", "short"},
			{"10", "longer name", "one two three four five six"},
			{"2", "", "multi\nline cell"},
		},
	}
	want := strings.Join([]string{
		"+----+-------------+--------------+",
		"| #  | Name        | Created By   |",
		"+----+-------------+--------------+",
		"| 0  | a           | short        |",
		"| 10 | longer name | one two      |",
		"|    |             | three four   |",
		"|    |             | five six     |",
		"| 2  |             | multi        |",
		"|    |             | line cell    |",
		"+----+-------------+--------------+",
	}, "\n")
	if got := tb.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	small := &table{fields: []string{"#", "X"}, rows: [][]string{{"0", "a"}}}
	if got, want := small.String(), "+---+---+\n| # | X |\n+---+---+\n| 0 | a |\n+---+---+"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := (&table{fields: []string{"#"}}).String(); got != "" {
		t.Errorf("empty table %q, want \"\"", got)
	}
}

func TestPyFill(t *testing.T) {
	for _, tc := range []struct {
		text  string
		width int
		want  []string
	}{
		{"Hello there, how are you this fine day?  I'm glad to hear it!", 12,
			[]string{"Hello there,", "how are you", "this fine", "day?  I'm", "glad to hear", "it!"}},
		{"this-is-a-useful-feature-for-reformatting-posts-from-tim-peters'ly", 42,
			[]string{"this-is-a-useful-feature-for-reformatting-", "posts-from-tim-peters'ly"}},
		{"Em-dashes should be written -- thus.", 29, []string{"Em-dashes should be written", "-- thus."}},
		{"You can also do--this or even---this.", 17, []string{"You can also do--", "this or even---", "this."}},
		{"----------hello", 10, []string{"----------", "hello"}},
		{"a\tb\tc long text here", 6, []string{"a", "b", "c long", "text", "here"}},
		{"   leading spaces here", 8, []string{"leading", "spaces", "here"}},
		{"xxxxxxxxxxxxxxxxxxxx-yyyy", 12, []string{"xxxxxxxxxxxx", "xxxxxxxx-", "yyyy"}},
		{"RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* # buildkit", 50,
			[]string{"RUN /bin/sh -c apt-get update && apt-get install", "-y --no-install-recommends ca-certificates && rm", "-rf /var/lib/apt/lists/* # buildkit"}},
	} {
		if got := pyFill(tc.text, tc.width); got != strings.Join(tc.want, "\n") {
			t.Errorf("pyFill(%q, %d) =\n%q\nwant\n%q", tc.text, tc.width, strings.Split(got, "\n"), tc.want)
		}
	}
}

func TestSplitChunks(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"Here's an example of some -- em-dashes, fine!",
			[]string{"Here's", " ", "an", " ", "example", " ", "of", " ", "some", " ", "--", " ", "em-", "dashes,", " ", "fine!"}},
		{"and then--bam!--he was gone", []string{"and", " ", "then", "--", "bam!", "--", "he", " ", "was", " ", "gone"}},
		{"and then-- bam!-- he was gone", []string{"and", " ", "then--", " ", "bam!--", " ", "he", " ", "was", " ", "gone"}},
		{"this-is-a-useful-feature-for-reformatting-posts-from-tim-peters'ly",
			[]string{"this-", "is-", "a-", "useful-", "feature-", "for-", "reformatting-", "posts-", "from-", "tim-", "peters'ly"}},
		{"Python 1.0.0 was released on 1994-01-26.",
			[]string{"Python", " ", "1.0.0", " ", "was", " ", "released", " ", "on", " ", "1994-01-26."}},
	} {
		if got := splitChunks([]rune(tc.text)); !slices.Equal(got, tc.want) {
			t.Errorf("splitChunks(%q) =\n%q\nwant\n%q", tc.text, got, tc.want)
		}
	}
}
