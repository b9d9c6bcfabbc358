package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

type sliceInput []elements.Element

func (s sliceInput) Run(ctx context.Context, out chan<- elements.Element) error {
	for _, el := range s {
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	return nil
}

// collect is an output that keeps every element with its body's bytes.
type collect struct {
	els    []elements.Element
	bodies [][]byte
	fail   error
}

func (c *collect) Run(ctx context.Context, in <-chan elements.Element) error {
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil || !ok {
			return err
		}
		var b []byte
		if el.Body != nil {
			b, err = io.ReadAll(el.Body)
			el.Close()
			if err != nil {
				return err
			}
		}
		c.els = append(c.els, el)
		c.bodies = append(c.bodies, b)
		if c.fail != nil && el.Kind == elements.KindLayer {
			return c.fail
		}
	}
}

const config = `{"architecture":"amd64","history":[` +
	`{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop) ADD file:abc in / ","comment":"base"},` +
	`{"created":"2024-01-02T03:04:06.5+01:00","created_by":"/bin/sh -c #(nop) ENV A=1","empty_layer":true},` +
	`{"created":"2024-01-03T00:00:00Z","created_by":"RUN echo \"<é>\" \u0026\u0026 true 😀"},` +
	`{"created_by":"no time"}` +
	`],"rootfs":{"type":"layers","diff_ids":[]}}`

func elementsOf(layerOrder ...int) []elements.Element {
	els := []elements.Element{
		{Kind: elements.KindImage, Name: "test/one:v1", Index: -1, Size: -1},
		{Kind: elements.KindConfig, Name: "c.json", Index: -1, Digest: digest.FromString(config), Size: int64(len(config)),
			Body: io.NopCloser(strings.NewReader(config))},
	}
	layers := []elements.Element{
		{Kind: elements.KindLayer, Name: "aaa", Index: 0, Size: 10240, MediaType: "application/vnd.oci.image.layer.v1.tar",
			Digest: "sha256:aaa", DiffID: "sha256:aaa", Body: io.NopCloser(strings.NewReader("layer zero"))},
		{Kind: elements.KindLayer, Name: "sha256:bbb", Index: 1, Size: -1, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
			Digest: "sha256:bbbgz", DiffID: "sha256:bbb", Body: io.NopCloser(strings.NewReader("layer one"))},
		{Kind: elements.KindLayer, Name: "ccc", Index: 2, Size: 3, Body: io.NopCloser(strings.NewReader("two"))},
	}
	for _, i := range layerOrder {
		els = append(els, layers[i])
	}
	return els
}

func run(t *testing.T, path string, out stages.Output, els []elements.Element) error {
	t.Helper()
	f, err := New(path, stages.Env{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return (&engine.Pipeline{Input: sliceInput(els), Filters: []stages.Filter{f}, Output: out}).Run(context.Background())
}

func TestInspectLine(t *testing.T) {
	want := `{"layers": [` +
		`{"Comment": "", "Created": 0, "CreatedBy": "no time", "DiffID": "", "Digest": "", "Id": "sha256:ccc", "MediaType": "", "Size": 3, "Tags": ["test/one:v1"]}, ` +
		`{"Comment": "", "Created": 1704240000, "CreatedBy": "RUN echo \"<\u00e9>\" && true \ud83d\ude00", "DiffID": "sha256:bbb", "Digest": "sha256:bbbgz", "Id": "sha256:bbb", "MediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "Size": 0, "Tags": null}, ` +
		`{"Comment": "base", "Created": 1704164645, "CreatedBy": "/bin/sh -c #(nop) ADD file:abc in / ", "DiffID": "sha256:aaa", "Digest": "sha256:aaa", "Id": "sha256:aaa", "MediaType": "application/vnd.oci.image.layer.v1.tar", "Size": 10240, "Tags": null}` +
		`], "name": "test/one:v1"}` + "\n"
	// Layers out of order are paired with history by index.
	for _, order := range [][]int{{0, 1, 2}, {2, 0, 1}} {
		path := filepath.Join(t.TempDir(), "inspect.jsonl")
		out := &collect{}
		if err := run(t, path, out, elementsOf(order...)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("order %v:\n%s\nwant:\n%s", order, got, want)
		}
		var v map[string]any
		if err := json.Unmarshal(got, &v); err != nil {
			t.Errorf("not JSON: %v", err)
		}
		// Everything passes through, the config with the same bytes.
		if len(out.els) != 2+len(order) || string(out.bodies[1]) != config || out.els[1].Digest != digest.FromString(config) {
			t.Errorf("passed %d elements, config %q", len(out.els), out.bodies[1])
		}
		if string(out.bodies[2]) == "" {
			t.Error("layer body lost")
		}
	}
}

func TestInspectAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inspect.jsonl")
	for range 2 {
		if err := run(t, path, &collect{}, elementsOf(0)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(lines) != 2 || lines[0] != lines[1] {
		t.Fatalf("%q", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&^0o022 != 0o644&^0o022 {
		t.Errorf("mode %v %v", fi.Mode(), err)
	}
}

func TestInspectNothingWrittenOnFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inspect.jsonl")
	boom := errors.New("output failed")
	err := run(t, path, &collect{fail: boom}, elementsOf(0, 1, 2))
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("file written after a failure: %v", err)
	}
}

func TestInspectBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inspect.jsonl")
	els := elementsOf(0)
	els[1] = elements.Element{Kind: elements.KindConfig, Name: "c.json", Index: -1, Body: io.NopCloser(strings.NewReader("{nope"))}
	els[0].Name = ""
	if err := run(t, path, &collect{}, els); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := `{"layers": [{"Comment": "", "Created": 0, "CreatedBy": "", "DiffID": "sha256:aaa", "Digest": "sha256:aaa", "Id": "sha256:aaa", "MediaType": "application/vnd.oci.image.layer.v1.tar", "Size": 10240, "Tags": null}], "name": ""}` + "\n"
	if string(got) != want {
		t.Errorf("%s\nwant\n%s", got, want)
	}
}

func TestInspectConfigDigestChecked(t *testing.T) {
	els := elementsOf(0)
	els[1].Digest = digest.FromString("other")
	err := run(t, filepath.Join(t.TempDir(), "x"), &collect{}, els)
	if !errors.Is(err, elements.ErrDigestMismatch) {
		t.Fatalf("err %v", err)
	}
}

func TestFromSpec(t *testing.T) {
	spec, err := uri.ParseFilter("inspect:file=/tmp/a,b.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	f, err := FromSpec(spec, stages.Env{})
	if err != nil || f.path != "/tmp/a,b.jsonl" {
		t.Fatalf("%v %+v", err, f)
	}
}

func TestWriteStringLikePython(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        `"plain"`,
		"q\"b\\":       `"q\"b\\"`,
		"\n\r\t\b\f":   `"\n\r\t\b\f"`,
		"\x01\x1f\x7f": `"\u0001\u001f\u007f"`,
		"<>&":          `"<>&"`,
		"é\u2028":      `"\u00e9\u2028"`,
		"😀":            `"\ud83d\ude00"`,
		"\xff":         `"\ufffd"`,
	} {
		var b bytes.Buffer
		writeString(&b, in)
		if b.String() != want {
			t.Errorf("%q: %s, want %s", in, b.String(), want)
		}
	}
}
