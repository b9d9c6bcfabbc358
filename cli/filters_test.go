package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
	"github.com/opencontainers/go-digest"
)

// capability is a security.capability xattr value (cap_net_bind_service+ep).
const capability = "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

var longName = "opt/" + strings.Repeat("d", 90) + "/" + strings.Repeat("f", 105)

// filterImage is the sample image plus a layer with what rewrites used to
// lose: a file capability xattr and a 200-character name. Every entry has
// modification time mtime.
func filterImage(mtime time.Time) imagegen.Image {
	img := imagegen.Sample()
	img.RepoTag = "example.com/test/filters:v1"
	img.Layers = append(img.Layers, imagegen.Layer{Entries: imagegen.AddParents([]imagegen.Entry{
		{Path: "usr/bin/ping", Data: []byte("#!/bin/sh\necho ping\n"), Mode: 0o755, Xattrs: map[string]string{"security.capability": capability}},
		{Path: longName, Data: []byte("long\n")},
		{Path: "usr/share/doc.txt", Data: []byte("doc\n")},
		{Path: "usr/bin/ping-link", Type: imagegen.Hardlink, Link: "usr/bin/ping"},
	})})
	for i := range img.Layers {
		for j := range img.Layers[i].Entries {
			img.Layers[i].Entries[j].ModTime = mtime
		}
	}
	return img
}

// layerEntries reads every layer.tar of a docker-save tarball we wrote.
func layerEntries(t *testing.T, path string) map[string][]*tar.Header {
	t.Helper()
	files := map[string][]byte{}
	for _, m := range readTar(t, path) {
		files[m.name] = m.data
	}
	var man dockerManifest
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil {
		t.Fatal(err)
	}
	out := map[string][]*tar.Header{}
	for _, l := range man[0].Layers {
		tr := tar.NewReader(bytes.NewReader(files[l]))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			out[l] = append(out[l], h)
		}
	}
	return out
}

func TestNormalizeTimestamps(t *testing.T) {
	work := t.TempDir()
	var outs []string
	for i, mtime := range []time.Time{time.Unix(1_600_000_000, 0), time.Unix(1_700_000_000, 0)} {
		in := filepath.Join(work, "in"+string(rune('a'+i))+".tar")
		if _, err := imagegen.WriteFile(in, filterImage(mtime), imagegen.Legacy); err != nil {
			t.Fatal(err)
		}
		for run := range 2 {
			out := filepath.Join(work, "out"+string(rune('a'+i))+string(rune('0'+run))+".tar")
			mustRun(t, "process", "tar://"+in, "tar://"+out, "-f", "normalize-timestamps:ts=1234")
			outs = append(outs, out)
		}
	}
	first, err := os.ReadFile(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outs[1:] {
		data, _ := os.ReadFile(o)
		if !bytes.Equal(data, first) {
			t.Errorf("%s differs from %s: normalisation is not reproducible", filepath.Base(o), filepath.Base(outs[0]))
		}
	}
	_, diffIDs := tarImage(t, outs[0]) // diff IDs match the rewritten layers
	var sawCap, sawLong bool
	for l, hs := range layerEntries(t, outs[0]) {
		for _, h := range hs {
			if h.ModTime.Unix() != 1234 {
				t.Errorf("%s: %s has mtime %v", l, h.Name, h.ModTime)
			}
			for k := range h.PAXRecords {
				if k == "atime" || k == "ctime" {
					t.Errorf("%s: %s keeps a PAX %s record", l, h.Name, k)
				}
			}
			if strings.HasSuffix(h.Name, "usr/bin/ping") {
				sawCap = h.PAXRecords["SCHILY.xattr.security.capability"] == capability
			}
			if strings.HasSuffix(h.Name, longName) {
				sawLong = true
			}
		}
	}
	if !sawCap {
		t.Error("the file capability xattr was lost")
	}
	if !sawLong {
		t.Error("the 200-character name was lost")
	}
	// The config follows: its diff IDs and creation times are rewritten.
	files := map[string][]byte{}
	for _, m := range readTar(t, outs[0]) {
		files[m.name] = m.data
	}
	var man dockerManifest
	json.Unmarshal(files["manifest.json"], &man)
	var cfg struct {
		Created string
		History []struct{ Created string }
	}
	json.Unmarshal(files[man[0].Config], &cfg)
	if cfg.Created != "1970-01-01T00:20:34Z" {
		t.Errorf("config created %q", cfg.Created)
	}
	for _, h := range cfg.History {
		if h.Created != "1970-01-01T00:20:34Z" {
			t.Errorf("history created %q", h.Created)
		}
	}
	if len(diffIDs) != 5 {
		t.Errorf("%d diff IDs", len(diffIDs))
	}
}

// TestNormalizeUnchangedKeepsLayers: normalising an image that is already
// normal changes no layer and no digest.
func TestNormalizeUnchangedKeepsLayers(t *testing.T) {
	src, _ := writeImage(t, filterImage(time.Unix(1234, 0)), imagegen.OCI)
	in := filepath.Join(t.TempDir(), "normal.tar")
	mustRun(t, "process", "tar://"+src, "tar://"+in, "-f", "normalize-timestamps:ts=1234")
	_, wantDiffIDs := tarImage(t, in)
	out := filepath.Join(t.TempDir(), "out.tar")
	_, _, stderr := run(t, "process", "tar://"+in, "tar://"+out, "-f", "normalize-timestamps:ts=1234")
	if strings.Contains(stderr, "Updating config diff_ids") {
		t.Errorf("layers were rewritten although nothing changed:\n%s", stderr)
	}
	_, diffIDs := tarImage(t, out)
	if !slices.Equal(diffIDs, wantDiffIDs) {
		t.Errorf("diff IDs changed: %v, want %v", diffIDs, wantDiffIDs)
	}
}

func TestExclude(t *testing.T) {
	in, _ := writeImage(t, filterImage(time.Unix(1_600_000_000, 0)), imagegen.Legacy)
	work := t.TempDir()
	plain := filepath.Join(work, "plain.tar")
	mustRun(t, "process", "tar://"+in, "tar://"+plain)
	out := filepath.Join(work, "out.tar")
	mustRun(t, "process", "tar://"+in, "tar://"+out, "-f", "exclude:pattern=**/*.txt,usr/bin/ping,etc")
	gone := func(name string) bool {
		name = strings.TrimPrefix(name, "./")
		return strings.HasSuffix(name, ".txt") || name == "usr/bin/ping" || name == "usr/bin/ping-link" ||
			name == "etc" || name == "etc/" || strings.HasPrefix(name, "etc/")
	}
	before, after := layerEntries(t, plain), layerEntries(t, out)
	var kept []*tar.Header
	for _, hs := range before {
		for _, h := range hs {
			if !gone(h.Name) {
				kept = append(kept, h)
			}
		}
	}
	var got []*tar.Header
	for _, hs := range after {
		for _, h := range hs {
			if gone(h.Name) {
				t.Errorf("%s is still there", h.Name)
			}
			got = append(got, h)
		}
	}
	key := func(h *tar.Header) string {
		b, _ := json.Marshal(h)
		return string(b)
	}
	var k1, k2 []string
	for _, h := range kept {
		k1 = append(k1, key(h))
	}
	for _, h := range got {
		k2 = append(k2, key(h))
	}
	slices.Sort(k1)
	slices.Sort(k2)
	if !slices.Equal(k1, k2) {
		t.Errorf("the entries kept are not identical to the input's (%d vs %d)", len(k1), len(k2))
	}
	tarImage(t, out)
	// The expanded filesystem has none of them either.
	dir := filepath.Join(work, "dir")
	mustRun(t, "process", "tar://"+in, "dir://"+dir+"?expand=true", "-f", "exclude:pattern=**/*.txt,usr/bin/ping,etc")
	for _, p := range []string{"etc", "usr/bin/ping", "usr/share/doc.txt", "opt/app/old1.txt"} {
		if _, err := os.Lstat(filepath.Join(dir, "manifest", p)); err == nil {
			t.Errorf("%s exists in the expanded filesystem", p)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "manifest", longName)); err != nil {
		t.Errorf("a file that was not excluded is missing: %v", err)
	}
}

func TestFilterErrorsBeforeWork(t *testing.T) {
	in, _ := writeImage(t, imagegen.Sample(), imagegen.Legacy)
	out := filepath.Join(t.TempDir(), "out.tar")
	for _, f := range []string{"exclude:pattern=[abc", "normalize-timestamps:ts=-5", "normalize-timestamps:bogus=1", "exclude"} {
		code, _, stderr := run(t, "process", "tar://"+in, "tar://"+out, "-f", f)
		if code == 0 {
			t.Errorf("-f %s succeeded", f)
		}
		if strings.Contains(stderr, "processing") {
			t.Errorf("-f %s: work started before the error:\n%s", f, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("-f %s: output written", f)
		}
	}
}

// TestFilteredImagesLoadInDocker: images rewritten by normalize-timestamps
// and exclude load in a real Docker Engine with the diff IDs we computed.
func TestFilteredImagesLoadInDocker(t *testing.T) {
	peers.Need(t, "dockerd", "docker")
	dir, err := os.MkdirTemp("", "occy-docker-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := peers.StartDocker(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	in, _ := writeImage(t, filterImage(time.Unix(1_600_000_000, 0)), imagegen.OCI)
	for _, f := range []string{"normalize-timestamps", "exclude:pattern=usr/share,**/*.txt"} {
		t.Run(f, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.tar")
			mustRun(t, "process", "tar://"+in, "tar://"+out, "-f", f)
			cd, diffIDs := tarImage(t, out)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, err := d.Docker(ctx, "load", "-i", out); err != nil {
				t.Fatal(err)
			}
			js, err := d.Docker(ctx, "image", "inspect", "example.com/test/filters:v1")
			if err != nil {
				t.Fatal(err)
			}
			var inspect []struct {
				ID     string `json:"Id"`
				RootFS struct{ Layers []digest.Digest }
			}
			if err := json.Unmarshal([]byte(js), &inspect); err != nil || len(inspect) != 1 {
				t.Fatalf("inspect: %v", err)
			}
			if inspect[0].ID != cd.String() || !slices.Equal(inspect[0].RootFS.Layers, diffIDs) {
				t.Errorf("docker sees %s %v; we wrote %s %v", inspect[0].ID, inspect[0].RootFS.Layers, cd, diffIDs)
			}
			d.Docker(ctx, "rmi", "example.com/test/filters:v1")
		})
	}
}

// TestFilterChain: -f inspect:file=a -f normalize-timestamps -f
// inspect:file=b runs in that order, so the layer digests recorded in a
// and b differ, and b's are those of the output.
func TestFilterChain(t *testing.T) {
	in, res := writeImage(t, filterImage(time.Unix(1_600_000_000, 0)), imagegen.Legacy)
	work := t.TempDir()
	a, b, out := filepath.Join(work, "a.jsonl"), filepath.Join(work, "b.jsonl"), filepath.Join(work, "out.tar")
	mustRun(t, "process", "tar://"+in, "tar://"+out,
		"-f", "inspect:file="+a, "-f", "normalize-timestamps", "-f", "inspect:file="+b)
	ids := func(path string) []string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Layers []struct{ Id string }
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var out []string
		for _, l := range doc.Layers {
			out = append(out, l.Id)
		}
		slices.Reverse(out) // newest first in the file
		return out
	}
	before, after := ids(a), ids(b)
	_, diffIDs := tarImage(t, out)
	if len(before) != len(res.DiffIDs) || len(after) != len(diffIDs) {
		t.Fatalf("a has %d layers, b %d", len(before), len(after))
	}
	for i := range after {
		if before[i] == after[i] {
			t.Errorf("layer %d: same id %s before and after normalize-timestamps", i, before[i])
		}
		if after[i] != diffIDs[i].String() {
			t.Errorf("layer %d: b says %s, the output has %s", i, after[i], diffIDs[i])
		}
	}
}
