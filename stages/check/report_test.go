package check

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestReportText(t *testing.T) {
	r := &Report{Reference: "example.com/app:v1"}
	r.Add(Info, "schema-version", "Manifest schemaVersion is 2")
	r.AddLayer(1, Error, "diff-id", "Layer 1 diff_id mismatch: expected %s, got %s", cut("sha256:0123456789abcdef0123456789"), "x")
	r.Add(Warning, "zstd-compat", "1 layer(s) use zstd compression; Docker Engine < 20.10 and containerd < 1.5 cannot pull this image")
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "Errors:\n  [diff-id] Layer 1 diff_id mismatch: expected sha256:0123456789abcdef01..., got x\n\n" +
		"Warnings:\n  [zstd-compat] 1 layer(s) use zstd compression; Docker Engine < 20.10 and containerd < 1.5 cannot pull this image\n\n" +
		"Info:\n  [schema-version] Manifest schemaVersion is 2\n\n" +
		"Check complete (full): 1 error(s), 1 warning(s)\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	r.Fast = true
	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "{\n  \"image\": \"example.com/app\",\n  \"tag\": \"v1\",\n  \"mode\": \"fast\",\n  \"errors\": 1,\n  \"warnings\": 1,\n  \"results\": [\n    {\n      \"severity\": \"info\",\n      \"check\": \"schema-version\",\n      \"message\": \"Manifest schemaVersion is 2\"\n    },") {
		t.Errorf("JSON:\n%s", b.String())
	}
	var doc struct{ Results []map[string]any }
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || doc.Results[1]["layer"] != float64(1) {
		t.Errorf("layer key: %v %v", err, doc.Results)
	}
}

func TestEmptyReport(t *testing.T) {
	var b bytes.Buffer
	(&Report{Fast: true}).WriteText(&b)
	if b.String() != "Check complete (fast (metadata only)): 0 error(s), 0 warning(s)\n" {
		t.Errorf("%q", b.String())
	}
	b.Reset()
	(&Report{}).WriteJSON(&b)
	if !strings.Contains(b.String(), `"image": "unknown"`) || !strings.Contains(b.String(), `"results": []`) {
		t.Errorf("%s", b.String())
	}
}

func TestHelpers(t *testing.T) {
	for in, want := range map[string]string{"a": "'a'", "it's": `"it's"`, `a'b"c`: `'a\'b"c'`, "x\ny": `'x\ny'`} {
		if got := pyRepr(in); got != want {
			t.Errorf("pyRepr(%q) = %s, want %s", in, got, want)
		}
	}
	for n, want := range map[int64]string{10: "10 B", 2048: "2.0 KB", 3 << 20: "3.0 MB", 5 << 30: "5.0 GB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %s", n, got)
		}
	}
	for p, want := range map[string]bool{"..": true, "../x": true, "a/../..": true, "a/..": false, "..a": false} {
		if escapes(p) != want {
			t.Errorf("escapes(%q) != %v", p, want)
		}
	}
	if cleanName("./a/b/") != "a/b" || cleanName("./") != "" || cleanName("/abs") != "abs" {
		t.Error("cleanName")
	}
}

func TestMetadataNothing(t *testing.T) {
	r := &Report{}
	if _, err := Metadata(Meta{}, r); err != nil {
		t.Fatal(err)
	}
	if !r.Has("metadata", Warning) || len(r.Results()) != 1 {
		t.Errorf("%v", r.Results())
	}
	r = &Report{}
	_, err := Metadata(Meta{Manifest: []byte(`{"schemaVersion":1,"layers":[{"mediaType":"text/plain","size":1}]}`),
		Config: []byte(`{"rootfs":{"diff_ids":["sha256:abc"]},"config":{"ArgsEscaped":true}}`)}, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"schema-version", "rootfs-type", "config-descriptor", "layer-media-type", "diff-id-format"} {
		if !r.Has(id, Error) {
			t.Errorf("no %s error: %v", id, r.Results())
		}
	}
	if !r.Has("args-escaped", Warning) || !r.Has("history-count", Info) {
		t.Errorf("%v", r.Results())
	}
	for _, res := range r.Results() {
		if res.Check == "rootfs-type" && res.Message != `Config rootfs.type is None, expected "layers"` {
			t.Errorf("%q", res.Message)
		}
	}
}
