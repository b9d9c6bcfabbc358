package decompress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/opencontainers/go-digest"
)

// layer builds a layer element of data compressed as c.
func layer(t *testing.T, i int, data []byte, c elements.Compression) elements.Element {
	t.Helper()
	var buf bytes.Buffer
	if c == elements.None {
		buf.Write(data)
	} else {
		zw, err := elements.NewCompressor(&buf, c)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		zw.Close()
	}
	return elements.Element{Kind: elements.KindLayer, Name: fmt.Sprint(i), Index: i,
		MediaType: elements.LayerMediaType(c), Digest: digest.FromBytes(buf.Bytes()), DiffID: digest.FromBytes(data),
		Size: int64(buf.Len()), Body: io.NopCloser(bytes.NewReader(buf.Bytes()))}
}

func runStage(t *testing.T, parallel int, in []elements.Element) ([]elements.Element, [][]byte, error) {
	t.Helper()
	inCh := make(chan elements.Element, len(in))
	for _, el := range in {
		inCh <- el
	}
	close(inCh)
	outCh := make(chan elements.Element, len(in))
	err := New(parallel, stages.Env{TempDir: t.TempDir()}).Run(context.Background(), inCh, outCh)
	close(outCh)
	var els []elements.Element
	var bodies [][]byte
	var readErr error
	for el := range outCh {
		var data []byte
		if el.Body != nil {
			var rerr error
			data, rerr = io.ReadAll(el.Body)
			el.Close()
			if rerr != nil && readErr == nil {
				readErr = rerr
			}
		}
		els = append(els, el)
		bodies = append(bodies, data)
	}
	if err == nil {
		err = readErr
	}
	return els, bodies, err
}

func TestDecompressKeepsOrderAndContent(t *testing.T) {
	comps := []elements.Compression{elements.Gzip, elements.Zstd, elements.None, elements.Gzip, elements.Zstd, elements.None, elements.Gzip}
	var in []elements.Element
	var want [][]byte
	in = append(in, elements.Element{Kind: elements.KindConfig, Name: "c.json", Index: -1, Body: io.NopCloser(bytes.NewReader([]byte("{}")))})
	want = append(want, []byte("{}"))
	for i, c := range comps {
		data := bytes.Repeat([]byte{byte('a' + i)}, (i+1)*100000)
		in = append(in, layer(t, i, data, c))
		want = append(want, data)
	}
	for _, parallel := range []int{1, 3, 8} {
		t.Run(fmt.Sprint(parallel), func(t *testing.T) {
			copied := make([]elements.Element, len(in))
			for i, el := range in {
				copied[i] = el
				if el.Body != nil {
					data, _ := io.ReadAll(el.Body)
					el.Body = io.NopCloser(bytes.NewReader(data))
					in[i].Body = io.NopCloser(bytes.NewReader(data))
					copied[i].Body = el.Body
				}
			}
			els, bodies, err := runStage(t, parallel, copied)
			if err != nil {
				t.Fatal(err)
			}
			if len(els) != len(want) {
				t.Fatalf("%d elements out, want %d", len(els), len(want))
			}
			for i, el := range els {
				if !bytes.Equal(bodies[i], want[i]) {
					t.Errorf("element %d: wrong body (%d bytes)", i, len(bodies[i]))
				}
				if el.Kind == elements.KindLayer {
					if el.Index != i-1 || elements.CompressionOf(el.MediaType) != elements.None || el.Digest != el.DiffID {
						t.Errorf("element %d: index %d media type %s digest %s diff ID %s", i, el.Index, el.MediaType, el.Digest, el.DiffID)
					}
				}
			}
		})
	}
}

func TestDecompressReportsDiffIDMismatch(t *testing.T) {
	el := layer(t, 0, []byte("hello world"), elements.Gzip)
	el.DiffID = digest.FromString("something else")
	_, _, err := runStage(t, 2, []elements.Element{el})
	if !errors.Is(err, elements.ErrDigestMismatch) {
		t.Fatalf("err = %v, want a digest mismatch", err)
	}
}

// closeCounter counts Close calls.
type closeCounter struct {
	io.Reader
	n *atomic.Int32
}

func (c closeCounter) Close() error { c.n.Add(1); return nil }

func TestDecompressClosesBodiesWhenCancelled(t *testing.T) {
	var closed atomic.Int32
	in := make(chan elements.Element, 4)
	for i := range 4 {
		el := layer(t, i, bytes.Repeat([]byte("x"), 1<<20), elements.Gzip)
		el.Body = closeCounter{el.Body, &closed}
		in <- el
	}
	close(in)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan elements.Element) // nobody reads: the stage blocks
	done := make(chan error)
	go func() { done <- New(2, stages.Env{TempDir: t.TempDir()}).Run(ctx, in, out) }()
	testingSleep() // let the stage take the layers and start on them
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	// Every body the stage received must be closed; the engine closes
	// those still in the channel.
	left := int32(len(in))
	for range 100 {
		if closed.Load()+left == 4 {
			return
		}
		testingSleep()
	}
	t.Fatalf("%d bodies closed and %d left in the channel, of 4", closed.Load(), left)
}
