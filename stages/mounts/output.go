// Package mounts writes the mounts:// output (spec 7.4): every layer
// extracted on its own into PATH/<name>/layer/ with its whiteouts in
// overlayfs form, then an overlay of those layers (newest first) mounted at
// PATH/rootfs, with PATH/delta as its upper directory and PATH/working as
// its work directory, and a runc config.json (the oci:// output's) beside
// it, so that `runc run --bundle PATH ID` starts the image.
//
// It needs root: opaque directories are marked with the trusted.overlay.opaque
// xattr and the overlay is mounted. Both are checked, with a probe mount,
// before anything is written.
//
// A layer whose PATH/<name>/layer already exists is not extracted again: a
// layer is extracted under a temporary name and renamed into place only when
// complete and verified, so a present layer directory is always whole. The
// overlay is left mounted, as the original leaves it.
package mounts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/bundle"
	"github.com/occystrap/occystrap/stages/staging"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/occystrap/occystrap/stages/unpack"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// The names mounts:// uses in PATH besides the layer directories.
const (
	rootfsDir = "rootfs"
	upperDir  = "delta"
	workDir   = "working"
	layerDir  = "layer"
)

// Output writes the mounts:// layout and mounts its overlay.
type Output struct {
	path     string
	log      zerolog.Logger
	progress stages.Progress
	result   stages.Result
}

// NewOutput returns an Output writing at path. It does no I/O.
func NewOutput(path string, env stages.Env) *Output {
	p := env.ProgressOrNone()
	return &Output{path: path, log: env.Log, progress: p}
}

// Result reports what the last successful Run wrote.
func (o *Output) Result() stages.Result { return o.result }

// Run consumes the image's elements, extracts the layers that are not
// present yet, and mounts the overlay.
func (o *Output) Run(ctx context.Context, in <-chan elements.Element) error {
	start := time.Now()
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("mounts://%s needs root (running as uid %d): it marks opaque directories with trusted.overlay xattrs and mounts an overlay filesystem", o.path, uid)
	}
	abs, err := filepath.Abs(o.path)
	if err != nil {
		return err
	}
	if strings.ContainsAny(abs, ",:\\") {
		return fmt.Errorf("mounts://%s: the path may not contain ',', ':' or '\\' (they separate overlayfs mount options)", o.path)
	}
	if err := checkDest(abs); err != nil {
		return err
	}
	if err := probeOverlay(abs); err != nil {
		return fmt.Errorf("mounts://%s: the kernel refused an overlay mount, so the layers were not written (overlayfs missing, or not permitted here, as inside some containers): %w", o.path, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("create output: %w", err)
	}

	var (
		ref    string
		config []byte
		lowers []string // layer directories in image order
		total  int64
		seen   = map[string]string{} // layer name -> diff ID
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
			if el.Index != len(lowers) {
				el.Close()
				return fmt.Errorf("%s arrived where layer %d was expected: layers must reach outputs in image order", el, len(lowers))
			}
			if err := checkName(el.Name); err != nil {
				el.Close()
				return err
			}
			if prev, dup := seen[el.Name]; dup && (prev != string(el.DiffID) || prev == "") {
				el.Close()
				return fmt.Errorf("%s: another layer of this image has the same name; cannot write both as %s/%s", el, el.Name, layerDir)
			}
			seen[el.Name] = string(el.DiffID)
			dest := filepath.Join(abs, el.Name, layerDir)
			n, err := o.writeLayer(ctx, el, dest)
			if err != nil {
				return err
			}
			lowers = append(lowers, dest)
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
	if len(lowers) == 0 {
		return fmt.Errorf("write %s: the image has no layers to mount", o.path)
	}
	if err := o.mount(abs, lowers, config); err != nil {
		return err
	}
	o.result = stages.Result{Image: ref, Bytes: total, Layers: len(lowers), Path: o.path}
	o.log.Info().Msgf("Processed %d bytes in %d layers in %.1f seconds", total, len(lowers), time.Since(start).Seconds())
	o.log.Info().Msgf("Overlay mounted at %s (unmount it with: umount %s)", filepath.Join(o.path, rootfsDir), filepath.Join(o.path, rootfsDir))
	return nil
}

// checkDest refuses destinations that cannot take a new overlay: PATH not
// a directory, PATH/rootfs not empty (an overlay from an earlier run still
// mounted there), PATH/delta not empty (an earlier container's changes).
func checkDest(abs string) error {
	fi, err := os.Lstat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", abs)
	}
	for _, c := range []struct{ name, why string }{
		{rootfsDir, "an overlay from an earlier run is probably still mounted there: unmount it first"},
		{upperDir, "it holds the changes of an earlier overlay: remove it first"},
	} {
		p := filepath.Join(abs, c.name)
		ents, err := os.ReadDir(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if len(ents) > 0 {
			return fmt.Errorf("%s is not empty (%s)", p, c.why)
		}
		if mounted, err := isMountPoint(p); err == nil && mounted {
			return fmt.Errorf("%s is a mount point (%s)", p, c.why)
		}
	}
	return nil
}

// isMountPoint reports whether p is on another file system than its
// parent.
func isMountPoint(p string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(p), &pst); err != nil {
		return false, err
	}
	return st.Dev != pst.Dev, nil
}

// checkName refuses layer names that cannot be directories of PATH or
// would collide with the names mounts:// uses itself.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\:,\x00") ||
		strings.HasPrefix(name, ".") || slices.Contains([]string{rootfsDir, upperDir, workDir, "config.json", "container-config.json"}, name) {
		return fmt.Errorf("element name %q is not usable as a layer directory in a mounts:// output", name)
	}
	return nil
}

// writeLayer extracts one layer into dest, unless dest already exists.
// The layer is unpacked under a temporary name beside dest, verified
// against its diff ID, and renamed into place.
func (o *Output) writeLayer(ctx context.Context, el elements.Element, dest string) (int64, error) {
	if fi, err := os.Lstat(dest); err == nil && fi.IsDir() {
		o.log.Debug().Str("layer", el.Name).Msg("layer already present; skipped")
		el.Close()
		return 0, nil
	}
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		el.Close()
		return 0, err
	}
	tmp, err := os.MkdirTemp(parent, "."+layerDir+".tmp-*")
	if err != nil {
		el.Close()
		return 0, err
	}
	committed := false
	defer func() {
		if !committed {
			removeAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		el.Close()
		return 0, err
	}
	u, err := unpack.New(tmp, unpack.Options{Log: o.log, Owner: true, Whiteouts: unpack.WhiteoutsOverlay})
	if err != nil {
		el.Close()
		return 0, err
	}
	defer u.Close()
	n, err := o.apply(ctx, u, el)
	if err != nil {
		return n, err
	}
	if err := u.Finish(); err != nil {
		return n, err
	}
	if err := u.Close(); err != nil {
		return n, err
	}
	if err := os.Rename(tmp, dest); err != nil {
		return n, fmt.Errorf("commit %s: %w", dest, err)
	}
	committed = true
	return n, nil
}

// apply unpacks one layer, verifying its diff ID, as the oci:// output
// does. It owns el's body.
func (o *Output) apply(ctx context.Context, u *unpack.Unpacker, el elements.Element) (int64, error) {
	return bundle.ApplyLayer(ctx, u, el, o.progress)
}

// mount makes rootfs, delta and working, mounts the overlay of lowers
// (image order; the newest goes first in lowerdir) and writes config.json
// and container-config.json. On failure nothing stays mounted and the
// directories it made are removed.
func (o *Output) mount(abs string, lowers []string, config []byte) error {
	rootfs := filepath.Join(abs, rootfsDir)
	var made []string
	ok := false
	defer func() {
		if !ok {
			for _, d := range slices.Backward(made) {
				os.Remove(d)
			}
		}
	}()
	for _, d := range []string{rootfs, filepath.Join(abs, upperDir), filepath.Join(abs, workDir)} {
		err := os.Mkdir(d, 0o755)
		if err == nil {
			made = append(made, d)
		} else if !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	newest := slices.Clone(lowers)
	slices.Reverse(newest)
	if err := mountOverlay(newest, filepath.Join(abs, upperDir), filepath.Join(abs, workDir), rootfs, false); err != nil {
		return fmt.Errorf("mount the overlay at %s: %w", rootfs, err)
	}
	mounted := true
	defer func() {
		if !ok && mounted {
			if err := unix.Unmount(rootfs, 0); err != nil {
				o.log.Warn().Err(err).Msgf("could not unmount %s", rootfs)
			}
		}
	}()
	specJSON, err := bundle.RuntimeConfig(config, rootfs)
	if err != nil {
		return err
	}
	configJSON, err := bundle.ContainerConfig(config)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"config.json", specJSON}, {"container-config.json", configJSON}} {
		if err := writeFile(filepath.Join(abs, f.name), f.data); err != nil {
			return err
		}
	}
	ok = true
	return nil
}

// writeFile writes data to p under a temporary name and renames it.
func writeFile(p string, data []byte) error {
	f, err := staging.NewFile(p)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return f.Commit()
}

// removeAll removes a partly extracted layer, making read-only
// directories (which layers may create) writable first.
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
	os.RemoveAll(p)
}
