package registry

import (
	"strings"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestSelectPlatform(t *testing.T) {
	ix := ocispec.Index{Manifests: []ocispec.Descriptor{
		{Digest: dg("1"), Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}},
		{Digest: dg("2"), Platform: &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}},
		{Digest: dg("3"), Platform: &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{Digest: dg("4"), Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{Digest: dg("5"), Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}},
		{Digest: dg("6")},
	}}
	tests := []struct {
		want    ocispec.Platform
		digit   string // repeated digit of the digest chosen; "" for an error
		errPart string
	}{
		{ocispec.Platform{OS: "linux", Architecture: "amd64"}, "1", ""},
		{ocispec.Platform{OS: "linux", Architecture: "x86_64"}, "1", ""},
		{ocispec.Platform{OS: "Linux", Architecture: "AMD64"}, "1", ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm64"}, "4", ""},
		{ocispec.Platform{OS: "linux", Architecture: "aarch64"}, "4", ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "4", ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "3", ""},
		{ocispec.Platform{OS: "linux", Architecture: "arm"}, "2", ""},
		{ocispec.Platform{OS: "linux", Architecture: "s390x"}, "", "it has linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8"},
		{ocispec.Platform{OS: "windows", Architecture: "amd64"}, "", "no image for platform windows/amd64"},
		{ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v5"}, "", "--variant"},
	}
	for _, tt := range tests {
		t.Run(PlatformString(tt.want), func(t *testing.T) {
			d, err := SelectPlatform(ix, tt.want)
			if tt.digit == "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("err = %v, want one containing %q", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Digest.Encoded() != strings.Repeat(tt.digit, 64) {
				t.Fatalf("picked %s", d.Digest)
			}
		})
	}
}

func TestManifestType(t *testing.T) {
	tests := []struct {
		name, contentType, body, want, errPart string
	}{
		{"docker v2", elements.MediaTypeDockerManifest, `{"schemaVersion":2}`, elements.MediaTypeDockerManifest, ""},
		{"with parameters", ocispec.MediaTypeImageManifest + "; charset=utf-8", `{"schemaVersion":2}`, ocispec.MediaTypeImageManifest, ""},
		{"generic type, field", "application/json", `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `"}`, ocispec.MediaTypeImageIndex, ""},
		{"generic type, index shape", "application/octet-stream", `{"schemaVersion":2,"manifests":[]}`, ocispec.MediaTypeImageIndex, ""},
		{"generic type, manifest shape", "", `{"schemaVersion":2,"config":{}}`, ocispec.MediaTypeImageManifest, ""},
		{"schema 1", "application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1}`, "", "schema 1"},
		{"not json", elements.MediaTypeDockerManifest, `<html>`, "", "not valid JSON"},
		{"unknown", "text/plain", `{"schemaVersion":2}`, "", "unknown manifest type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := manifestType(tt.contentType, []byte(tt.body))
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("err = %v, want %q", err, tt.errPart)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestManifestImageRejectsBadDescriptors(t *testing.T) {
	tests := map[string]string{
		"bad digest":    `{"schemaVersion":2,"config":{"digest":"sha256:xyz","size":1},"layers":[]}`,
		"sha512":        `{"schemaVersion":2,"config":{"digest":"sha512:` + strings.Repeat("a", 128) + `","size":1},"layers":[]}`,
		"negative size": `{"schemaVersion":2,"config":{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":1},"layers":[{"digest":"sha256:` + strings.Repeat("b", 64) + `","size":-5}]}`,
		"schema 3":      `{"schemaVersion":3,"config":{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":1}}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := (Manifest{Raw: []byte(body)}).Image(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestSplitHost(t *testing.T) {
	tests := []struct{ in, host, repo string }{
		{"127.0.0.1:5000/app/x:v1", "127.0.0.1:5000", "app/x"},
		{"registry-1.docker.io/library/busybox:latest", "registry-1.docker.io", "library/busybox"},
		{"localhost/a@sha256:" + strings.Repeat("a", 64), "localhost", "a"},
		{"busybox:latest", "", "busybox"},
		{"org/app:v1", "", "org/app"},
	}
	for _, tt := range tests {
		host, repo := splitHost(tt.in)
		if host != tt.host || repo != tt.repo {
			t.Errorf("splitHost(%q) = %q, %q; want %q, %q", tt.in, host, repo, tt.host, tt.repo)
		}
	}
}

func TestRangeStart(t *testing.T) {
	tests := map[string]int64{"bytes 100-199/200": 100, "bytes 0-0/1": 0, "": -1, "items 1-2": -1, "bytes x-1/2": -1}
	for in, want := range tests {
		if got := rangeStart(in); got != want {
			t.Errorf("rangeStart(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	tests := map[string]bool{"127.0.0.1:5000": true, "localhost": true, "[::1]:80": true, "LOCALHOST:1": true,
		"10.0.0.1:5000": false, "registry-1.docker.io": false, "localhost.example.com": false}
	for in, want := range tests {
		if got := isLoopback(in); got != want {
			t.Errorf("isLoopback(%q) = %v", in, got)
		}
	}
}

func dg(digit string) digest.Digest { return digest.Digest("sha256:" + strings.Repeat(digit, 64)) }
