package uri

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	hexDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hexUpper  = "sha256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
)

// sameOptions compares options, treating nil and empty as equal.
func sameOptions(a, b Options) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestParse(t *testing.T) {
	tests := []struct {
		in     string
		role   Role
		scheme string
		host   string
		path   string
		opts   Options
	}{
		// Sources documented in the README.
		{"registry://docker.io/library/busybox:latest", Source, "registry", "docker.io", "/library/busybox:latest", nil},
		{"registry://docker.io/library/centos:7", Source, "registry", "docker.io", "/library/centos:7", nil},
		{"registry://docker.io/library/python:3.11", Source, "registry", "docker.io", "/library/python:3.11", nil},
		{"registry://registry-1.docker.io/library/busybox:latest", Source, "registry", "registry-1.docker.io", "/library/busybox:latest", nil},
		{"registry://registry-1.docker.io/library/centos:7", Source, "registry", "registry-1.docker.io", "/library/centos:7", nil},
		{"registry://registry-1.docker.io/homeassistant/home-assistant:latest", Source, "registry", "registry-1.docker.io", "/homeassistant/home-assistant:latest", nil},
		{"registry://registry-1.docker.io/library/hello-world:latest", Source, "registry", "registry-1.docker.io", "/library/hello-world:latest", nil},
		{"registry://quay.io/ukhomeofficedigital/centos-base:latest", Source, "registry", "quay.io", "/ukhomeofficedigital/centos-base:latest", nil},
		{"registry://registry.gitlab.com/mygroup/myimage:latest", Source, "registry", "registry.gitlab.com", "/mygroup/myimage:latest", nil},
		{"registry://registry-1.docker.io/library/busybox:latest?os=linux&arch=arm64&variant=v8", Source, "registry", "registry-1.docker.io", "/library/busybox:latest",
			Options{"os": {"linux"}, "arch": {"arm64"}, "variant": {"v8"}}},
		{"docker://myimage:v1", Source, "docker", "myimage:v1", "", nil},
		{"docker://myimage:v1?socket=/run/podman/podman.sock", Source, "docker", "myimage:v1", "", Options{"socket": {"/run/podman/podman.sock"}}},
		{"docker://myimage:latest?socket=/run/podman/podman.sock", Source, "docker", "myimage:latest", "", Options{"socket": {"/run/podman/podman.sock"}}},
		{"docker://library/busybox:latest", Source, "docker", "library", "/busybox:latest", nil},
		{"dockerpush://library/busybox:latest", Source, "dockerpush", "library", "/busybox:latest", nil},
		{"tar://file.tar", Source, "tar", "file.tar", "file.tar", nil},
		{"tar://image.tar", Source, "tar", "image.tar", "image.tar", nil},
		{"tar:///path/to/file.tar", Source, "tar", "", "/path/to/file.tar", nil},

		// Destinations documented in the README.
		{"tar://busybox.tar", Dest, "tar", "busybox.tar", "busybox.tar", nil},
		{"tar://output.tar", Dest, "tar", "output.tar", "output.tar", nil},
		{"tar://python.tar", Dest, "tar", "python.tar", "python.tar", nil},
		{"tar:///path/to/output.tar", Dest, "tar", "", "/path/to/output.tar", nil},
		{"dir://centos7", Dest, "dir", "centos7", "centos7", nil},
		{"dir://busybox", Dest, "dir", "busybox", "busybox", nil},
		{"dir:///path/to/directory", Dest, "dir", "", "/path/to/directory", nil},
		{"dir://merged?unique_names=true&expand=true", Dest, "dir", "merged", "merged", Options{"unique_names": {"true"}, "expand": {"true"}}},
		{"dir://merged_images?unique_names=true", Dest, "dir", "merged_images", "merged_images", Options{"unique_names": {"true"}}},
		{"dir://ukhomeoffice-centos?expand=true", Dest, "dir", "ukhomeoffice-centos", "ukhomeoffice-centos", Options{"expand": {"true"}}},
		{"dir://merged_images?image=example.com/app&tag=v1", Source, "dir", "merged_images", "merged_images", Options{"image": {"example.com/app"}, "tag": {"v1"}}},
		{"directory:///srv/images?image=busybox", Source, "dir", "", "/srv/images", Options{"image": {"busybox"}}},
		{"dir://localhost/a%3Fb?tag=a+b", Source, "dir", "localhost", "/a?b", Options{"tag": {"a b"}}},
		{"oci://bar", Dest, "oci", "bar", "bar", nil},
		{"oci:///path/to/bundle", Dest, "oci", "", "/path/to/bundle", nil},
		{"mounts:///path/to/directory", Dest, "mounts", "", "/path/to/directory", nil},
		{"docker://busybox:latest", Dest, "docker", "busybox:latest", "", nil},
		{"docker://busybox:latest?socket=/run/podman/podman.sock", Dest, "docker", "busybox:latest", "", Options{"socket": {"/run/podman/podman.sock"}}},
		{"docker://?socket=/run/podman/podman.sock", Dest, "docker", "", "", Options{"socket": {"/run/podman/podman.sock"}}},
		{"registry://myregistry/myimage:v1", Dest, "registry", "myregistry", "/myimage:v1", nil},
		{"registry://myregistry.example.com/myuser/myimage:v1", Dest, "registry", "myregistry.example.com", "/myuser/myimage:v1", nil},
		{"registry://myregistry.example.com/myimage:v1", Dest, "registry", "myregistry.example.com", "/myimage:v1", nil},
		{"registry://ghcr.io/myorg/myimage:latest", Dest, "registry", "ghcr.io", "/myorg/myimage:latest", nil},
		{"registry://myregistry/myimage:v1?max_workers=8", Dest, "registry", "myregistry", "/myimage:v1", Options{"max_workers": {"8"}}},
		{"registry://myregistry/myimage:v1?compression=zstd", Dest, "registry", "myregistry", "/myimage:v1", Options{"compression": {"zstd"}}},

		// Spec 3.1 examples: short form, host/path rules, aliases.
		{"tar:foo.tar", Source, "tar", "foo.tar", "foo.tar", nil},
		{"tar:/abs/foo.tar", Dest, "tar", "", "/abs/foo.tar", nil},
		{"tar://foo.tar", Dest, "tar", "foo.tar", "foo.tar", nil},
		{"tar://./x/y.tar", Dest, "tar", ".", "./x/y.tar", nil},
		{"tar://localhost/abs", Dest, "tar", "localhost", "/abs", nil},
		{"tar://LocalHost/abs", Dest, "tar", "LocalHost", "/abs", nil},
		{"tar://localhost", Dest, "tar", "localhost", "localhost", nil},
		{"tar:///abs", Dest, "tar", "", "/abs", nil},
		{"tar://sub/dir/x.tar", Dest, "tar", "sub", "sub/dir/x.tar", nil},
		{"file://x.tar", Source, "tar", "x.tar", "x.tar", nil},
		{"file:///abs/x.tar", Dest, "tar", "", "/abs/x.tar", nil},
		{"directory://out", Dest, "dir", "out", "out", nil},
		{"directory://out?expand=yes", Dest, "dir", "out", "out", Options{"expand": {"yes"}}},
		{"TAR://X.tar", Source, "tar", "X.tar", "X.tar", nil},
		{"Registry://ghcr.io/org/app:v1", Source, "registry", "ghcr.io", "/org/app:v1", nil},
		{"docker://library/busybox:v1", Source, "docker", "library", "/busybox:v1", nil},
		{"dir:out", Dest, "dir", "out", "out", nil},

		// Paths: percent-decoding, spaces, '#', literal '%'.
		{"tar://my%20image.tar", Dest, "tar", "my%20image.tar", "my image.tar", nil},
		{"tar:///tmp/a%2Fb/c%25d.tar", Dest, "tar", "", "/tmp/a/b/c%d.tar", nil},
		{"tar:///tmp/with space/x.tar", Dest, "tar", "", "/tmp/with space/x.tar", nil},
		{"tar:///tmp/x#1.tar", Dest, "tar", "", "/tmp/x#1.tar", nil},
		{"tar://x#1.tar", Dest, "tar", "x#1.tar", "x#1.tar", nil},
		{"tar://100%.tar", Dest, "tar", "100%.tar", "100%.tar", nil},
		{"tar:///a+b.tar", Dest, "tar", "", "/a+b.tar", nil},
		{"tar:///a%2fb%2E%2etar", Dest, "tar", "", "/a/b..tar", nil},

		// Query decoding, blank values, repeats and aliases.
		{"registry://h/i?username=a+b&password=p%26q", Source, "registry", "h", "/i",
			Options{"username": {"a b"}, "password": {"p&q"}}},
		{"registry://h/i?password=", Source, "registry", "h", "/i", Options{"password": {""}}},
		{"registry://h/i?architecture=arm64", Source, "registry", "h", "/i", Options{"arch": {"arm64"}}},
		{"registry://h/i?arch=amd64&architecture=arm64", Source, "registry", "h", "/i", Options{"arch": {"arm64", "amd64"}}},
		{"registry://h/i?max_workers=1&insecure=TRUE", Source, "registry", "h", "/i", Options{"max_workers": {"1"}, "insecure": {"TRUE"}}},
		{"registry://h/i?variant=", Source, "registry", "h", "/i", Options{"variant": {""}}},
		{"dir://d?expand=true&&expand=no", Dest, "dir", "d", "d", Options{"expand": {"true", "no"}}},
		{"registry://user:pass@ghcr.io:443/org/app:v1", Dest, "registry", "user:pass@ghcr.io:443", "/org/app:v1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.role.String()+"/"+tt.in, func(t *testing.T) {
			u, err := Parse(tt.in, tt.role)
			if err != nil {
				t.Fatalf("Parse(%q, %v): %v", tt.in, tt.role, err)
			}
			if u.Raw != tt.in {
				t.Errorf("Raw = %q, want %q", u.Raw, tt.in)
			}
			if u.Scheme != tt.scheme || u.Host != tt.host || u.Path != tt.path {
				t.Errorf("got scheme %q host %q path %q, want %q %q %q",
					u.Scheme, u.Host, u.Path, tt.scheme, tt.host, tt.path)
			}
			if !sameOptions(u.Options, tt.opts) {
				t.Errorf("Options = %v, want %v", u.Options, tt.opts)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		role Role
		kind error
		msg  string // exact message, or a substring when prefixed by "~"
	}{
		// No scheme.
		{"x", Source, ErrSyntax, `missing scheme in URI "x": use SCHEME://..., for example tar://image.tar (valid source schemes: registry, docker, dockerpush, tar, dir, oci-layout, oci-archive)`},
		{"out", Dest, ErrSyntax, `missing scheme in URI "out": use SCHEME://..., for example tar://image.tar (valid destination schemes: tar, dir, oci, oci-layout, oci-archive, mounts, docker, registry)`},
		{"/tmp/image.tar", Source, ErrSyntax, "~missing scheme"},
		{"", Source, ErrSyntax, "~missing scheme"},
		{"://x", Source, ErrSyntax, "~missing scheme"},
		{":x", Source, ErrSyntax, "~missing scheme"},
		{"./a:b.tar", Source, ErrSyntax, "~missing scheme"},
		{"1tar://x", Source, ErrSyntax, "~missing scheme"},

		// Unknown schemes.
		{"localhost:5000/x", Source, ErrUnknownScheme, `unknown source scheme "localhost": valid source schemes are registry, docker, dockerpush, tar, dir, oci-layout, oci-archive`},
		{"busybox:latest", Source, ErrUnknownScheme, `~unknown source scheme "busybox"`},
		{"dir://x?unique_names=true", Source, ErrUnknownOption, `unknown option "unique_names" for dir:// source: valid options are image, tag`},
		{"dir://x?image=", Source, ErrInvalidValue, `~"image"`},
		{"mounts://x", Source, ErrUnknownScheme, `~unknown source scheme "mounts"`},
		{"quay://ns", Source, ErrUnknownScheme, `~unknown source scheme "quay"`},
		{"http://example.com/x", Source, ErrUnknownScheme, `~unknown source scheme "http"`},
		{"dockerpush://x:y", Dest, ErrUnknownScheme, `unknown destination scheme "dockerpush": valid destination schemes are tar, dir, oci, oci-layout, oci-archive, mounts, docker, registry`},

		// Unknown options.
		{"tar://x.tar?foo=1", Dest, ErrUnknownOption, `unknown option "foo" for tar:// destination: valid options are (none)`},
		{"tar://x.tar?foo=1", Source, ErrUnknownOption, `unknown option "foo" for tar:// source: valid options are (none)`},
		{"dir://x?foo=1", Dest, ErrUnknownOption, `unknown option "foo" for dir:// destination: valid options are unique_names, expand`},
		{"dir://x?Expand=true", Dest, ErrUnknownOption, `~unknown option "Expand"`},
		{"oci://x?expand=true", Dest, ErrUnknownOption, `~unknown option "expand" for oci:// destination`},
		{"registry://h/i?compression=zstd", Source, ErrUnknownOption,
			`unknown option "compression" for registry:// source: valid options are os, arch, architecture, variant, username, password, insecure, max_workers`},
		{"registry://h/i?os=linux", Dest, ErrUnknownOption,
			`unknown option "os" for registry:// destination: valid options are username, password, insecure, compression, max_workers`},
		{"docker://x?sock=/s", Source, ErrUnknownOption, `unknown option "sock" for docker:// source: valid options are socket`},
		{"dockerpush://x?max_workers=2", Source, ErrUnknownOption, `~unknown option "max_workers" for dockerpush:// source`},

		// Bad option values.
		{"dir://x?expand=maybe", Dest, ErrInvalidValue, `invalid value "maybe" for option "expand" of dir:// destination: want true, yes, 1, false, no or 0`},
		{"dir://x?unique_names=2", Dest, ErrInvalidValue, `~invalid value "2" for option "unique_names"`},
		{"dir://x?expand", Dest, ErrInvalidValue, `~invalid value "" for option "expand"`},
		{"dir://x?expand=", Dest, ErrInvalidValue, `~invalid value "" for option "expand"`},
		{"dir://x?expand=true&expand=nope", Dest, ErrInvalidValue, `~invalid value "nope"`},
		{"registry://h/i?insecure=perhaps", Source, ErrInvalidValue, `~invalid value "perhaps" for option "insecure" of registry:// source`},
		{"registry://h/i?max_workers=0", Dest, ErrInvalidValue, `invalid value "0" for option "max_workers" of registry:// destination: want an integer >= 1`},
		{"registry://h/i?max_workers=lots", Source, ErrInvalidValue, `~invalid value "lots" for option "max_workers"`},
		{"registry://h/i?compression=lz4", Dest, ErrInvalidValue, `invalid value "lz4" for option "compression" of registry:// destination: want one of gzip, zstd`},
		{"registry://h/i?compression=ZSTD", Dest, ErrInvalidValue, `~want one of gzip, zstd`},
		{"registry://h/i?os=", Source, ErrInvalidValue, `~invalid value "" for option "os"`},
		{"registry://h/i?architecture=", Source, ErrInvalidValue, `~invalid value "" for option "architecture"`},
		{"docker://x?socket=", Source, ErrInvalidValue, `~invalid value "" for option "socket"`},

		// Missing paths.
		{"tar://", Source, ErrMissingPath, "tar:// URI requires a path"},
		{"tar:", Source, ErrMissingPath, "tar:// URI requires a path"},
		{"file://", Source, ErrMissingPath, "tar:// URI requires a path"},
		{"tar://", Dest, ErrMissingPath, "tar:// output URI requires a path"},
		{"tar://localhost", Dest, nil, ""},
		{"dir://", Dest, ErrMissingPath, "dir:// URI requires a path"},
		{"dir://?expand=true", Dest, ErrMissingPath, "dir:// URI requires a path"},
		{"directory://", Dest, ErrMissingPath, "dir:// URI requires a path"},
		{"oci://", Dest, ErrMissingPath, "oci:// URI requires a path"},
		{"oci:///srv/layout", Source, ErrUnknownScheme, "~use oci-layout://PATH"},
		{"mounts://", Dest, ErrMissingPath, "mounts:// URI requires a path"},
		{"registry://", Source, ErrMissingPath, "registry:// URI requires a registry host, for example registry://docker.io/library/busybox:latest"},
		{"registry:///library/busybox", Source, ErrMissingPath, "~requires a registry host"},
		{"registry://user:pw@/library/busybox", Dest, ErrMissingPath, "~requires a registry host"},
		{"registry://docker.io", Source, ErrMissingPath, "registry:// URI requires an image name, for example registry://docker.io/library/busybox:latest"},
		{"registry://docker.io/", Dest, ErrMissingPath, "~requires an image name"},
		{"registry://docker.io/:v1", Dest, ErrMissingPath, "~requires an image name"},
		{"registry://busybox", Source, ErrMissingPath, "~requires an image name"},
		{"docker://", Source, ErrMissingPath, "docker:// URI requires an image name, for example docker://busybox:latest"},
		{"dockerpush://?socket=/s", Source, ErrMissingPath, "dockerpush:// URI requires an image name, for example dockerpush://busybox:latest"},

		// Malformed references.
		{"registry://docker.io/busybox@sha256:abc", Source, ErrSyntax, `~invalid digest "sha256:abc"`},
		{"registry://docker.io/busybox@md5:" + strings.Repeat("0", 64), Source, ErrSyntax, "~want sha256: followed by 64 hex digits"},
		{"registry://docker.io/busybox@" + hexDigest + "x", Source, ErrSyntax, "~invalid digest"},
		{"registry://docker.io/busybox:", Source, ErrSyntax, `~invalid tag ""`},
		{"registry://docker.io/busybox:-bad", Dest, ErrSyntax, `~invalid tag "-bad"`},
		{"docker://busybox:a!b", Source, ErrSyntax, `~invalid tag "a!b"`},
		{"docker://busybox:a!b", Dest, ErrSyntax, `~invalid tag "a!b"`},
		{"registry://h/a//b", Source, ErrSyntax, "~empty path component"},
		{"docker://a/b/", Source, ErrSyntax, "~empty path component"},
		{"registry://h/with space:v1", Source, ErrSyntax, "~contains a space"},
		{"registry://h/x#y", Source, ErrSyntax, "~contains a space"},
	}
	for _, tt := range tests {
		t.Run(tt.role.String()+"/"+tt.in, func(t *testing.T) {
			_, err := Parse(tt.in, tt.role)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Parse(%q) = %v, want success", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q, %v) succeeded, want error", tt.in, tt.role)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q does not wrap %v", err, tt.kind)
			}
			checkMessage(t, err, tt.msg)
		})
	}
}

// checkMessage compares err's message with want: exactly, or as a substring
// when want starts with "~".
func checkMessage(t *testing.T, err error, want string) {
	t.Helper()
	if sub, ok := strings.CutPrefix(want, "~"); ok {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not contain %q", err, sub)
		}
	} else if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestSentinelsAreDistinct(t *testing.T) {
	all := []error{ErrUnknownScheme, ErrUnknownOption, ErrUnknownFilter, ErrMissingPath, ErrSyntax, ErrInvalidValue, ErrMissingOption}
	for i, a := range all {
		t.Run(a.Error(), func(t *testing.T) {
			err := newErr(a, "x")
			for j, b := range all {
				if got := errors.Is(err, b); got != (i == j) {
					t.Errorf("errors.Is(err(%v), %v) = %v", a, b, got)
				}
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	tests := []struct{ in, want string }{
		{"registry://user:secret@ghcr.io/org/app:v1", "registry://user:xxxxx@ghcr.io/org/app:v1"},
		{"registry://user:p%40ss@ghcr.io:443/org/app:v1", "registry://user:xxxxx@ghcr.io:443/org/app:v1"},
		{"registry://user:a@b@ghcr.io/org/app", "registry://user:xxxxx@ghcr.io/org/app"},
		{"registry://ghcr.io/org/app?username=u&password=s3cret&insecure=true", "registry://ghcr.io/org/app?username=u&password=xxxxx&insecure=true"},
		{"registry://u:p@h/x?password=q", "registry://u:xxxxx@h/x?password=xxxxx"},
		{"registry://h/x:v1?pass%77ord=q", "registry://h/x:v1?pass%77ord=xxxxx"},
		{"registry://h/x?password=a&password=b", "registry://h/x?password=xxxxx&password=xxxxx"},
		{"registry://h/x?password", "registry://h/x?password"},
		{"registry:user:pw@host/x", "registry:user:xxxxx@host/x"},
		{"registry://user@host/x", "registry://user@host/x"},
		{"registry://h/user:pw@x", "registry://h/user:pw@x"},
		{"registry://docker.io/library/busybox:latest", "registry://docker.io/library/busybox:latest"},
		{"tar://x.tar", "tar://x.tar"},
		{"not a uri", "not a uri"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := RedactString(tt.in); got != tt.want {
				t.Errorf("RedactString(%q) = %q, want %q", tt.in, got, tt.want)
			}
			u, err := Parse(tt.in, Dest)
			if err != nil {
				return // RedactString is also for strings that do not parse
			}
			if got := u.Redacted(); got != tt.want {
				t.Errorf("Redacted() = %q, want %q", got, tt.want)
			}
			if got := u.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUserinfo(t *testing.T) {
	tests := []struct {
		in, user, pass string
		ok             bool
		registry       string
	}{
		{"registry://user:secret@ghcr.io/org/app:v1", "user", "secret", true, "ghcr.io"},
		{"registry://user:p%40ss@ghcr.io:443/org/app:v1", "user", "p@ss", true, "ghcr.io:443"},
		{"registry://user@ghcr.io/org/app", "user", "", true, "ghcr.io"},
		{"registry://ghcr.io/org/app", "", "", false, "ghcr.io"},
		{"registry://127.0.0.1:5000/x", "", "", false, "127.0.0.1:5000"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := Parse(tt.in, Source)
			if err != nil {
				t.Fatal(err)
			}
			user, pass, ok := u.Userinfo()
			if user != tt.user || pass != tt.pass || ok != tt.ok {
				t.Errorf("Userinfo() = %q, %q, %v, want %q, %q, %v", user, pass, ok, tt.user, tt.pass, tt.ok)
			}
			r, err := u.Reference()
			if err != nil {
				t.Fatal(err)
			}
			if r.Registry != tt.registry {
				t.Errorf("Registry = %q, want %q", r.Registry, tt.registry)
			}
		})
	}
}

func TestReference(t *testing.T) {
	tests := []struct {
		in         string
		role       Role
		want       Reference
		str        string
		normalized string
		familiar   string
	}{
		{"registry://docker.io/library/busybox:latest", Source,
			Reference{"docker.io", "library/busybox", "latest", ""},
			"docker.io/library/busybox:latest", "registry-1.docker.io/library/busybox:latest", "busybox:latest"},
		{"registry://docker.io/busybox", Source,
			Reference{"docker.io", "busybox", "latest", ""},
			"docker.io/busybox:latest", "registry-1.docker.io/library/busybox:latest", "busybox:latest"},
		{"registry://registry-1.docker.io/library/centos:7", Source,
			Reference{"registry-1.docker.io", "library/centos", "7", ""},
			"registry-1.docker.io/library/centos:7", "registry-1.docker.io/library/centos:7", "centos:7"},
		{"registry://index.docker.io/myorg/app:v1", Source,
			Reference{"index.docker.io", "myorg/app", "v1", ""},
			"index.docker.io/myorg/app:v1", "registry-1.docker.io/myorg/app:v1", "myorg/app:v1"},
		{"registry://registry-1.docker.io/homeassistant/home-assistant:latest", Source,
			Reference{"registry-1.docker.io", "homeassistant/home-assistant", "latest", ""},
			"registry-1.docker.io/homeassistant/home-assistant:latest", "registry-1.docker.io/homeassistant/home-assistant:latest", "homeassistant/home-assistant:latest"},
		{"registry://docker.io/library/python:3.11", Source,
			Reference{"docker.io", "library/python", "3.11", ""},
			"docker.io/library/python:3.11", "registry-1.docker.io/library/python:3.11", "python:3.11"},
		{"registry://ghcr.io/org/app:v1", Dest,
			Reference{"ghcr.io", "org/app", "v1", ""},
			"ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "ghcr.io/org/app:v1"},
		{"registry://quay.io/ukhomeofficedigital/centos-base:latest", Source,
			Reference{"quay.io", "ukhomeofficedigital/centos-base", "latest", ""},
			"quay.io/ukhomeofficedigital/centos-base:latest", "quay.io/ukhomeofficedigital/centos-base:latest", "quay.io/ukhomeofficedigital/centos-base:latest"},
		{"registry://127.0.0.1:5000/x:y", Dest,
			Reference{"127.0.0.1:5000", "x", "y", ""},
			"127.0.0.1:5000/x:y", "127.0.0.1:5000/x:y", "127.0.0.1:5000/x:y"},
		{"registry://localhost:5000/a/b/c", Dest,
			Reference{"localhost:5000", "a/b/c", "latest", ""},
			"localhost:5000/a/b/c:latest", "localhost:5000/a/b/c:latest", "localhost:5000/a/b/c:latest"},
		{"registry://myregistry/myimage:v1?max_workers=8", Dest,
			Reference{"myregistry", "myimage", "v1", ""},
			"myregistry/myimage:v1", "myregistry/myimage:v1", "myregistry/myimage:v1"},
		{"registry://user:pass@ghcr.io/org/app:v1", Dest,
			Reference{"ghcr.io", "org/app", "v1", ""},
			"ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "ghcr.io/org/app:v1"},
		{"registry://docker.io/library/busybox@" + hexUpper, Source,
			Reference{"docker.io", "library/busybox", "", hexDigest},
			"docker.io/library/busybox@" + hexDigest, "registry-1.docker.io/library/busybox@" + hexDigest, "busybox@" + hexDigest},
		{"registry://ghcr.io/org/app:v1@" + hexDigest, Source,
			Reference{"ghcr.io", "org/app", "v1", hexDigest},
			"ghcr.io/org/app:v1@" + hexDigest, "ghcr.io/org/app:v1@" + hexDigest, "ghcr.io/org/app:v1"},
		{"registry://localhost:5000/app@" + hexDigest, Source,
			Reference{"localhost:5000", "app", "", hexDigest},
			"localhost:5000/app@" + hexDigest, "localhost:5000/app@" + hexDigest, "localhost:5000/app@" + hexDigest},
		{"docker://library/busybox:v1", Source,
			Reference{"", "library/busybox", "v1", ""},
			"library/busybox:v1", "library/busybox:v1", "busybox:v1"},
		{"docker://library/busybox:latest", Source,
			Reference{"", "library/busybox", "latest", ""},
			"library/busybox:latest", "library/busybox:latest", "busybox:latest"},
		{"dockerpush://library/busybox:latest", Source,
			Reference{"", "library/busybox", "latest", ""},
			"library/busybox:latest", "library/busybox:latest", "busybox:latest"},
		{"docker://myimage:v1", Source,
			Reference{"", "myimage", "v1", ""},
			"myimage:v1", "myimage:v1", "myimage:v1"},
		{"docker://myimage", Source,
			Reference{"", "myimage", "latest", ""},
			"myimage:latest", "myimage:latest", "myimage:latest"},
		{"docker://docker.io/library/busybox", Source,
			Reference{"", "docker.io/library/busybox", "latest", ""},
			"docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"},
		{"docker://library/a/b:1", Source,
			Reference{"", "library/a/b", "1", ""},
			"library/a/b:1", "library/a/b:1", "library/a/b:1"},
		{"docker://localhost:5000/x", Source,
			Reference{"", "localhost:5000/x", "latest", ""},
			"localhost:5000/x:latest", "localhost:5000/x:latest", "localhost:5000/x:latest"},
		{"docker://localhost:5000/x:y?socket=/run/podman/podman.sock", Source,
			Reference{"", "localhost:5000/x", "y", ""},
			"localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y"},
		{"docker://busybox@" + hexDigest, Source,
			Reference{"", "busybox", "", hexDigest},
			"busybox@" + hexDigest, "busybox@" + hexDigest, "busybox@" + hexDigest},
		{"docker://busybox:latest", Dest,
			Reference{"", "busybox", "latest", ""},
			"busybox:latest", "busybox:latest", "busybox:latest"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := Parse(tt.in, tt.role)
			if err != nil {
				t.Fatal(err)
			}
			r, err := u.Reference()
			if err != nil {
				t.Fatal(err)
			}
			if r != tt.want {
				t.Errorf("Reference() = %#v, want %#v", r, tt.want)
			}
			if got := r.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := r.Normalized().String(); got != tt.normalized {
				t.Errorf("Normalized() = %q, want %q", got, tt.normalized)
			}
			if got := r.Familiar(); got != tt.familiar {
				t.Errorf("Familiar() = %q, want %q", got, tt.familiar)
			}
		})
	}
}

func TestReferenceMethods(t *testing.T) {
	tests := []struct {
		name       string
		ref        Reference
		normalized Reference
		familiar   string
	}{
		{"bare busybox on docker.io", Reference{"docker.io", "busybox", "latest", ""},
			Reference{"registry-1.docker.io", "library/busybox", "latest", ""}, "busybox:latest"},
		{"docker.io library", Reference{"docker.io", "library/busybox", "latest", ""},
			Reference{"registry-1.docker.io", "library/busybox", "latest", ""}, "busybox:latest"},
		{"upper-case hub host", Reference{"Docker.IO", "busybox", "1", ""},
			Reference{"registry-1.docker.io", "library/busybox", "1", ""}, "busybox:1"},
		{"hub org image", Reference{"registry-1.docker.io", "myorg/app", "v1", ""},
			Reference{"registry-1.docker.io", "myorg/app", "v1", ""}, "myorg/app:v1"},
		{"ghcr", Reference{"ghcr.io", "org/app", "v1", ""},
			Reference{"ghcr.io", "org/app", "v1", ""}, "ghcr.io/org/app:v1"},
		{"local registry", Reference{"127.0.0.1:5000", "x", "y", ""},
			Reference{"127.0.0.1:5000", "x", "y", ""}, "127.0.0.1:5000/x:y"},
		{"daemon name", Reference{"", "busybox", "latest", ""},
			Reference{"", "busybox", "latest", ""}, "busybox:latest"},
		{"daemon hub name", Reference{"", "index.docker.io/library/busybox", "latest", ""},
			Reference{"", "index.docker.io/library/busybox", "latest", ""}, "busybox:latest"},
		{"digest only", Reference{"docker.io", "busybox", "", hexDigest},
			Reference{"registry-1.docker.io", "library/busybox", "", hexDigest}, "busybox@" + hexDigest},
		{"neither tag nor digest", Reference{"ghcr.io", "a", "", ""},
			Reference{"ghcr.io", "a", "", ""}, "ghcr.io/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ref.Normalized(); got != tt.normalized {
				t.Errorf("Normalized() = %#v, want %#v", got, tt.normalized)
			}
			if got := tt.ref.Familiar(); got != tt.familiar {
				t.Errorf("Familiar() = %q, want %q", got, tt.familiar)
			}
			n := tt.ref.Normalized()
			if n.Normalized() != n {
				t.Errorf("Normalized is not idempotent: %#v", n.Normalized())
			}
			if n.Familiar() != tt.familiar {
				t.Errorf("Familiar() after Normalized() = %q, want %q", n.Familiar(), tt.familiar)
			}
		})
	}
}

func TestReferenceWrongScheme(t *testing.T) {
	for _, in := range []string{"tar://x.tar", "dir://x", "oci://x", "mounts://x"} {
		t.Run(in, func(t *testing.T) {
			u, err := Parse(in, Dest)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := u.Reference(); !errors.Is(err, ErrSyntax) {
				t.Errorf("Reference() error = %v, want ErrSyntax", err)
			}
		})
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in   string
		want Reference
		kind error
	}{
		{"busybox", Reference{"", "busybox", "latest", ""}, nil},
		{"test/one:v1", Reference{"", "test/one", "v1", ""}, nil},
		{"localhost:5000/x", Reference{"", "localhost:5000/x", "latest", ""}, nil},
		{"x@" + hexUpper, Reference{"", "x", "", hexDigest}, nil},
		{"", Reference{}, ErrMissingPath},
		{":v1", Reference{}, ErrMissingPath},
		{"x:", Reference{}, ErrSyntax},
		{"x@sha256:12", Reference{}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseReference(tt.in)
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) {
					t.Errorf("ParseReference(%q) error = %v, want %v", tt.in, err, tt.kind)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseReference(%q) = %#v, %v, want %#v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestOptionsAccessors(t *testing.T) {
	o := Options{
		"t": {"TRUE"}, "y": {"yes"}, "one": {"1"}, "f": {"False"}, "n": {" NO "}, "zero": {"0"},
		"bad": {"maybe"}, "blank": {""}, "num": {" 8 "}, "neg": {"-3"}, "multi": {"a", "b"},
	}
	t.Run("Has", func(t *testing.T) {
		for key, want := range map[string]bool{"t": true, "blank": true, "missing": false} {
			if got := o.Has(key); got != want {
				t.Errorf("Has(%q) = %v, want %v", key, got, want)
			}
		}
		if (Options{"k": {}}).Has("k") {
			t.Error("Has is true for a key with no values")
		}
	})
	t.Run("String", func(t *testing.T) {
		tests := []struct{ key, def, want string }{
			{"multi", "d", "b"},
			{"blank", "d", ""},
			{"missing", "d", "d"},
		}
		for _, tt := range tests {
			if got := o.String(tt.key, tt.def); got != tt.want {
				t.Errorf("String(%q, %q) = %q, want %q", tt.key, tt.def, got, tt.want)
			}
		}
	})
	t.Run("Bool", func(t *testing.T) {
		tests := []struct {
			key  string
			def  bool
			want bool
			err  bool
		}{
			{"t", false, true, false},
			{"y", false, true, false},
			{"one", false, true, false},
			{"f", true, false, false},
			{"n", true, false, false},
			{"zero", true, false, false},
			{"missing", true, true, false},
			{"missing", false, false, false},
			{"bad", false, false, true},
			{"blank", false, false, true},
			{"num", false, false, true},
		}
		for _, tt := range tests {
			got, err := o.Bool(tt.key, tt.def)
			if (err != nil) != tt.err || (err == nil && got != tt.want) {
				t.Errorf("Bool(%q, %v) = %v, %v", tt.key, tt.def, got, err)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidValue) {
					t.Errorf("Bool(%q) error %v does not wrap ErrInvalidValue", tt.key, err)
				}
				if !strings.Contains(err.Error(), `"`+tt.key+`"`) || !strings.Contains(err.Error(), `"`+o.String(tt.key, "")+`"`) {
					t.Errorf("Bool(%q) error %q does not name key and value", tt.key, err)
				}
			}
		}
	})
	t.Run("Int", func(t *testing.T) {
		tests := []struct {
			key  string
			def  int
			want int
			err  bool
		}{
			{"num", 0, 8, false},
			{"neg", 0, -3, false},
			{"one", 0, 1, false},
			{"missing", 4, 4, false},
			{"bad", 4, 0, true},
			{"blank", 4, 0, true},
			{"t", 4, 0, true},
		}
		for _, tt := range tests {
			got, err := o.Int(tt.key, tt.def)
			if (err != nil) != tt.err || (err == nil && got != tt.want) {
				t.Errorf("Int(%q, %v) = %v, %v", tt.key, tt.def, got, err)
			}
			if err != nil && (!errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), `"`+tt.key+`"`)) {
				t.Errorf("Int(%q) error %q does not wrap ErrInvalidValue or name the key", tt.key, err)
			}
		}
	})
}

func TestParsedOptionValues(t *testing.T) {
	tests := []struct {
		in      string
		role    Role
		check   func(Options) (any, error)
		want    any
		comment string
	}{
		{"dir://m?unique_names=true&expand=true", Dest, func(o Options) (any, error) { return o.Bool("expand", false) }, true, "bool"},
		{"dir://m?unique_names=YES", Dest, func(o Options) (any, error) { return o.Bool("unique_names", false) }, true, "bool yes"},
		{"dir://m", Dest, func(o Options) (any, error) { return o.Bool("expand", false) }, false, "bool default"},
		{"registry://h/i?max_workers=8", Dest, func(o Options) (any, error) { return o.Int("max_workers", 4) }, 8, "int"},
		{"registry://h/i?max_workers=1", Source, func(o Options) (any, error) { return o.Int("max_workers", 4) }, 1, "int 1 stays 1, not True"},
		{"registry://h/i", Source, func(o Options) (any, error) { return o.Int("max_workers", 4) }, 4, "int default"},
		{"registry://h/i?architecture=arm64", Source, func(o Options) (any, error) { return o.String("arch", "amd64"), nil }, "arm64", "alias"},
		{"registry://h/i?architecture=arm64&arch=s390x", Source, func(o Options) (any, error) { return o.String("arch", "amd64"), nil }, "s390x", "arch wins"},
		{"registry://h/i?arch=s390x&architecture=arm64", Source, func(o Options) (any, error) { return o.String("arch", "amd64"), nil }, "s390x", "arch wins in any order"},
		{"registry://h/i?architecture=arm64", Source, func(o Options) (any, error) { return o.Has("architecture"), nil }, false, "alias key removed"},
	}
	for _, tt := range tests {
		t.Run(tt.comment, func(t *testing.T) {
			u, err := Parse(tt.in, tt.role)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tt.check(u.Options)
			if err != nil || got != tt.want {
				t.Errorf("%s: got %v, %v, want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		in   string
		name string
		opts Options
	}{
		{"normalize-timestamps", "normalize-timestamps", nil},
		{"normalize_timestamps", "normalize-timestamps", nil},
		{" Normalize_Timestamps : ts = 5 ", "normalize-timestamps", Options{"timestamp": {"5"}}},
		{"normalize-timestamps:", "normalize-timestamps", nil},
		{"normalize-timestamps:ts=1609459200", "normalize-timestamps", Options{"timestamp": {"1609459200"}}},
		{"normalize-timestamps:timestamp=0", "normalize-timestamps", Options{"timestamp": {"0"}}},
		{"normalize-timestamps:timestamp=2,ts=1", "normalize-timestamps", Options{"timestamp": {"1", "2"}}},
		{"search:pattern=*.conf", "search", Options{"pattern": {"*.conf"}}},
		{"search:pattern=bin/*", "search", Options{"pattern": {"bin/*"}}},
		{"search:pattern=a=b", "search", Options{"pattern": {"a=b"}}},
		{"search:pattern=x,regex=true,script-friendly=yes", "search", Options{"pattern": {"x"}, "regex": {"true"}, "script_friendly": {"yes"}}},
		{"search:pattern=x,use_regex=1,script_friendly=no", "search", Options{"pattern": {"x"}, "regex": {"1"}, "script_friendly": {"no"}}},
		{"SEARCH:pattern=.*\\.py$,regex=True", "search", Options{"pattern": {`.*\.py$`}, "regex": {"True"}}},
		{"exclude:pattern=**/.git/**", "exclude", Options{"pattern": {"**/.git/**"}}},
		{"exclude:pattern=**/.git/**,**/__pycache__/**,**/*.pyc", "exclude", Options{"pattern": {"**/.git/**,**/__pycache__/**,**/*.pyc"}}},
		{"exclude:pattern=a, b ,,c,", "exclude", Options{"pattern": {"a,b,c"}}},
		{"exclude:pattern=a,pattern=b,c", "exclude", Options{"pattern": {"a", "b,c"}}},
		{"search:pattern=a,b,regex=true", "search", Options{"pattern": {"a,b"}, "regex": {"true"}}},
		{"inspect:file=layers-before.jsonl", "inspect", Options{"file": {"layers-before.jsonl"}}},
		{"inspect:file=/tmp/a b.jsonl", "inspect", Options{"file": {"/tmp/a b.jsonl"}}},
		{"inspect:file=/tmp/x%20y", "inspect", Options{"file": {"/tmp/x%20y"}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, err := ParseFilter(tt.in)
			if err != nil {
				t.Fatalf("ParseFilter(%q): %v", tt.in, err)
			}
			if f.Raw != tt.in || f.Name != tt.name {
				t.Errorf("got Raw %q Name %q, want %q %q", f.Raw, f.Name, tt.in, tt.name)
			}
			if !sameOptions(f.Options, tt.opts) {
				t.Errorf("Options = %v, want %v", f.Options, tt.opts)
			}
		})
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct {
		in   string
		kind error
		msg  string
	}{
		{"bogus", ErrUnknownFilter, `unknown filter "bogus": valid filters are normalize-timestamps, search, exclude, inspect`},
		{"Bogus_Filter:x=1", ErrUnknownFilter, `~unknown filter "bogus-filter"`},
		{"", ErrSyntax, `~has no name`},
		{" :ts=1", ErrSyntax, `~has no name`},
		{"search:foo", ErrSyntax, `invalid filter option (missing =): foo`},
		{"normalize-timestamps:5", ErrSyntax, `invalid filter option (missing =): 5`},
		{"search:,, x ,pattern=y", ErrSyntax, `invalid filter option (missing =): x`},
		{"search:=x", ErrSyntax, `invalid filter option (missing key): =x`},
		{"search:pattern=x,foo=1", ErrUnknownOption, `unknown option "foo" for search filter: valid options are pattern, regex, use_regex, script_friendly, script-friendly`},
		{"search:pattern=a,b=c", ErrUnknownOption, `~unknown option "b" for search filter`},
		{"normalize-timestamps:time=1", ErrUnknownOption, `unknown option "time" for normalize-timestamps filter: valid options are ts, timestamp`},
		{"exclude:glob=x", ErrUnknownOption, `unknown option "glob" for exclude filter: valid options are pattern`},
		{"inspect:path=x", ErrUnknownOption, `unknown option "path" for inspect filter: valid options are file`},
		{"search", ErrMissingOption, `search filter requires pattern option`},
		{"search:", ErrMissingOption, `search filter requires pattern option`},
		{"search:pattern=", ErrMissingOption, `search filter requires pattern option`},
		{"search:regex=true", ErrMissingOption, `search filter requires pattern option`},
		{"exclude", ErrMissingOption, `exclude filter requires pattern option`},
		{"exclude:pattern= ", ErrMissingOption, `exclude filter requires pattern option`},
		{"inspect", ErrMissingOption, `inspect filter requires file option`},
		{"normalize-timestamps:ts=-1", ErrInvalidValue, `invalid value "-1" for option "ts" of normalize-timestamps filter: want an integer >= 0`},
		{"normalize-timestamps:ts=abc", ErrInvalidValue, `~invalid value "abc" for option "ts"`},
		{"normalize-timestamps:timestamp=1.5", ErrInvalidValue, `~invalid value "1.5" for option "timestamp"`},
		{"normalize-timestamps:ts=1,2", ErrInvalidValue, `~invalid value "1,2" for option "ts"`},
		{"search:pattern=x,regex=maybe", ErrInvalidValue, `invalid value "maybe" for option "regex" of search filter: want true, yes, 1, false, no or 0`},
		{"search:pattern=x,use_regex=2", ErrInvalidValue, `~invalid value "2" for option "use_regex"`},
		{"search:pattern=x,script_friendly=", ErrInvalidValue, `~invalid value "" for option "script_friendly"`},
		{"search:pattern=x,script-friendly=on", ErrInvalidValue, `~invalid value "on" for option "script-friendly"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseFilter(tt.in)
			if err == nil {
				t.Fatalf("ParseFilter(%q) succeeded, want error", tt.in)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q does not wrap %v", err, tt.kind)
			}
			checkMessage(t, err, tt.msg)
		})
	}
}

func TestSchemes(t *testing.T) {
	tests := []struct {
		role    Role
		names   []string
		aliases map[string][]string
		options map[string][]string
	}{
		{Source, []string{"registry", "docker", "dockerpush", "tar", "dir", "oci-layout", "oci-archive"},
			map[string][]string{"tar": {"file"}, "dir": {"directory"}, "oci-layout": {"ocidir"}},
			map[string][]string{
				"registry":    {"os", "arch", "architecture", "variant", "username", "password", "insecure", "max_workers"},
				"docker":      {"socket"},
				"dockerpush":  {"socket"},
				"tar":         nil,
				"dir":         {"image", "tag"},
				"oci":         nil,
				"oci-layout":  {"tag", "os", "arch", "architecture", "variant"},
				"oci-archive": {"tag", "os", "arch", "architecture", "variant"},
			}},
		{Dest, []string{"tar", "dir", "oci", "oci-layout", "oci-archive", "mounts", "docker", "registry"},
			map[string][]string{"tar": {"file"}, "dir": {"directory"}, "oci-layout": {"ocidir"}},
			map[string][]string{
				"tar":         nil,
				"dir":         {"unique_names", "expand"},
				"oci":         nil,
				"oci-layout":  {"tag"},
				"oci-archive": {"tag"},
				"mounts":      nil,
				"docker":      {"socket"},
				"registry":    {"username", "password", "insecure", "compression", "max_workers"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.role.String(), func(t *testing.T) {
			infos := Schemes(tt.role)
			var names []string
			for _, s := range infos {
				names = append(names, s.Name)
				if s.Form == "" || s.Summary == "" {
					t.Errorf("%s: empty Form or Summary", s.Name)
				}
				if !strings.HasPrefix(s.Form, s.Name+"://") {
					t.Errorf("%s: Form %q does not start with the scheme", s.Name, s.Form)
				}
				if !reflect.DeepEqual(s.Aliases, tt.aliases[s.Name]) && (len(s.Aliases) != 0 || len(tt.aliases[s.Name]) != 0) {
					t.Errorf("%s: Aliases = %v, want %v", s.Name, s.Aliases, tt.aliases[s.Name])
				}
				var opts []string
				for _, o := range s.Options {
					opts = append(opts, o.Name)
					if o.Help == "" {
						t.Errorf("%s: option %s has no help", s.Name, o.Name)
					}
				}
				if !reflect.DeepEqual(opts, tt.options[s.Name]) {
					t.Errorf("%s: options = %v, want %v", s.Name, opts, tt.options[s.Name])
				}
				for _, alias := range s.Aliases {
					if u, err := Parse(alias+"://x", tt.role); err != nil || u.Scheme != s.Name {
						t.Errorf("alias %s: Parse gives %q, %v", alias, u.Scheme, err)
					}
				}
			}
			if !reflect.DeepEqual(names, tt.names) {
				t.Errorf("names = %v, want %v", names, tt.names)
			}
			// The returned slices are copies: changing them must not change the tables.
			infos[0].Name = "changed"
			if Schemes(tt.role)[0].Name == "changed" {
				t.Error("Schemes returns the internal table")
			}
		})
	}
}

func TestFilters(t *testing.T) {
	want := map[string][]string{
		"normalize-timestamps": {"ts", "timestamp"},
		"search":               {"pattern", "regex", "use_regex", "script_friendly", "script-friendly"},
		"exclude":              {"pattern"},
		"inspect":              {"file"},
	}
	order := []string{"normalize-timestamps", "search", "exclude", "inspect"}
	infos := Filters()
	if len(infos) != len(order) {
		t.Fatalf("Filters() has %d entries, want %d", len(infos), len(order))
	}
	for i, f := range infos {
		t.Run(f.Name, func(t *testing.T) {
			if f.Name != order[i] {
				t.Errorf("entry %d = %q, want %q", i, f.Name, order[i])
			}
			if f.Form == "" || f.Summary == "" || !strings.HasPrefix(f.Form, f.Name) {
				t.Errorf("bad Form %q or Summary %q", f.Form, f.Summary)
			}
			var opts []string
			for _, o := range f.Options {
				opts = append(opts, o.Name)
				if o.Help == "" {
					t.Errorf("option %s has no help", o.Name)
				}
			}
			if !reflect.DeepEqual(opts, want[f.Name]) {
				t.Errorf("options = %v, want %v", opts, want[f.Name])
			}
		})
	}
}

func TestRoleString(t *testing.T) {
	for role, want := range map[Role]string{Source: "source", Dest: "destination"} {
		t.Run(want, func(t *testing.T) {
			if got := role.String(); got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
		})
	}
}
