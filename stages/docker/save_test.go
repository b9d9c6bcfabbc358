package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// member is one entry of a tar stream, kept whole (test images are small).
type member struct {
	hdr  *tar.Header
	data []byte
}

func saveBytes(t *testing.T, img imagegen.Image, f imagegen.Format) ([]byte, imagegen.Result) {
	t.Helper()
	var b bytes.Buffer
	res, err := imagegen.Write(&b, img, f)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), res
}

func members(t *testing.T, raw []byte) []member {
	t.Helper()
	var ms []member
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, member{hdr, data})
	}
}

func retar(t *testing.T, ms []member) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		h := *m.hdr
		h.Size = int64(len(m.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func factsOf(res imagegen.Result) Facts {
	return Facts{Reference: "example.com/test/sample:v1", Config: res.ConfigDigest, DiffIDs: res.DiffIDs}
}

// got is what a consumer saw of an element stream.
type got struct {
	kinds  []elements.Kind
	config []byte
	names  []string
	diffs  []digest.Digest
	err    error // the consumer's first error
}

// consume reads every element the way an output would: the config whole,
// each layer through OpenTar to its end (verifying its diff ID). With
// closeEarly, layer bodies are closed unread.
func consume(in <-chan elements.Element, closeEarly bool) *got {
	g := &got{}
	for el := range in {
		g.kinds = append(g.kinds, el.Kind)
		switch el.Kind {
		case elements.KindConfig:
			b, err := io.ReadAll(el.Body)
			el.Close()
			if err == nil && digest.FromBytes(b) != el.Digest {
				err = fmt.Errorf("config digest %s, element says %s", digest.FromBytes(b), el.Digest)
			}
			if g.err == nil {
				g.err = err
			}
			g.config = b
		case elements.KindLayer:
			g.names = append(g.names, el.Name)
			if el.Index != len(g.diffs) && g.err == nil {
				g.err = fmt.Errorf("layer %d arrived at position %d", el.Index, len(g.diffs))
			}
			g.diffs = append(g.diffs, el.DiffID)
			if closeEarly {
				el.Close()
				continue
			}
			r, err := elements.OpenTar(el)
			if err == nil {
				var n int64
				n, err = io.Copy(io.Discard, r)
				r.Close()
				if err == nil && elements.CompressionOf(el.MediaType) == elements.None && el.Size != n {
					err = fmt.Errorf("%s: %d bytes, element says %d", el, n, el.Size)
				}
			}
			if err != nil && g.err == nil {
				g.err = err
			}
		default:
			el.Close()
		}
	}
	return g
}

// readSave runs a saveReader over raw with facts f, consuming as an output
// would, and returns what was seen, the reader's error and its stats.
func readSave(t *testing.T, ctx context.Context, raw []byte, f Facts, closeEarly bool) (*got, SaveStats, error) {
	t.Helper()
	tmp := t.TempDir()
	out := make(chan elements.Element, 1)
	s := newSaveReader(f, tmp, zerolog.Nop(), out)
	done := make(chan *got)
	go func() { done <- consume(out, closeEarly) }()
	err := s.run(ctx, bytes.NewReader(raw))
	close(out)
	g := <-done
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary directory not empty: %v", left)
	}
	checkNoSpoolFiles(t)
	return g, s.stats, err
}

// checkNoSpoolFiles fails if this process still has a spool file open.
func checkNoSpoolFiles(t *testing.T) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.Contains(target, ".occystrap-docker-") {
			t.Errorf("spool file still open: fd %s -> %s", fd.Name(), target)
		}
	}
}

// wantNames are the layer names spec 5.3 gives for a layout.
func wantNames(res imagegen.Result, f imagegen.Format) []string {
	if f == imagegen.Legacy {
		return res.V1IDs
	}
	var ns []string
	for _, p := range res.LayerPaths {
		ns = append(ns, filepath.Base(p))
	}
	return ns
}

func checkImage(t *testing.T, g *got, res imagegen.Result, f imagegen.Format) {
	t.Helper()
	if g.err != nil {
		t.Fatalf("consumer: %v", g.err)
	}
	wantKinds := []elements.Kind{elements.KindImage, elements.KindConfig}
	for range res.DiffIDs {
		wantKinds = append(wantKinds, elements.KindLayer)
	}
	if !slices.Equal(g.kinds, wantKinds) {
		t.Errorf("element kinds %v, want %v", g.kinds, wantKinds)
	}
	if !bytes.Equal(g.config, res.Config) {
		t.Errorf("config differs")
	}
	if !slices.Equal(g.diffs, res.DiffIDs) {
		t.Errorf("diff IDs %v, want %v", g.diffs, res.DiffIDs)
	}
	if w := wantNames(res, f); !slices.Equal(g.names, w) {
		t.Errorf("names %v, want %v", g.names, w)
	}
}

// Both save layouts, as the engine writes them (lexical order, manifest
// near the end), compressed blobs and a repeated layer included.
func TestSaveLayouts(t *testing.T) {
	for _, f := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		for _, comp := range []string{"", "gzip", "zstd"} {
			for _, repeated := range []bool{false, true} {
				if f == imagegen.Legacy && comp != "" {
					continue // docker save never compressed legacy layers
				}
				t.Run(fmt.Sprintf("%s/%q/repeated=%t", f, comp, repeated), func(t *testing.T) {
					img := imagegen.Sample()
					if repeated {
						img = imagegen.Repeated()
					}
					raw, res := saveBytes(t, img.WithCompression(comp), f)
					g, st, err := readSave(t, context.Background(), raw, factsOf(res), false)
					if err != nil {
						t.Fatal(err)
					}
					checkImage(t, g, res, f)
					t.Logf("stats %+v", st)
					if comp != "" && st.Streamed != 0 {
						t.Errorf("a compressed blob cannot be recognised before manifest.json, yet %d streamed", st.Streamed)
					}
				})
			}
		}
	}
}

// The OCI layout names uncompressed layers by their diff IDs: once the
// config is out, a layer that comes in image order streams through.
// Here the layers' lexical order is fixed so that the config comes first
// and layers follow in order: nothing is spooled.
func TestSaveStreamsInOrder(t *testing.T) {
	for _, f := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(f.String(), func(t *testing.T) {
			raw, res := saveBytes(t, imagegen.Sample(), f)
			ms := members(t, raw)
			// config first, then the layers' members in image order, then the rest
			rank := func(m member) int {
				name := clean(m.hdr.Name)
				if name == clean(res.ConfigPath) {
					return -1
				}
				for i, p := range res.LayerPaths {
					dir := filepath.Dir(p)
					if name == p || (f == imagegen.Legacy && (name == dir || strings.HasPrefix(name, dir+"/"))) {
						return i
					}
				}
				if strings.HasPrefix(name, "blobs") && m.hdr.Typeflag == tar.TypeDir {
					return -2
				}
				return 1000
			}
			slices.SortStableFunc(ms, func(a, b member) int { return rank(a) - rank(b) })
			g, st, err := readSave(t, context.Background(), retar(t, ms), factsOf(res), false)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, g, res, f)
			if st.Streamed != len(res.DiffIDs) || st.Spooled != 0 {
				t.Errorf("stats %+v: want every layer streamed, nothing spooled", st)
			}
		})
	}
}

// Any member order gives the same image: members shuffled, manifest.json
// first or last, the config last.
func TestSaveAnyOrder(t *testing.T) {
	for _, f := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		for _, img := range []imagegen.Image{imagegen.Sample(), imagegen.Repeated()} {
			raw, res := saveBytes(t, img, f)
			for seed := range uint64(12) {
				t.Run(fmt.Sprintf("%s/%s/%d", f, img.RepoTag, seed), func(t *testing.T) {
					ms := members(t, raw)
					r := rand.New(rand.NewPCG(seed, 7))
					r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
					g, st, err := readSave(t, context.Background(), retar(t, ms), factsOf(res), false)
					if err != nil {
						t.Fatal(err)
					}
					checkImage(t, g, res, f)
					unique := map[digest.Digest]bool{}
					for _, d := range res.DiffIDs {
						unique[d] = true
					}
					if st.Streamed+st.Spooled != len(unique) {
						t.Errorf("stats %+v", st)
					}
				})
			}
		}
	}
}

// A consumer may close a streamed layer without reading it (a registry
// that already has the blob): the reader skips the rest and goes on.
func TestSaveConsumerClosesEarly(t *testing.T) {
	for _, f := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(f.String(), func(t *testing.T) {
			raw, res := saveBytes(t, imagegen.Sample(), f)
			g, st, err := readSave(t, context.Background(), raw, factsOf(res), true)
			if err != nil {
				t.Fatal(err)
			}
			if len(g.diffs) != len(res.DiffIDs) {
				t.Errorf("%d layers, want %d (stats %+v)", len(g.diffs), len(res.DiffIDs), st)
			}
		})
	}
}

func TestSaveErrors(t *testing.T) {
	for _, f := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		raw, res := saveBytes(t, imagegen.Sample(), f)
		layer := res.LayerPaths[1]
		tests := []struct {
			name  string
			edit  func(ms []member) []member
			facts func(Facts) Facts
			want  string
		}{
			{"truncated", nil, nil, "unexpected eof"},
			{"layer missing", func(ms []member) []member {
				return slices.DeleteFunc(ms, func(m member) bool { return clean(m.hdr.Name) == layer })
			}, nil, "missing"},
			{"layer corrupt", func(ms []member) []member {
				for _, m := range ms {
					if clean(m.hdr.Name) == layer {
						m.data[600] ^= 1
					}
				}
				return ms
			}, nil, "mismatch"},
			{"config corrupt", func(ms []member) []member {
				for _, m := range ms {
					if clean(m.hdr.Name) == clean(res.ConfigPath) {
						m.data[len(m.data)-2] ^= 1
					}
				}
				return ms
			}, nil, "mismatch"},
			{"no manifest, layers unrecognised", func(ms []member) []member {
				return slices.DeleteFunc(ms, func(m member) bool { return clean(m.hdr.Name) == "manifest.json" })
			}, func(fa Facts) Facts {
				fa.DiffIDs = slices.Clone(fa.DiffIDs)
				fa.DiffIDs[1] = digest.FromString("another layer")
				return fa
			}, "diff ids"},
			{"inspect lists another layer", nil, func(fa Facts) Facts {
				fa.DiffIDs = append(slices.Clone(fa.DiffIDs), digest.FromString("x"))
				return fa
			}, "diff ids"},
			{"config not where inspect says", func(ms []member) []member {
				return slices.DeleteFunc(ms, func(m member) bool {
					n := clean(m.hdr.Name)
					return n == clean(res.ConfigPath) || n == "manifest.json"
				})
			}, nil, "without its config"},
		}
		for _, tt := range tests {
			t.Run(f.String()+"/"+tt.name, func(t *testing.T) {
				stream := raw
				if tt.name == "truncated" {
					stream = raw[:len(raw)/2]
				} else if tt.edit != nil {
					stream = retar(t, tt.edit(members(t, raw)))
				}
				fa := factsOf(res)
				if tt.facts != nil {
					fa = tt.facts(fa)
				}
				g, _, err := readSave(t, context.Background(), stream, fa, false)
				if err == nil {
					err = g.err
				}
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), tt.want) {
					t.Errorf("error %v, want one saying %q", err, tt.want)
				}
			})
		}
	}
}

// Cancelling while a layer streams stops the reader promptly and leaks no
// spool file.
func TestSaveCancel(t *testing.T) {
	raw, res := saveBytes(t, imagegen.Sample(), imagegen.OCI)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := errors.New("stopped")
	out := make(chan elements.Element, 1)
	tmp := t.TempDir()
	s := newSaveReader(factsOf(res), tmp, zerolog.Nop(), out)
	errc := make(chan error, 1)
	go func() { errc <- s.run(ctx, bytes.NewReader(raw)) }()
	var held []elements.Element
	for el := range out {
		if el.Kind == elements.KindLayer {
			held = append(held, el) // neither read nor closed: the reader waits
			cancel(stop)
			break
		}
		el.Close()
	}
	select {
	case err := <-errc:
		if !errors.Is(err, stop) {
			t.Errorf("error %v, want %v", err, stop)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reader did not stop")
	}
	for _, el := range held {
		el.Close()
	}
	for len(out) > 0 {
		el := <-out
		el.Close()
	}
	checkNoSpoolFiles(t)
}

// When the engine's Id is not the config's digest (an engine with the
// containerd image store gives the manifest's), the config is found from
// manifest.json at the end, and the layers wait for it in spool files.
func TestSaveConfigFromManifest(t *testing.T) {
	for _, f := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		for _, id := range []digest.Digest{"", digest.FromString("a manifest")} {
			t.Run(fmt.Sprintf("%s/%q", f, id), func(t *testing.T) {
				raw, res := saveBytes(t, imagegen.Sample(), f)
				fa := factsOf(res)
				fa.Config = id
				g, st, err := readSave(t, context.Background(), raw, fa, false)
				if err != nil {
					t.Fatal(err)
				}
				checkImage(t, g, res, f)
				if st.Streamed != 0 || st.Spooled != len(res.DiffIDs) {
					t.Errorf("stats %+v", st)
				}
			})
		}
	}
}

// A small layer whose first entry's name starts with "{" is still a layer,
// not a JSON document to keep aside.
func TestSaveLayerLikeJSON(t *testing.T) {
	img := imagegen.Image{RepoTag: "json:v1", Cmd: []string{"x"}, Layers: []imagegen.Layer{
		{Entries: []imagegen.Entry{{Path: "{a}", Data: []byte("{}")}}},
		{Entries: []imagegen.Entry{{Path: "{b}", Data: []byte("{}")}}},
	}}
	for _, f := range []imagegen.Format{imagegen.Legacy, imagegen.OCI} {
		t.Run(f.String(), func(t *testing.T) {
			raw, res := saveBytes(t, img, f)
			ms := members(t, raw)
			slices.Reverse(ms) // config after the layers: they must wait
			g, st, err := readSave(t, context.Background(), retar(t, ms), factsOf(res), false)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, g, res, f)
			if st.Spooled != 2 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}
