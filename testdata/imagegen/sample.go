package imagegen

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Sample path constants, for tests that look for particular entries.
const (
	// SampleLongName is a file whose base name alone is over 100 bytes
	// (it needs a USTAR prefix split or a PAX path record).
	SampleLongName = "opt/long/" + "this-file-name-is-deliberately-very-long-to-exceed-the-one-hundred-byte-ustar-name-field-limit-of-tar.txt"
	// SampleNonASCII is a file with non-ASCII characters in its path
	// (always written with a PAX path record).
	SampleNonASCII = "données/naïve-文件.txt"
	// SampleXattrFile carries the extended attribute user.comment.
	SampleXattrFile = "home/user/notes.txt"
)

// SampleDeepPath is a file whose path is over 255 bytes (it needs a PAX
// path record); its parent directories are in the same layer.
var SampleDeepPath = strings.Repeat("deep-directory-level-with-a-rather-long-name/", 6) + "bottom-file.txt"

// Sample returns a small four-layer image whose layers exercise:
//
//   - layer 1 (names prefixed "./", with a "./" root entry): a base tree
//     with regular files, nested directories, a relative symlink
//     (usr/lib/libfoo.so -> libfoo.so.1), an absolute symlink
//     (usr/bin/tool -> /bin/tool), a hardlink (usr/bin/tool-hard to
//     bin/tool), an empty file (etc/empty), a 0755 file (bin/tool), a
//     setuid 04755 file (bin/su-tool), a sticky 01777 directory (tmp), and
//     entries owned by uid/gid 1000 (home/user);
//   - layer 2: a whiteout of a lower file (etc/hostname), a whiteout of a
//     whole lower directory (var/cache/app), an opaque directory (opt/app)
//     with new content in the same layer, a long name (SampleLongName), a
//     path over 255 bytes (SampleDeepPath), a non-ASCII path
//     (SampleNonASCII), a file with the xattr user.comment
//     (SampleXattrFile, owned by 1000:1000) and a replaced file;
//   - layer 3: application files and a symlink into a lower layer;
//   - layer 4: a small single-file layer.
//
// Directories always precede their contents. The image is tagged
// "example.com/test/sample:v1".
func Sample() Image {
	l1 := []Entry{
		{Path: "bin", Type: Dir},
		{Path: "bin/tool", Data: []byte("#!/bin/sh\necho tool\n"), Mode: 0o755},
		{Path: "bin/su-tool", Data: []byte("#!/bin/sh\necho setuid\n"), Mode: 0o4755},
		{Path: "etc", Type: Dir},
		{Path: "etc/hostname", Data: []byte("sample\n")},
		{Path: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")},
		{Path: "etc/empty", Data: []byte{}},
		{Path: "home", Type: Dir},
		{Path: "home/user", Type: Dir, UID: 1000, GID: 1000, Mode: 0o700},
		{Path: "home/user/.profile", Data: []byte("export PS1='$ '\n"), UID: 1000, GID: 1000},
		{Path: "opt", Type: Dir},
		{Path: "opt/app", Type: Dir},
		{Path: "opt/app/old1.txt", Data: []byte("old one\n")},
		{Path: "opt/app/old-dir", Type: Dir},
		{Path: "opt/app/old-dir/old2.txt", Data: []byte("old two\n")},
		{Path: "tmp", Type: Dir, Mode: 0o1777},
		{Path: "usr", Type: Dir},
		{Path: "usr/bin", Type: Dir},
		{Path: "usr/bin/tool", Type: Symlink, Link: "/bin/tool"},
		{Path: "usr/bin/tool-hard", Type: Hardlink, Link: "bin/tool"},
		{Path: "usr/lib", Type: Dir},
		{Path: "usr/lib/libfoo.so.1", Data: []byte("\x7fELF fake library\n")},
		{Path: "usr/lib/libfoo.so", Type: Symlink, Link: "libfoo.so.1"},
		{Path: "var", Type: Dir},
		{Path: "var/cache", Type: Dir},
		{Path: "var/cache/app", Type: Dir},
		{Path: "var/cache/app/a.dat", Data: []byte("cache a\n")},
		{Path: "var/cache/app/sub", Type: Dir},
		{Path: "var/cache/app/sub/b.dat", Data: []byte("cache b\n")},
		{Path: "var/cache/keep.dat", Data: []byte("kept\n")},
	}
	l2 := AddParents([]Entry{
		{Path: "etc", Type: Dir},
		{Path: "etc/hostname", Type: Whiteout},
		{Path: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\napp:x:1001:1001::/app:/bin/sh\n")},
		{Path: "home", Type: Dir},
		{Path: "home/user", Type: Dir, UID: 1000, GID: 1000, Mode: 0o700},
		{Path: SampleXattrFile, Data: []byte("remember the milk\n"), UID: 1000, GID: 1000, Xattrs: map[string]string{"user.comment": "written by imagegen"}},
		{Path: "opt", Type: Dir},
		{Path: "opt/app", Type: Dir},
		{Path: "opt/app", Type: Opaque},
		{Path: "opt/app/new.txt", Data: []byte("new content after opaque\n")},
		{Path: SampleLongName, Data: []byte("long name\n")},
		{Path: "var", Type: Dir},
		{Path: "var/cache", Type: Dir},
		{Path: "var/cache/app", Type: Whiteout},
		{Path: SampleNonASCII, Data: []byte("bonjour 你好\n")},
		{Path: SampleDeepPath, Data: []byte("deep\n")},
	})
	l3 := AddParents([]Entry{
		{Path: "app/config.json", Data: []byte(`{"listen":":8080"}` + "\n")},
		{Path: "app/run.sh", Data: []byte("#!/bin/sh\nexec /bin/tool \"$@\"\n"), Mode: 0o755},
		{Path: "app/lib", Type: Symlink, Link: "../usr/lib"},
		{Path: "app/data", Type: Dir, UID: 1000, GID: 1000},
		{Path: "app/data/seed.bin", Size: 3000, Seed: 3, UID: 1000, GID: 1000},
	})
	l4 := []Entry{
		{Path: "etc", Type: Dir},
		{Path: "etc/motd", Data: []byte("welcome to the sample image\n")},
	}
	return Image{
		RepoTag:    "example.com/test/sample:v1",
		Layers:     []Layer{{Entries: l1, DotSlash: true}, {Entries: l2}, {Entries: l3}, {Entries: l4}},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "IMAGEGEN=1"},
		Entrypoint: []string{"/app/run.sh"},
		Cmd:        []string{"--help"},
		WorkingDir: "/app",
		Labels:     map[string]string{"org.opencontainers.image.title": "imagegen sample", "com.example.layers": "4"},
	}
}

// Repeated returns a three-layer image whose third layer has exactly the
// same content as its first (the same diff_id), which docker save stores
// as a symlink in the Legacy format and as a single blob in the OCI format.
func Repeated() Image {
	base := Layer{Entries: []Entry{
		{Path: "etc", Type: Dir},
		{Path: "etc/marker", Data: []byte("same layer twice\n")},
	}}
	mid := Layer{Entries: []Entry{
		{Path: "etc", Type: Dir},
		{Path: "etc/marker", Type: Whiteout},
	}}
	return Image{RepoTag: "repeated:latest", Layers: []Layer{base, mid, base}, Cmd: []string{"/bin/sh"}}
}

// WithCompression returns a copy of img whose layers are all stored with
// compression c ("", "gzip" or "zstd").
func (img Image) WithCompression(c string) Image {
	ls := make([]Layer, len(img.Layers))
	for i, l := range img.Layers {
		l.Compression = c
		ls[i] = l
	}
	img.Layers = ls
	return img
}

const mib = 1 << 20

// Big returns an image for benchmarks: layers layers (at least one) whose
// files together hold totalBytes of incompressible pseudo-random data,
// split evenly between the layers. Each layer mixes files of 1 to 64 MiB
// (smaller when the layer's share is smaller) with small files of up to
// 16 KiB. File contents are generated while writing, never stored.
func Big(totalBytes int64, layers int) Image {
	if layers < 1 {
		layers = 1
	}
	if totalBytes < 0 {
		totalBytes = 0
	}
	r := rand.New(rand.NewPCG(0x1a9e, uint64(totalBytes)^uint64(layers)<<48))
	img := Image{
		RepoTag: fmt.Sprintf("imagegen/big:%dx%d", totalBytes, layers),
		Cmd:     []string{"/bin/true"},
	}
	seed := int64(1000)
	for li := 0; li < layers; li++ {
		budget := totalBytes / int64(layers)
		if li == layers-1 {
			budget += totalBytes % int64(layers)
		}
		dir := fmt.Sprintf("data/layer-%02d", li+1)
		es := []Entry{{Path: "data", Type: Dir}, {Path: dir, Type: Dir}}
		for n := 0; budget > 0; n++ {
			var size int64
			if n%4 == 3 {
				size = 1 + r.Int64N(16<<10) // a small file now and then
			} else {
				size = mib + r.Int64N(63*mib+1)
			}
			size = min(size, budget)
			budget -= size
			seed++
			es = append(es, Entry{Path: fmt.Sprintf("%s/file-%04d.bin", dir, n), Size: size, Seed: seed})
		}
		img.Layers = append(img.Layers, Layer{Entries: es})
	}
	return img
}
