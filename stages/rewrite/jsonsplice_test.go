package rewrite

import (
	"encoding/json"
	"testing"
)

func TestApplySplices(t *testing.T) {
	tests := []struct {
		name, doc string
		splices   []splice
		want      string
	}{
		{"diff ids, formatting kept",
			`{"architecture": "amd64",  "rootfs": {"type":"layers", "diff_ids": ["sha256:a", "sha256:b"]}, "x":[1,2]}`,
			[]splice{{[]string{"rootfs", "diff_ids"}, []byte(`["sha256:c","sha256:d"]`)}},
			`{"architecture": "amd64",  "rootfs": {"type":"layers", "diff_ids": ["sha256:c","sha256:d"]}, "x":[1,2]}`},
		{"history created in every element",
			`{"created":"2020","history":[{"created":"2021","created_by":"a"},{"created_by":"b"},{"created":"2022"}]}`,
			[]splice{{[]string{"created"}, []byte(`"1970"`)}, {[]string{"history", "*", "created"}, []byte(`"1970"`)}},
			`{"created":"1970","history":[{"created":"1970","created_by":"a"},{"created_by":"b"},{"created":"1970"}]}`},
		{"missing path ignored", `{"a":{"b":1}}`, []splice{{[]string{"rootfs", "diff_ids"}, []byte(`[]`)}}, `{"a":{"b":1}}`},
		{"escaped strings and nesting",
			`{"k\"ey":"v}]","created":"x","nested":{"created":"keep"}}`,
			[]splice{{[]string{"created"}, []byte(`"y"`)}},
			`{"k\"ey":"v}]","created":"y","nested":{"created":"keep"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := applySplices([]byte(tt.doc), tt.splices)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Fatal("invalid JSON")
			}
		})
	}
	for _, bad := range []string{`{"a":`, `{"a" 1}`, `["x"`, `{"a":"unterminated}`} {
		if _, err := applySplices([]byte(bad), []splice{{[]string{"a"}, []byte(`1`)}, {[]string{"b", "c"}, []byte(`1`)}}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
