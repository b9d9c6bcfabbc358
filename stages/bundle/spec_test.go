package bundle

import (
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func fakeRoot(files map[string]string) func(string) (io.ReadCloser, error) {
	return func(name string) (io.ReadCloser, error) {
		s, ok := files[name]
		if !ok {
			return nil, os.ErrNotExist
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

func TestResolveUser(t *testing.T) {
	open := fakeRoot(map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nappgrp:x:1001:\nwheel:x:10:app,other\nstaff:x:50:app\n",
	})
	for _, tc := range []struct {
		in   string
		want user
		err  bool
	}{
		{"", user{}, false},
		{"app", user{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 50}}, false},
		{"1000", user{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 50}}, false},
		{"4242", user{UID: 4242}, false},
		{"app:wheel", user{UID: 1000, GID: 10}, false},
		{"app:77", user{UID: 1000, GID: 77}, false},
		{"5:6", user{UID: 5, GID: 6}, false},
		{"nobody", user{}, true},
		{"app:nogroup", user{}, true},
	} {
		got, err := resolveUser(tc.in, open)
		if (err != nil) != tc.err {
			t.Errorf("%q: error %v, want error %t", tc.in, err, tc.err)
			continue
		}
		if err == nil && (got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.AdditionalGids, tc.want.AdditionalGids)) {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestBuildSpec(t *testing.T) {
	var img ocispec.Image
	img.OS, img.Architecture = "linux", "arm64"
	img.Config = ocispec.ImageConfig{
		Entrypoint:   []string{"/entry"},
		Cmd:          []string{"a", "b"},
		Env:          []string{"FOO=bar"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Labels:       map[string]string{"l": "v"},
		StopSignal:   "SIGTERM",
	}
	s, err := buildSpec(img, fakeRoot(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Args, []string{"/entry", "a", "b"}) || s.Process.Cwd != "/" || s.Process.Terminal {
		t.Errorf("process %+v", s.Process)
	}
	if !slices.Equal(s.Process.Env, []string{defaultPath, "FOO=bar"}) {
		t.Errorf("env %q", s.Process.Env)
	}
	want := map[string]string{"l": "v", "org.opencontainers.image.exposedPorts": "53/udp,80/tcp",
		"org.opencontainers.image.stopSignal": "SIGTERM", "org.opencontainers.image.os": "linux",
		"org.opencontainers.image.architecture": "arm64"}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	data, err := marshalSorted(s)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(data, &back); err != nil || back["ociVersion"] != "1.0.2-dev" || !strings.Contains(string(data), "\n    \"hostname\": \"occystrap\"") {
		t.Errorf("config.json: %v\n%s", err, data)
	}
}
