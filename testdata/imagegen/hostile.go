package imagegen

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Stages of a HostileCase.
const (
	// StageInput marks cases where the outer tarball itself is broken or
	// inconsistent: a reader must fail while reading the input (before or
	// while fetching layers), without extracting anything.
	StageInput = "input"
	// StageExtract marks cases that are valid, self-consistent image
	// tarballs (all digests match) whose layer contents are malicious or
	// broken: the failure must come from unpacking the layers.
	StageExtract = "extract"
)

// HostileCase is one malformed or malicious image tarball.
//
// A reader passes the case when its error message, lower-cased, contains
// Want. For the extract cases the expected behaviour is refusal; where
// MayConfine is set, confining the entry inside the extraction root
// instead (chroot-like resolution, as github.com/cyphar/filepath-securejoin
// or Docker's own extractor do) is also acceptable, provided nothing is
// created, changed or removed outside the root.
//
// Want words (documented contract):
//   - "escapes": an entry, link target or whiteout would reach outside
//     the extraction root (os.Root reports "path escapes from parent");
//   - "truncated": the outer tarball or a layer tar ends early (wrap
//     io.ErrUnexpectedEOF into a message that says so);
//   - "missing": manifest.json names a file absent from the tarball;
//   - "mismatch": content does not match its digest (diff_id or config);
//   - "legacy": a pre-Docker-1.10 tarball (no manifest.json, but a
//     "repositories" file), as in the Python tool's message;
//   - "not a tar": the input is not a tar archive (nor gzip/zstd);
//   - "manifest.json": manifest.json exists but cannot be parsed.
type HostileCase struct {
	// Name is a short identifier, usable as a file name.
	Name string
	// Stage is StageInput or StageExtract.
	Stage string
	// Want is a lower-case substring that the error message must contain
	// (compare case-insensitively).
	Want string
	// MayConfine tells that confining the hostile entry inside the root
	// is an acceptable alternative to failing (extract cases only).
	MayConfine bool
	// Escapes lists the paths, relative to the extraction root, that a
	// vulnerable extractor would create or delete (absolute paths are host
	// paths). Relative escapes go at most two levels above the root, so
	// extract into DIR/a/root and check DIR.
	Escapes []string
	// Description says what the tarball contains.
	Description string
	// Format is the docker save layout the case is written in.
	Format Format
	// Write writes the tarball.
	Write func(w io.Writer) error
}

// hostileBase is an ordinary bottom layer for the extract cases.
func hostileBase() Layer {
	return Layer{Entries: []Entry{
		{Path: "etc", Type: Dir},
		{Path: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{Path: "tmp", Type: Dir, Mode: 0o1777},
		{Path: "a", Type: Dir},
		{Path: "a/ok.txt", Data: []byte("harmless\n")},
	}}
}

// hostileImage is an image with the base layer and then layers.
func hostileImage(name string, layers ...Layer) Image {
	return Image{
		RepoTag: "imagegen/hostile-" + name + ":latest",
		Layers:  append([]Layer{hostileBase()}, layers...),
		Cmd:     []string{"/bin/sh"},
	}
}

func writeImage(img Image, f Format) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := Write(w, img, f)
		return err
	}
}

// Hostile returns the hostile cases. Every Write is deterministic.
func Hostile() []HostileCase {
	return []HostileCase{
		{
			Name: "path-traversal", Stage: StageExtract, Want: "escapes",
			Escapes:     []string{"../../evil.txt"},
			Description: `layer 2 has a file "../../evil.txt"`,
			Format:      Legacy,
			Write: writeImage(hostileImage("path-traversal", Layer{Entries: []Entry{
				{Path: "../../evil.txt", Data: []byte("escaped\n")},
			}}), Legacy),
		},
		{
			Name: "path-traversal-inner", Stage: StageExtract, Want: "escapes",
			Escapes:     []string{"../evil2.txt"},
			Description: `layer 2 has a file "a/../../evil2.txt" (".." inside the name)`,
			Format:      OCI,
			Write: writeImage(hostileImage("path-traversal-inner", Layer{Entries: []Entry{
				{Path: "a", Type: Dir},
				{Path: "a/../../evil2.txt", Data: []byte("escaped\n")},
			}}), OCI),
		},
		{
			Name: "absolute-path", Stage: StageExtract, Want: "escapes", MayConfine: true,
			Escapes:     []string{"/abs/evil.txt"},
			Description: `layer 2 has a file "/abs/evil.txt"; confining it to <root>/abs/evil.txt is acceptable`,
			Format:      Legacy,
			Write: writeImage(hostileImage("absolute-path", Layer{Entries: []Entry{
				{Path: "/abs/evil.txt", Data: []byte("absolute\n")},
			}}), Legacy),
		},
		{
			Name: "symlink-escape", Stage: StageExtract, Want: "escapes", MayConfine: true,
			Escapes:     []string{"../../evil3.txt"},
			Description: `layer 2 has a symlink "link" -> "../.." and then a file "link/evil3.txt" written through it`,
			Format:      Legacy,
			Write: writeImage(hostileImage("symlink-escape", Layer{Entries: []Entry{
				{Path: "link", Type: Symlink, Link: "../.."},
				{Path: "link/evil3.txt", Data: []byte("through the link\n")},
			}}), Legacy),
		},
		{
			Name: "symlink-escape-later-layer", Stage: StageExtract, Want: "escapes", MayConfine: true,
			Escapes:     []string{"/tmp/imagegen-evil4.txt"},
			Description: `layer 2 has a symlink "tmplink" -> "/tmp"; layer 3 writes "tmplink/imagegen-evil4.txt"; confining resolves it to <root>/tmp/imagegen-evil4.txt`,
			Format:      OCI,
			Write: writeImage(hostileImage("symlink-escape-later-layer",
				Layer{Entries: []Entry{{Path: "tmplink", Type: Symlink, Link: "/tmp"}}},
				Layer{Entries: []Entry{{Path: "tmplink/imagegen-evil4.txt", Data: []byte("through a lower layer's link\n")}}},
			), OCI),
		},
		{
			Name: "hardlink-escape", Stage: StageExtract, Want: "escapes", MayConfine: true,
			Description: `layer 2 has a hardlink "passwd-link" to "../../etc/passwd"; confining links it to <root>/etc/passwd`,
			Format:      Legacy,
			Write: writeImage(hostileImage("hardlink-escape", Layer{Entries: []Entry{
				{Path: "passwd-link", Type: Hardlink, Link: "../../etc/passwd"},
			}}), Legacy),
		},
		{
			Name: "whiteout-traversal", Stage: StageExtract, Want: "escapes", MayConfine: true,
			Escapes:     []string{"../victim"},
			Description: `layer 2 has a whiteout "../.wh.victim" that would delete a file beside the root; confining it is a harmless no-op`,
			Format:      Legacy,
			Write: writeImage(hostileImage("whiteout-traversal", Layer{Entries: []Entry{
				{Path: "../victim", Type: Whiteout},
			}}), Legacy),
		},
		{
			Name: "truncated-layer", Stage: StageExtract, Want: "truncated",
			Description: `layer 2 is a tar cut in the middle of a file's data; its diff_id is that of the cut bytes, so only unpacking fails`,
			Format:      Legacy,
			Write:       writeTruncatedLayer,
		},
		{
			Name: "truncated-tar", Stage: StageInput, Want: "truncated",
			Description: `the Sample image tarball cut in the middle of the first layer's data`,
			Format:      Legacy,
			Write:       writeTruncatedTar,
		},
		{
			Name: "truncated-outer-tar", Stage: StageInput, Want: "truncated",
			Description: `the Sample image tarball cut 100 bytes into the header of its last entry (manifest.json)`,
			Format:      Legacy,
			Write:       writeTruncatedHeader,
		},
		{
			Name: "missing-layer", Stage: StageInput, Want: "missing",
			Description: `manifest.json names "<v1id>/layer.tar" of the second layer, which is not in the tarball (its directory, VERSION and json are)`,
			Format:      Legacy,
			Write:       writeMissingLayer,
		},
		{
			Name: "diffid-mismatch", Stage: StageInput, Want: "mismatch",
			Description: `the second layer.tar is replaced by another valid layer tar, so its sha256 is not the config's diff_id`,
			Format:      Legacy,
			Write:       writeDiffIDMismatch,
		},
		{
			Name: "config-digest-mismatch", Stage: StageInput, Want: "mismatch",
			Description: `the config "<hex>.json" is edited (same length, still valid JSON with the right diff_ids), so its sha256 is not <hex>`,
			Format:      Legacy,
			Write:       writeConfigMismatch,
		},
		{
			Name: "legacy-pre-1.10", Stage: StageInput, Want: "legacy",
			Description: `a pre-1.10 docker save: "repositories" and "<id>/{VERSION,json,layer.tar}" only, no manifest.json and no config`,
			Format:      Legacy,
			Write:       writePre110,
		},
		{
			Name: "not-a-tar", Stage: StageInput, Want: "not a tar",
			Description: `4 KiB of pseudo-random bytes (no gzip or zstd magic)`,
			Format:      Legacy,
			Write: func(w io.Writer) error {
				_, err := io.CopyN(w, NewPRNG(0xbad), 4096)
				return err
			},
		},
		{
			Name: "manifest-not-json", Stage: StageInput, Want: "manifest.json",
			Description: `manifest.json holds text that is not JSON`,
			Format:      Legacy,
			Write:       writeManifestGarbage,
		},
	}
}

// buffered writes img in format f to memory.
func buffered(img Image, f Format) ([]byte, Result, error) {
	var b bytes.Buffer
	res, err := Write(&b, img, f)
	return b.Bytes(), res, err
}

// rewriteTar copies the tar src to w, passing each entry through fn, which
// may change the header and data or return a nil header to drop the entry.
func rewriteTar(w io.Writer, src []byte, fn func(h *tar.Header, data []byte) (*tar.Header, []byte)) error {
	tr := tar.NewReader(bytes.NewReader(src))
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		h, data = fn(h, data)
		if h == nil {
			continue
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// entryOffset locates an entry of a tar held in memory.
type entryOffset struct {
	name      string
	hdrStart  int64 // first header block (including any PAX header)
	dataStart int64
	size      int64
	isRegular bool
}

// scanOffsets returns the offsets of every entry of the tar b.
func scanOffsets(b []byte) ([]entryOffset, error) {
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	var out []entryOffset
	next := int64(0)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		pos := r.Size() - int64(r.Len())
		out = append(out, entryOffset{
			name: h.Name, hdrStart: next, dataStart: pos, size: h.Size,
			isRegular: h.Typeflag == tar.TypeReg,
		})
		next = pos + (h.Size+511)/512*512
	}
}

func writeTruncatedTar(w io.Writer) error {
	b, _, err := buffered(Sample(), Legacy)
	if err != nil {
		return err
	}
	offs, err := scanOffsets(b)
	if err != nil {
		return err
	}
	for _, o := range offs {
		if o.isRegular && strings.HasSuffix(o.name, "/layer.tar") && o.size > 1024 {
			_, err := w.Write(b[:o.dataStart+o.size/2])
			return err
		}
	}
	return errors.New("imagegen: no layer.tar large enough to cut")
}

func writeTruncatedHeader(w io.Writer) error {
	b, _, err := buffered(Sample(), Legacy)
	if err != nil {
		return err
	}
	offs, err := scanOffsets(b)
	if err != nil {
		return err
	}
	last := offs[len(offs)-1]
	if last.name != "manifest.json" {
		return fmt.Errorf("imagegen: last entry is %q, not manifest.json", last.name)
	}
	_, err = w.Write(b[:last.hdrStart+100])
	return err
}

func writeTruncatedLayer(w io.Writer) error {
	var lt bytes.Buffer
	l := Layer{Entries: []Entry{
		{Path: "big", Type: Dir},
		{Path: "big/blob.bin", Size: 64 << 10, Seed: 77},
		{Path: "big/after.txt", Data: []byte("never reached\n")},
	}}
	if err := writeLayerTar(&lt, l); err != nil {
		return err
	}
	raw := lt.Bytes()[:512+512+(32<<10)] // dir header, file header, half the data
	return writeImage(hostileImage("truncated-layer", Layer{Raw: raw}), Legacy)(w)
}

func writeMissingLayer(w io.Writer) error {
	b, res, err := buffered(Sample(), Legacy)
	if err != nil {
		return err
	}
	drop := res.LayerPaths[1]
	return rewriteTar(w, b, func(h *tar.Header, data []byte) (*tar.Header, []byte) {
		if h.Name == drop {
			return nil, nil
		}
		return h, data
	})
}

func writeDiffIDMismatch(w io.Writer) error {
	b, res, err := buffered(Sample(), Legacy)
	if err != nil {
		return err
	}
	var other bytes.Buffer
	if err := writeLayerTar(&other, Layer{Entries: []Entry{
		{Path: "etc", Type: Dir},
		{Path: "etc/substituted", Data: []byte("not the layer the config describes\n")},
	}}); err != nil {
		return err
	}
	target := res.LayerPaths[1]
	return rewriteTar(w, b, func(h *tar.Header, data []byte) (*tar.Header, []byte) {
		if h.Name == target {
			return h, other.Bytes()
		}
		return h, data
	})
}

func writeConfigMismatch(w io.Writer) error {
	b, res, err := buffered(Sample(), Legacy)
	if err != nil {
		return err
	}
	edited := bytes.Replace(res.Config, []byte("imagegen layer 1"), []byte("imagegen layer X"), 1)
	if bytes.Equal(edited, res.Config) {
		return fmt.Errorf("imagegen: config has nothing to edit")
	}
	return rewriteTar(w, b, func(h *tar.Header, data []byte) (*tar.Header, []byte) {
		if h.Name == res.ConfigPath {
			return h, edited
		}
		return h, data
	})
}

func writePre110(w io.Writer) error {
	b, res, err := buffered(Sample(), Legacy)
	if err != nil {
		return err
	}
	return rewriteTar(w, b, func(h *tar.Header, data []byte) (*tar.Header, []byte) {
		if h.Name == "manifest.json" || h.Name == res.ConfigPath {
			return nil, nil
		}
		return h, data
	})
}

func writeManifestGarbage(w io.Writer) error {
	b, _, err := buffered(Sample(), Legacy)
	if err != nil {
		return err
	}
	return rewriteTar(w, b, func(h *tar.Header, data []byte) (*tar.Header, []byte) {
		if h.Name == "manifest.json" {
			return h, []byte("this is {not JSON at all\n")
		}
		return h, data
	})
}
