package imagegen

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func mustWrite(t *testing.T, img Image, f Format) ([]byte, Result) {
	t.Helper()
	var b bytes.Buffer
	res, err := Write(&b, img, f)
	if err != nil {
		t.Fatalf("Write(%v): %v", f, err)
	}
	return b.Bytes(), res
}

func TestWriteSample(t *testing.T) {
	tests := []struct {
		format      Format
		compression string
		wantMedia   string
		wantMagic   []byte
	}{
		{Legacy, "", ocispec.MediaTypeImageLayer, nil},
		{Legacy, "gzip", ocispec.MediaTypeImageLayerGzip, []byte{0x1f, 0x8b}},
		{Legacy, "zstd", ocispec.MediaTypeImageLayerZstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
		{OCI, "", ocispec.MediaTypeImageLayer, nil},
		{OCI, "gzip", ocispec.MediaTypeImageLayerGzip, []byte{0x1f, 0x8b}},
		{OCI, "zstd", ocispec.MediaTypeImageLayerZstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%q", tt.format, tt.compression), func(t *testing.T) {
			img := Sample().WithCompression(tt.compression)
			b, res := mustWrite(t, img, tt.format)
			a, err := readImage(b)
			if err != nil {
				t.Fatalf("readImage: %v", err)
			}
			if got := digest.FromBytes(a.config); got != res.ConfigDigest || !bytes.Equal(a.config, res.Config) {
				t.Errorf("config digest %s, Result %s", got, res.ConfigDigest)
			}
			if len(res.DiffIDs) != 4 || len(res.LayerDigests) != 4 || len(res.LayerPaths) != 4 {
				t.Fatalf("Result has %d diff ids, %d digests, %d paths", len(res.DiffIDs), len(res.LayerDigests), len(res.LayerPaths))
			}
			for i := range a.layers {
				if got := digest.FromBytes(a.layers[i]); got != res.DiffIDs[i] {
					t.Errorf("layer %d diff id %s, Result %s", i, got, res.DiffIDs[i])
				}
				if got := digest.FromBytes(a.blobs[i]); got != res.LayerDigests[i] {
					t.Errorf("layer %d blob digest %s, Result %s", i, got, res.LayerDigests[i])
				}
				if int64(len(a.blobs[i])) != res.LayerSizes[i] {
					t.Errorf("layer %d size %d, Result %d", i, len(a.blobs[i]), res.LayerSizes[i])
				}
				if tt.wantMagic != nil && !bytes.HasPrefix(a.blobs[i], tt.wantMagic) {
					t.Errorf("layer %d does not start with % x", i, tt.wantMagic)
				}
				if tt.compression == "" && res.LayerDigests[i] != res.DiffIDs[i] {
					t.Errorf("uncompressed layer %d: blob digest differs from diff id", i)
				}
			}
			if got := a.manifest.RepoTags; len(got) != 1 || got[0] != "example.com/test/sample:v1" {
				t.Errorf("RepoTags %q", got)
			}
			if a.manifest.Config != res.ConfigPath || strings.Join(a.manifest.Layers, ",") != strings.Join(res.LayerPaths, ",") {
				t.Errorf("manifest.json %+v, Result paths %s %v", a.manifest, res.ConfigPath, res.LayerPaths)
			}
			checkConfig(t, a.image)
			var repos map[string]map[string]string
			if err := json.Unmarshal(a.members["repositories"].data, &repos); err != nil {
				t.Fatalf("repositories: %v", err)
			}
			top := repos["example.com/test/sample"]["v1"]
			switch tt.format {
			case Legacy:
				checkLegacy(t, a, res)
				if top != res.V1IDs[3] {
					t.Errorf("repositories points at %q, want top v1 id %s", top, res.V1IDs[3])
				}
			case OCI:
				checkOCILayout(t, a, res, tt.wantMedia)
				if top != res.LayerDigests[3].Encoded() {
					t.Errorf("repositories points at %q", top)
				}
			}
			checkSampleLayers(t, a.layers)
		})
	}
}

func checkConfig(t *testing.T, img ocispec.Image) {
	t.Helper()
	if img.Architecture != "amd64" || img.OS != "linux" || img.Created == nil || !img.Created.Equal(DefaultModTime) {
		t.Errorf("platform/created: %s/%s %v", img.OS, img.Architecture, img.Created)
	}
	if img.RootFS.Type != "layers" {
		t.Errorf("rootfs type %q", img.RootFS.Type)
	}
	if img.Config.WorkingDir != "/app" || len(img.Config.Env) != 2 || img.Config.Entrypoint[0] != "/app/run.sh" || img.Config.Cmd[0] != "--help" || img.Config.Labels["com.example.layers"] != "4" {
		t.Errorf("config %+v", img.Config)
	}
	nonEmpty := 0
	for i, h := range img.History {
		if !h.EmptyLayer {
			nonEmpty++
			if want := fmt.Sprintf("imagegen layer %d", nonEmpty); h.CreatedBy != want {
				t.Errorf("history[%d] created_by %q, want %q", i, h.CreatedBy, want)
			}
		}
	}
	if nonEmpty != len(img.RootFS.DiffIDs) || len(img.History) != nonEmpty+1 {
		t.Errorf("history has %d entries, %d non-empty, for %d layers", len(img.History), nonEmpty, len(img.RootFS.DiffIDs))
	}
}

func checkLegacy(t *testing.T, a *archive, res Result) {
	t.Helper()
	if last := a.order[len(a.order)-1]; last != "manifest.json" {
		t.Errorf("last entry %q, want manifest.json", last)
	}
	if !strings.HasSuffix(res.ConfigPath, ".json") || res.ConfigPath != res.ConfigDigest.Encoded()+".json" {
		t.Errorf("config path %q", res.ConfigPath)
	}
	for i, id := range res.V1IDs {
		if res.LayerPaths[i] != id+"/layer.tar" {
			t.Errorf("layer path %q for id %s", res.LayerPaths[i], id)
		}
		if d, ok := a.members[id+"/"]; !ok || d.hdr.Typeflag != tar.TypeDir {
			t.Errorf("no directory entry %s/", id)
		}
		if v := string(a.members[id+"/VERSION"].data); v != "1.0" {
			t.Errorf("%s/VERSION = %q", id, v)
		}
		var v1 v1Image
		if err := json.Unmarshal(a.members[id+"/json"].data, &v1); err != nil {
			t.Fatalf("%s/json: %v", id, err)
		}
		wantParent := ""
		if i > 0 {
			wantParent = res.V1IDs[i-1]
		}
		if v1.ID != id || v1.Parent != wantParent {
			t.Errorf("%s/json id %q parent %q, want parent %q", id, v1.ID, v1.Parent, wantParent)
		}
		if top := i == len(res.V1IDs)-1; top != (v1.Config != nil) {
			t.Errorf("%s/json: config present %v at top %v", id, v1.Config != nil, top)
		}
	}
}

func checkOCILayout(t *testing.T, a *archive, res Result, media string) {
	t.Helper()
	if a.index == nil || a.ociMan == nil {
		t.Fatal("no index.json")
	}
	d := a.index.Manifests[0]
	if d.MediaType != ocispec.MediaTypeImageManifest || d.Digest != res.ManifestDigest {
		t.Errorf("index descriptor %+v", d)
	}
	if got := d.Annotations["io.containerd.image.name"]; got != "example.com/test/sample:v1" {
		t.Errorf("io.containerd.image.name %q", got)
	}
	if got := d.Annotations[ocispec.AnnotationRefName]; got != "v1" {
		t.Errorf("ref.name %q", got)
	}
	m := a.ociMan
	if m.MediaType != ocispec.MediaTypeImageManifest || m.Config.MediaType != ocispec.MediaTypeImageConfig || m.SchemaVersion != 2 {
		t.Errorf("manifest %+v", m)
	}
	for i, l := range m.Layers {
		if l.MediaType != media || l.Digest != res.LayerDigests[i] {
			t.Errorf("layer %d descriptor %+v", i, l)
		}
	}
	if res.ConfigPath != "blobs/sha256/"+res.ConfigDigest.Encoded() {
		t.Errorf("config path %q", res.ConfigPath)
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if m, ok := a.members[dir]; !ok || m.hdr.Typeflag != tar.TypeDir {
			t.Errorf("no directory entry %s", dir)
		}
	}
}

// checkSampleLayers checks the features Sample promises.
func checkSampleLayers(t *testing.T, layers [][]byte) {
	t.Helper()
	byName := map[string]*tar.Header{}
	for i, l := range layers {
		hs, err := layerEntries(l)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		dirs := map[string]bool{".": true, "": true}
		for _, h := range hs {
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			if parent := path.Dir(name); !dirs[parent] {
				t.Errorf("layer %d: %q comes before its directory %q", i, h.Name, parent)
			}
			if h.Typeflag == tar.TypeDir {
				dirs[name] = true
			}
			if i == 0 && !strings.HasPrefix(h.Name, "./") {
				t.Errorf("layer 0 entry %q lacks ./", h.Name)
			}
			if h.Uname != "" || h.ModTime.Unix() != DefaultModTime.Unix() {
				t.Errorf("%q: uname %q mtime %v", h.Name, h.Uname, h.ModTime)
			}
			byName[fmt.Sprintf("%d:%s", i, h.Name)] = h
		}
	}
	tests := []struct {
		name  string
		check func(h *tar.Header) bool
	}{
		{"0:./", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir }},
		{"0:./bin/tool", func(h *tar.Header) bool { return h.Mode == 0o755 }},
		{"0:./bin/su-tool", func(h *tar.Header) bool { return h.Mode == 0o4755 }},
		{"0:./etc/empty", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Size == 0 }},
		{"0:./etc/hostname", func(h *tar.Header) bool { return h.Mode == 0o644 && h.Uid == 0 }},
		{"0:./tmp/", func(h *tar.Header) bool { return h.Mode == 0o1777 }},
		{"0:./home/user/", func(h *tar.Header) bool { return h.Uid == 1000 && h.Gid == 1000 && h.Mode == 0o700 }},
		{"0:./home/user/.profile", func(h *tar.Header) bool { return h.Uid == 1000 && h.Gid == 1000 }},
		{"0:./usr/lib/libfoo.so", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "libfoo.so.1" }},
		{"0:./usr/bin/tool", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "/bin/tool" }},
		{"0:./usr/bin/tool-hard", func(h *tar.Header) bool { return h.Typeflag == tar.TypeLink && h.Linkname == "./bin/tool" }},
		{"1:etc/.wh.hostname", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Size == 0 }},
		{"1:var/cache/.wh.app", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg }},
		{"1:opt/app/.wh..wh..opq", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg }},
		{"1:opt/app/new.txt", func(h *tar.Header) bool { return h.Size > 0 }},
		{"1:" + SampleLongName, func(h *tar.Header) bool { return len(path.Base(h.Name)) > 100 }},
		{"1:" + SampleDeepPath, func(h *tar.Header) bool { return len(h.Name) > 255 && h.Format == tar.FormatPAX }},
		{"1:" + SampleNonASCII, func(h *tar.Header) bool { return h.Format == tar.FormatPAX }},
		{"1:" + SampleXattrFile, func(h *tar.Header) bool {
			return h.PAXRecords["SCHILY.xattr.user.comment"] == "written by imagegen" && h.Uid == 1000
		}},
		{"2:app/lib", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "../usr/lib" }},
		{"2:app/data/seed.bin", func(h *tar.Header) bool { return h.Size == 3000 }},
		{"3:etc/motd", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg }},
	}
	for _, tt := range tests {
		h, ok := byName[tt.name]
		if !ok {
			t.Errorf("no entry %s", tt.name)
			continue
		}
		if !tt.check(h) {
			t.Errorf("entry %s has unexpected header %+v", tt.name, h)
		}
	}
}

func TestDeterminism(t *testing.T) {
	tests := []struct {
		name string
		img  func() Image
		f    Format
	}{
		{"sample-legacy", Sample, Legacy},
		{"sample-oci", Sample, OCI},
		{"sample-gzip", func() Image { return Sample().WithCompression("gzip") }, OCI},
		{"sample-zstd", func() Image { return Sample().WithCompression("zstd") }, Legacy},
		{"repeated", Repeated, Legacy},
		{"big", func() Image { return Big(3*mib, 2) }, OCI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b1, r1 := mustWrite(t, tt.img(), tt.f)
			b2, r2 := mustWrite(t, tt.img(), tt.f)
			if !bytes.Equal(b1, b2) {
				t.Error("two writes differ")
			}
			if r1.ConfigDigest != r2.ConfigDigest || fmt.Sprint(r1.LayerDigests) != fmt.Sprint(r2.LayerDigests) {
				t.Error("digests differ")
			}
		})
	}
	// Different formats share config and diff ids.
	_, l := mustWrite(t, Sample(), Legacy)
	_, o := mustWrite(t, Sample(), OCI)
	if l.ConfigDigest != o.ConfigDigest || fmt.Sprint(l.DiffIDs) != fmt.Sprint(o.DiffIDs) {
		t.Error("legacy and OCI writes disagree on config or diff ids")
	}
}

func TestRepeated(t *testing.T) {
	tests := []struct {
		f         Format
		wantBlobs int // regular layer files in the tarball
	}{
		{Legacy, 2},
		{OCI, 2},
	}
	for _, tt := range tests {
		t.Run(tt.f.String(), func(t *testing.T) {
			b, res := mustWrite(t, Repeated(), tt.f)
			a, err := readImage(b)
			if err != nil {
				t.Fatal(err)
			}
			if res.DiffIDs[0] != res.DiffIDs[2] || res.DiffIDs[0] == res.DiffIDs[1] {
				t.Fatalf("diff ids %v", res.DiffIDs)
			}
			regular := 0
			for _, p := range res.LayerPaths {
				if m := a.members[p]; m.hdr.Typeflag == tar.TypeReg {
					regular++
				}
			}
			switch tt.f {
			case Legacy:
				m := a.members[res.LayerPaths[2]]
				if want := "../" + res.V1IDs[0] + "/layer.tar"; m.hdr.Typeflag != tar.TypeSymlink || m.hdr.Linkname != want {
					t.Errorf("third layer.tar: type %c link %q, want symlink to %q", m.hdr.Typeflag, m.hdr.Linkname, want)
				}
				if res.V1IDs[0] == res.V1IDs[2] {
					t.Error("repeated layers share a v1 id")
				}
			case OCI:
				regular = 0
				for _, name := range a.order {
					if strings.HasPrefix(name, "blobs/sha256/") && a.members[name].hdr.Typeflag == tar.TypeReg {
						regular++
					}
				}
				regular -= 2 // config and manifest blobs
				if res.LayerPaths[0] != res.LayerPaths[2] {
					t.Errorf("layer paths %v", res.LayerPaths)
				}
			}
			if regular != tt.wantBlobs {
				t.Errorf("%d layer files stored, want %d", regular, tt.wantBlobs)
			}
		})
	}
}

func TestEntryHeader(t *testing.T) {
	tests := []struct {
		name     string
		e        Entry
		prefix   string
		wantName string
		wantType byte
		wantMode int64
		wantLink string
		wantSize int64
	}{
		{"file", Entry{Path: "a/b", Data: []byte("xy")}, "", "a/b", tar.TypeReg, 0o644, "", 2},
		{"prng file", Entry{Path: "a/b", Size: 10}, "./", "./a/b", tar.TypeReg, 0o644, "", 10},
		{"data wins over size", Entry{Path: "f", Data: []byte{}, Size: 10}, "", "f", tar.TypeReg, 0o644, "", 0},
		{"dir", Entry{Path: "d", Type: Dir}, "./", "./d/", tar.TypeDir, 0o755, "", 0},
		{"dir with slash", Entry{Path: "d/", Type: Dir, Mode: 0o700}, "", "d/", tar.TypeDir, 0o700, "", 0},
		{"symlink", Entry{Path: "l", Type: Symlink, Link: "../x"}, "./", "./l", tar.TypeSymlink, 0o777, "../x", 0},
		{"hardlink", Entry{Path: "h", Type: Hardlink, Link: "bin/x"}, "./", "./h", tar.TypeLink, 0o644, "./bin/x", 0},
		{"absolute hardlink", Entry{Path: "h", Type: Hardlink, Link: "/etc/x"}, "./", "./h", tar.TypeLink, 0o644, "/etc/x", 0},
		{"whiteout", Entry{Path: "etc/hostname", Type: Whiteout}, "", "etc/.wh.hostname", tar.TypeReg, 0o644, "", 0},
		{"whiteout top", Entry{Path: "x", Type: Whiteout}, "./", "./.wh.x", tar.TypeReg, 0o644, "", 0},
		{"whiteout dir", Entry{Path: "var/cache/", Type: Whiteout}, "", "var/.wh.cache", tar.TypeReg, 0o644, "", 0},
		{"opaque", Entry{Path: "opt/app", Type: Opaque}, "", "opt/app/.wh..wh..opq", tar.TypeReg, 0o644, "", 0},
		{"opaque root", Entry{Path: "", Type: Opaque}, "", ".wh..wh..opq", tar.TypeReg, 0o644, "", 0},
		{"fifo", Entry{Path: "p", Type: Fifo}, "", "p", tar.TypeFifo, 0o644, "", 0},
		{"chardev", Entry{Path: "dev/null", Type: CharDev, DevMajor: 1, DevMinor: 3}, "", "dev/null", tar.TypeChar, 0o666, "", 0},
		{"mode none", Entry{Path: "f", Mode: ModeNone}, "", "f", tar.TypeReg, 0, "", 0},
		{"absolute kept", Entry{Path: "/abs/x"}, "./", "/abs/x", tar.TypeReg, 0o644, "", 0},
		{"traversal kept", Entry{Path: "../../x"}, "", "../../x", tar.TypeReg, 0o644, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := tt.e.header(tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if h.Name != tt.wantName || h.Typeflag != tt.wantType || h.Mode != tt.wantMode || h.Linkname != tt.wantLink || h.Size != tt.wantSize {
				t.Errorf("got name %q type %c mode %o link %q size %d", h.Name, h.Typeflag, h.Mode, h.Linkname, h.Size)
			}
			if !h.ModTime.Equal(DefaultModTime) {
				t.Errorf("mtime %v", h.ModTime)
			}
		})
	}
	if _, err := (Entry{Path: "", Type: Whiteout}).header(""); err == nil {
		t.Error("whiteout without a name: no error")
	}
}

func TestAddParents(t *testing.T) {
	tests := []struct {
		name string
		in   []Entry
		want []string
	}{
		{"adds missing", []Entry{{Path: "a/b/c"}}, []string{"a", "a/b", "a/b/c"}},
		{"keeps existing", []Entry{{Path: "a", Type: Dir, Mode: 0o700}, {Path: "a/f"}}, []string{"a", "a/f"}},
		{"opaque needs its dir", []Entry{{Path: "x/y", Type: Opaque}}, []string{"x", "x/y", "x/y"}},
		{"whiteout needs parent", []Entry{{Path: "x/y", Type: Whiteout}}, []string{"x", "x/y"}},
		{"shared parent once", []Entry{{Path: "d/1"}, {Path: "d/2"}}, []string{"d", "d/1", "d/2"}},
		{"later explicit dir kept", []Entry{{Path: "d/1"}, {Path: "d", Type: Dir}}, []string{"d/1", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range AddParents(tt.in) {
				got = append(got, e.Path)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ in, full, repo, tag string }{
		{"sample:latest", "docker.io/library/sample:latest", "sample", "latest"},
		{"sample", "docker.io/library/sample:latest", "sample", "latest"},
		{"me/app:1", "docker.io/me/app:1", "me/app", "1"},
		{"example.com/test/sample:v1", "example.com/test/sample:v1", "example.com/test/sample", "v1"},
		{"localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x", "latest"},
		{"localhost/x:y", "localhost/x:y", "localhost/x", "y"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := FullName(tt.in); got != tt.full {
				t.Errorf("FullName = %q, want %q", got, tt.full)
			}
			if r, g := splitRepoTag(tt.in); r != tt.repo || g != tt.tag {
				t.Errorf("splitRepoTag = %q %q", r, g)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    Format
		wantErr bool
	}{
		{"legacy", Legacy, false}, {"OCI", OCI, false}, {"docker", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseFormat(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("ParseFormat(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && got.String() != strings.ToLower(tt.in) {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name string
		img  Image
		f    Format
	}{
		{"bad compression", Image{Layers: []Layer{{Compression: "bzip2"}}}, Legacy},
		{"bad format", Sample(), Format(9)},
		{"bad entry", Image{Layers: []Layer{{Entries: []Entry{{Path: "x", Type: EntryType(99)}}}}}, OCI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Write(io.Discard, tt.img, tt.f); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestUntaggedAndEmpty(t *testing.T) {
	for _, f := range []Format{Legacy, OCI} {
		b, res := mustWrite(t, Image{}, f)
		a, err := readImage(b)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if a.manifest.RepoTags != nil || len(res.DiffIDs) != 0 {
			t.Errorf("%v: RepoTags %v", f, a.manifest.RepoTags)
		}
		if _, ok := a.members["repositories"]; ok {
			t.Errorf("%v: repositories written for an untagged image", f)
		}
		if !bytes.Contains(a.config, []byte(`"diff_ids":[]`)) {
			t.Errorf("%v: config %s", f, a.config)
		}
	}
}

func TestBig(t *testing.T) {
	const total = 8 * mib
	tests := []struct {
		f           Format
		compression string
	}{
		{Legacy, ""}, {OCI, ""}, {OCI, "gzip"}, {Legacy, "zstd"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%q", tt.f, tt.compression), func(t *testing.T) {
			img := Big(total, 3).WithCompression(tt.compression)
			var sum int64
			for _, l := range img.Layers {
				for j, e := range l.Entries {
					small := e.Size <= 16<<10
					large := e.Size >= mib && e.Size <= 64*mib
					last := j == len(l.Entries)-1 // may be cut to fit the budget
					if e.Type == File && !small && !large && !last {
						t.Errorf("file %s has size %d", e.Path, e.Size)
					}
					sum += e.Size
				}
			}
			if sum != total || len(img.Layers) != 3 {
				t.Fatalf("%d layers hold %d bytes", len(img.Layers), sum)
			}
			// Stream through a pipe and check each layer while reading.
			pr, pw := io.Pipe()
			var res Result
			done := make(chan error, 1)
			go func() {
				r, err := Write(pw, img, tt.f)
				res = r
				pw.CloseWithError(err)
				done <- err
			}()
			tr := tar.NewReader(pr)
			blobs := map[string]digest.Digest{}
			var stored int64
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if h.Typeflag != tar.TypeReg || h.Size < mib/2 {
					continue
				}
				hh := sha256.New()
				n, err := io.Copy(hh, tr)
				if err != nil {
					t.Fatal(err)
				}
				stored += n
				blobs[h.Name] = digest.NewDigest(digest.SHA256, hh)
			}
			if _, err := io.Copy(io.Discard, pr); err != nil { // drain, then wait for Write
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if len(blobs) != 3 {
				t.Fatalf("%d big blobs", len(blobs))
			}
			for i, p := range res.LayerPaths {
				if blobs[p] != res.LayerDigests[i] {
					t.Errorf("layer %s digest %s, Result %s", p, blobs[p], res.LayerDigests[i])
				}
			}
			if stored < total { // incompressible: the blobs hold at least the data
				t.Errorf("stored %d bytes for %d of data", stored, total)
			}
		})
	}
}

func TestBigMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const total = 64 * mib
	img := Big(total, 2)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var c countWriter
	if _, err := Write(&c, img, OCI); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*mib {
		t.Errorf("writing %d bytes allocated %d bytes", total, alloc)
	}
	if c.n < total {
		t.Errorf("wrote %d bytes", c.n)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "img.tar")
	res, err := WriteFile(p, Sample(), OCI)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := mustWrite(t, Sample(), OCI)
	if !bytes.Equal(b, mem) || res.ConfigDigest == "" {
		t.Error("file differs from in-memory write")
	}
	bad := filepath.Join(dir, "bad.tar")
	if _, err := WriteFile(bad, Image{Layers: []Layer{{Compression: "lz4"}}}, OCI); err == nil {
		t.Error("no error")
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("failed write left %s behind", bad)
	}
}
