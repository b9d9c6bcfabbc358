// Package bundle writes OCI runtime bundles (oci://PATH, spec 7.3): the
// merged filesystem of every layer in PATH/rootfs, a runtime config.json
// that runc can start, converted from the image config by the image-spec's
// rules on top of the defaults of `runc spec`, and the image config itself
// as PATH/container-config.json. The bundle is built under a temporary
// name beside PATH and renamed into place only when complete.
package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/stages/unpack"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// Output writes an OCI runtime bundle.
type Output struct {
	path     string
	log      zerolog.Logger
	progress stages.Progress
	result   stages.Result
}

// NewOutput returns an Output writing the bundle at path. It does no I/O.
func NewOutput(path string, env stages.Env) *Output {
	p := env.ProgressOrNone()
	return &Output{path: path, log: env.Log, progress: p}
}

// Result reports what the last successful Run wrote.
func (o *Output) Result() stages.Result { return o.result }

// Run consumes the image's elements and writes the bundle.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) error {
	start := time.Now()
	replace := false
	if fi, err := os.Lstat(o.path); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", o.path)
		}
		ents, err := os.ReadDir(o.path)
		if err != nil {
			return err
		}
		if len(ents) > 0 {
			return fmt.Errorf("%s exists and is not empty: refusing to replace it with a bundle", o.path)
		}
		replace = true
	}
	parent, base := filepath.Split(filepath.Clean(o.path))
	if parent == "" {
		parent = "."
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			removeAll(tmp)
		}
	}()
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}
	u, err := unpack.New(rootfs, unpack.Options{Log: o.log, Owner: os.Geteuid() == 0})
	if err != nil {
		return err
	}
	defer u.Close()

	var (
		ref    string
		config []byte
		layers int
		total  int64
	)
	for {
		el, ok, err := flow.Recv(ctx, in)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch el.Kind {
		case elements.KindImage:
			ref = el.Name
			el.Close()
		case elements.KindConfig:
			if config, err = tarball.ReadConfig(el); err != nil {
				return err
			}
			total += int64(len(config))
		case elements.KindLayer:
			if el.Index != layers {
				el.Close()
				return fmt.Errorf("%s arrived where layer %d was expected: layers must reach outputs in image order", el, layers)
			}
			n, err := o.apply(ctx, u, el)
			if err != nil {
				return err
			}
			layers++
			total += n
		default:
			el.Close()
		}
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if config == nil {
		return fmt.Errorf("write %s: the input sent no image config", o.path)
	}
	if err := u.Finish(); err != nil {
		return err
	}
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		return fmt.Errorf("image config is not valid JSON: %w", err)
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	s, err := buildSpec(img, func(name string) (io.ReadCloser, error) { return root.Open(name) })
	root.Close()
	if err != nil {
		return err
	}
	specJSON, err := marshalSorted(s)
	if err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(config, &generic); err != nil {
		return err
	}
	configJSON, err := json.MarshalIndent(generic, "", "    ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), specJSON, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "container-config.json"), configJSON, 0o644); err != nil {
		return err
	}
	if replace {
		if err := os.Remove(o.path); err != nil {
			return fmt.Errorf("replace %s: %w", o.path, err)
		}
	}
	if err := os.Rename(tmp, o.path); err != nil {
		return fmt.Errorf("commit %s: %w", o.path, err)
	}
	committed = true
	o.result = stages.Result{Image: ref, Bytes: total, Layers: layers, Path: o.path}
	o.log.Info().Msgf("Processed %d bytes in %d layers in %.1f seconds", total, layers, time.Since(start).Seconds())
	return nil
}

// apply unpacks one layer onto the root filesystem (see ApplyLayer).
func (o *Output) apply(ctx context.Context, u *unpack.Unpacker, el elements.Element) (int64, error) {
	return ApplyLayer(ctx, u, el, o.progress)
}

// ApplyLayer unpacks one layer with u, verifying its diff ID, and owns
// el's body: an uncompressed layer lying in a file is applied from the
// file (its data copied in the kernel) and verified from a second read
// unless its bytes are already settled; any other is verified as it is
// applied. The oci:// and mounts:// outputs share it.
func ApplyLayer(ctx context.Context, u *unpack.Unpacker, el elements.Element, progress stages.Progress) (int64, error) {
	raw := tarball.RawRange(el)
	settled := raw != nil && elements.IsSettled(el)
	r, err := elements.OpenTar(el)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	tr := progress.Track(el.Name, el.Size)
	var n int64
	if raw != nil {
		if err = u.ApplyFile(ctx, el.Index, raw.File, raw.Offset, raw.Length); err == nil {
			n = raw.Length
			if !settled {
				n, err = elements.CopyContext(ctx, io.Discard, r, nil)
			}
			tr.Add(n)
		}
	} else {
		d := elements.NewDigester(stages.TrackReader(r, tr))
		if err = u.Apply(ctx, el.Index, d); err == nil {
			_, err = elements.CopyContext(ctx, io.Discard, d, nil)
		}
		n = d.Size()
	}
	tr.Done(err)
	if err != nil {
		return n, fmt.Errorf("unpack %s: %w", el, err)
	}
	return n, nil
}

// removeAll removes a staged bundle, making read-only directories (which
// layers may create) writable first.
func removeAll(p string) {
	if err := os.RemoveAll(p); err == nil {
		return
	}
	filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return
	}
}
