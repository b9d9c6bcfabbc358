// Command harness measures occystrap side by side with the least the same
// work can cost, on a generated image, and prints a Markdown table of
// median wall times and peak memory:
//
//   - tar -> tar against `cp` of the file plus one sha256 pass over it with
//     Go's crypto/sha256 (every diff ID must be verified, so the copy and
//     one hash are the floor);
//   - tar -> dir?expand=true against `tar -x` of the same layers one after
//     another.
//
// Run it with `go run ./bench/harness -size 1GiB` (or `go tool task
// bench:compare`). Each command runs -runs times on a warm page cache; peak
// RSS is the child's maximum resident set size as the kernel reports it.
package main

import (
	"archive/tar"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
)

type measure struct {
	wall   time.Duration
	maxRSS int64 // bytes
}

func main() {
	size := flag.String("size", "1GiB", "image size (KiB, MiB, GiB suffixes)")
	layers := flag.Int("layers", 8, "layers in the generated image")
	runs := flag.Int("runs", 3, "runs of each command (the median is reported)")
	work := flag.String("work", "", "scratch directory (default: a new temporary one, removed at the end)")
	settle := flag.Duration("settle", 2*time.Second, "pause after cleaning up between runs, so that freeing the last run's files does not slow the next")
	only := flag.String("only", "", "run only the commands whose name contains this text")
	bin := flag.String("bin", "bin/occystrap", "occystrap binary to measure")
	flag.Parse()
	n, err := parseSize(*size)
	if err != nil {
		log.Fatal(err)
	}
	if *work == "" {
		d, err := os.MkdirTemp("", "occystrap-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*work = d
	}
	binPath, err := filepath.Abs(*bin)
	if err != nil {
		log.Fatal(err)
	}
	in := filepath.Join(*work, "image.tar")
	log.Printf("generating a %s image with %d layers in %s", *size, *layers, in)
	if _, err := imagegen.WriteFile(in, imagegen.Big(n, *layers), imagegen.Legacy); err != nil {
		log.Fatal(err)
	}
	layerFiles := splitLayers(in, filepath.Join(*work, "layers"))

	out := filepath.Join(*work, "out")
	// The commands run round-robin, -runs times each, so that slow spells
	// of the machine's disk spread over all of them; the median is kept.
	type job struct {
		name  string
		setup func()
		fn    func() measure
		ms    []measure
	}
	// Each run starts from an empty output directory with nothing waiting
	// to be written back, so that one run's writeback does not slow the next.
	clean := func() {
		os.RemoveAll(out)
		os.MkdirAll(out, 0o755)
		exec.Command("sync").Run()
		time.Sleep(*settle) // let the file system finish freeing (discard) what was removed
	}
	jobs := []*job{
		{name: "cp image.tar", setup: clean, fn: func() measure { return runCmd("cp", in, filepath.Join(out, "copy.tar")) }},
		{name: "sha256 of image.tar (Go crypto/sha256)", setup: clean, fn: func() measure { return hashFile(in) }},
		{name: "occystrap tar -> tar", setup: clean, fn: func() measure {
			return runCmd(binPath, "process", "tar://"+in, "tar://"+filepath.Join(out, "copy.tar"))
		}},
		{name: "tar -x of each layer, one after another", setup: clean, fn: func() measure {
			var total measure
			for _, l := range layerFiles {
				m := runCmd("tar", "-xf", l, "-C", out)
				total.wall += m.wall
				total.maxRSS = max(total.maxRSS, m.maxRSS)
			}
			return total
		}},
		{name: "occystrap tar -> dir?expand=true", setup: clean, fn: func() measure {
			return runCmd(binPath, "process", "tar://"+in, "dir://"+filepath.Join(out, "d")+"?expand=true")
		}},
	}
	for range *runs {
		for _, j := range jobs {
			if !strings.Contains(j.name, *only) {
				continue
			}
			j.setup()
			m := j.fn()
			log.Printf("%-44s %8.3fs  %6.1f MiB", j.name, m.wall.Seconds(), float64(m.maxRSS)/(1<<20))
			j.ms = append(j.ms, m)
		}
	}
	median := func(j *job) measure {
		ms := slices.Clone(j.ms)
		if len(ms) == 0 {
			return measure{wall: 1}
		}
		slices.SortFunc(ms, func(a, b measure) int { return int(a.wall - b.wall) })
		return ms[len(ms)/2]
	}
	cp, sum, ours, tarx, expand := median(jobs[0]), median(jobs[1]), median(jobs[2]), median(jobs[3]), median(jobs[4])
	clean()

	fmt.Printf("\nImage: %s in %d layers, %d runs each, median.\n\n", *size, *layers, *runs)
	fmt.Println("| command | wall time | peak RSS |")
	fmt.Println("|---|---:|---:|")
	for _, j := range jobs {
		m := median(j)
		rss := "-"
		if m.maxRSS > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(m.maxRSS)/(1<<20))
		}
		fmt.Printf("| %s | %.3f s | %s |\n", j.name, m.wall.Seconds(), rss)
	}
	floor := cp.wall + sum.wall
	fmt.Printf("\ntar -> tar: %.3f s against a floor of %.3f s (cp + sha256): %.2fx (goal: at most 1.5x)\n",
		ours.wall.Seconds(), floor.Seconds(), ours.wall.Seconds()/floor.Seconds())
	fmt.Printf("tar -> dir expand: %.3f s against %.3f s for tar -x: %.2fx (goal: at most 1x)\n",
		expand.wall.Seconds(), tarx.wall.Seconds(), expand.wall.Seconds()/tarx.wall.Seconds())
	fmt.Printf("peak RSS: tar -> tar %.1f MiB, expand %.1f MiB (goal: under 64 MiB)\n",
		float64(ours.maxRSS)/(1<<20), float64(expand.maxRSS)/(1<<20))
}

// runCmd runs a command and returns its wall time and peak RSS.
func runCmd(name string, args ...string) measure {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = nil, nil // /dev/null: the measure is of the work, not of our logging
	start := time.Now()
	if err := cmd.Run(); err != nil {
		log.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	m := measure{wall: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.maxRSS = ru.Maxrss * 1024 // Linux reports KiB
	}
	return m
}

// hashFile hashes a file with crypto/sha256 in this process.
func hashFile(path string) measure {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(struct{ io.Writer }{h}, struct{ io.Reader }{f}, buf); err != nil {
		log.Fatal(err)
	}
	return measure{wall: time.Since(start)}
}

// splitLayers copies each <id>/layer.tar out of the image, in manifest
// order, for the tar -x baseline.
func splitLayers(image, dir string) []string {
	os.MkdirAll(dir, 0o755)
	f, err := os.Open(image)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	found := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if !strings.HasSuffix(hdr.Name, "/layer.tar") || hdr.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(dir, strings.TrimSuffix(hdr.Name, "/layer.tar")+".tar")
		out, err := os.Create(p)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			log.Fatal(err)
		}
		out.Close()
		found[strings.TrimSuffix(hdr.Name, "/layer.tar")] = p
	}
	// Manifest order: read manifest.json.
	var order []string
	f.Seek(0, io.SeekStart)
	tr = tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Name == "manifest.json" {
			b, _ := io.ReadAll(tr)
			for _, part := range strings.Split(string(b), "\"") {
				if strings.HasSuffix(part, "/layer.tar") {
					order = append(order, found[strings.TrimSuffix(part, "/layer.tar")])
				}
			}
		}
	}
	return order
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number with KiB, MiB or GiB", s)
	}
	return int64(f * float64(mult)), nil
}
