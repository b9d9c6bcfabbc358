// Command mkimage writes synthetic docker save tarballs for tests and
// benchmarks.
//
// Usage:
//
//	go run ./testdata/cmd/mkimage -o out.tar [-format legacy|oci]
//	    [-size 1GiB [-layers 8]] [-compression gzip|zstd] [-tag name:tag]
//	go run ./testdata/cmd/mkimage -hostile DIR
//
// Without -size it writes imagegen.Sample; with -size it writes
// imagegen.Big with about that many bytes of incompressible data spread
// over -layers layers. -hostile writes every hostile case as
// DIR/<name>.tar (and may be combined with -o). Sizes take the suffixes
// B, KiB, MiB, GiB and TiB (case-insensitive; K, M, G, T mean the same).
// On success the paths written are printed on stderr, nothing on stdout.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/occystrap/occystrap/testdata/imagegen"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// run parses args and writes the requested files, reporting paths on log.
func run(args []string, log io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(log)
	out := fs.String("o", "", "output tarball `path`")
	format := fs.String("format", "legacy", "docker save layout: legacy (Docker <= 24) or oci (Docker >= 25)")
	size := fs.String("size", "", "write a Big image holding about this much data (e.g. 512MiB, 1GiB) instead of the Sample")
	layers := fs.Int("layers", 8, "number of layers of a Big image")
	compression := fs.String("compression", "", "store layers compressed: gzip or zstd (docker save itself never does)")
	tag := fs.String("tag", "", "override the image's repo:tag")
	hostile := fs.String("hostile", "", "also write every hostile case as `DIR`/<name>.tar")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *out == "" && *hostile == "" {
		return errors.New("need -o PATH or -hostile DIR")
	}
	if *hostile != "" {
		if err := writeHostile(*hostile, log); err != nil {
			return err
		}
	}
	if *out == "" {
		return nil
	}
	f, err := imagegen.ParseFormat(*format)
	if err != nil {
		return err
	}
	switch *compression {
	case "", "gzip", "zstd":
	default:
		return fmt.Errorf("unknown compression %q (want gzip or zstd)", *compression)
	}
	img := imagegen.Sample()
	if *size != "" {
		n, err := parseSize(*size)
		if err != nil {
			return err
		}
		if *layers < 1 {
			return fmt.Errorf("-layers must be at least 1, not %d", *layers)
		}
		img = imagegen.Big(n, *layers)
	}
	img = img.WithCompression(*compression)
	if *tag != "" {
		img.RepoTag = *tag
	}
	if _, err := imagegen.WriteFile(*out, img, f); err != nil {
		return err
	}
	fmt.Fprintln(log, *out)
	return nil
}

// writeHostile writes each hostile case to dir/<name>.tar.
func writeHostile(dir string, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, c := range imagegen.Hostile() {
		p := filepath.Join(dir, c.Name+".tar")
		if err := writeCase(p, c); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		fmt.Fprintln(log, p)
	}
	return nil
}

func writeCase(p string, c imagegen.HostileCase) (err error) {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p)
		}
	}()
	return c.Write(f)
}

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// parseSize parses sizes such as "8MiB", "1.5GiB", "4096" or "100KiB".
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("bad size %q (want e.g. 512MiB or 1GiB)", s)
	}
	return int64(v * mult), nil
}
