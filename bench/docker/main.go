// Command docker measures occystrap's Docker Engine exports side by side
// with `docker save`, against one private Docker Engine (dockerd with vfs
// storage on a Unix socket in a temporary directory, started through
// testdata/peers), on generated images, and prints a Markdown table of
// median wall times, CPU time (occystrap's or the docker client's, and the
// engine's), peak memory and bytes written.
//
// Two images are generated (testdata/imagegen) and loaded into the engine
// once: one of -size in -layers layers, and one of the same size in -many
// layers. For each, every tool writes a docker-save tarball:
//
//   - docker save: `docker -H unix://SOCKET save -o out.tar IMAGE`;
//   - docker://: `occystrap process docker://IMAGE?socket=SOCKET tar://out.tar`
//     (the engine's image export API, the same stream docker save reads);
//   - dockerpush://: `occystrap process dockerpush://IMAGE?socket=SOCKET
//     tar://out.tar` (the engine pushes the layers, gzip-compressed and
//     several at a time, to a registry embedded in occystrap).
//
// The goal is docker:// at most 1.2 times docker save's wall time; the
// dockerpush:// / docker:// ratio is reported (the push should win when
// layers are many).
//
// Run it as root (dockerd needs it) with `go run ./bench/docker -size 1GiB`
// (or `go tool task bench:docker`, which builds bin/occystrap first; without
// -bin the harness builds occystrap into its work directory). Runs go
// round-robin (every image and tool once, then again, -runs times) so slow
// spells of the machine spread over all of them; the median is reported.
//
// Every timed run starts from the same state, prepared outside the timed
// region:
//
//  1. unless -restart=false, the engine is stopped, the distribution
//     metadata it keeps about earlier pushes (which blob went where) is
//     deleted, and the engine is started again, so each run talks to a
//     fresh dockerd whose CPU time is the run's alone and no push can skip
//     or mount a blob it remembers;
//  2. the previous output is deleted, the image's layer files in the
//     engine's vfs storage are read through into the page cache, and
//     everything dirty is written back (sync);
//  3. -warm bytes of anonymous memory are touched and freed in a helper
//     process (see bench/harness for why this matters on the project's
//     virtual machine);
//  4. the harness waits, up to -idle, for the rest of the machine to be
//     idle. The CPU time the rest of the machine used during each run is
//     measured too ("other CPU"), and the ratios are also given over the
//     quiet runs alone (those where that stayed under a tenth of a CPU).
//
// The engine's CPU time is that of dockerd and every process under it
// (containerd, and any reaped children), from /proc/PID/stat.
package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/occystrap/occystrap/bench/internal/sidebyside"
	"github.com/occystrap/occystrap/testdata/peers"
)

// measure is one timed run.
type measure struct {
	sidebyside.Usage               // the child's wall time, CPU time (with its children), peak RSS; other CPU
	engineCPU        time.Duration // dockerd's (and its children's) user+system time during the run
	bytes            int64         // size of the output tarball
}

// Tool names, in table order.
const (
	toolSave = "docker save"
	toolPull = "occystrap docker://"
	toolPush = "occystrap dockerpush://"
)

var toolNames = []string{toolSave, toolPull, toolPush}

// benchImage is one generated image, loaded into the engine.
type benchImage struct {
	name    string // row label
	layers  int
	tarball string // the generated docker-save tarball
	tarSize int64
	res     sidebyside.Image
}

func main() {
	if sidebyside.IsHelper() {
		sidebyside.Helper(os.Args[2:])
		return
	}
	size := flag.String("size", "1GiB", "total size of each image's files (KiB, MiB, GiB suffixes)")
	layers := flag.Int("layers", 8, "layers in the first image")
	many := flag.Int("many", 32, "layers in the second (\"many layers\") image, of the same size; 0 skips it")
	runs := flag.Int("runs", 3, "runs of each image and tool (the median is reported)")
	only := flag.String("only", "", "run only the rows whose \"image: tool\" name contains this text")
	work := flag.String("work", "", "scratch directory (default: a new one under /tmp, removed at the end unless -keep; a given directory is left in place)")
	keep := flag.Bool("keep", false, "keep the default scratch directory")
	bin := flag.String("bin", "", "occystrap binary to measure (default: go build it into the scratch directory)")
	par := flag.Int("j", 4, "occystrap's parallelism (-j)")
	compressible := flag.Bool("compressible", false, "fill the layers with compressible data (gzip shrinks it to about 56%, as bench/registry's -data mixed) instead of incompressible random bytes")
	warm := flag.String("warm", "", "bytes of memory to touch before each run (default: 3 times -size plus 256MiB, at most half the available memory; 0 disables)")
	idle := flag.Duration("idle", 20*time.Second, "before each run, wait up to this long for the rest of the machine to be idle (under 10% of a CPU for half a second); 0 disables")
	restart := flag.Bool("restart", true, "restart the engine (and forget its push metadata) before each run")
	flag.Parse()
	log.SetFlags(log.Ltime)

	n, err := sidebyside.ParseSize(*size)
	if err != nil {
		log.Fatal(err)
	}
	warmBytes, err := sidebyside.WarmBytes(n, *warm)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range []string{"docker", "dockerd"} {
		if _, err := exec.LookPath(p); err != nil {
			log.Fatalf("%s is not installed (go tool task deps)", p)
		}
	}
	if os.Geteuid() != 0 {
		log.Printf("warning: not root; dockerd will probably not start")
	}
	if *work, err = sidebyside.WorkDir(*work, *keep, "occystrap-bench-docker-"); err != nil {
		log.Fatal(err)
	}
	sidebyside.CleanUpOnInterrupt()

	// occystrap.
	binPath := *bin
	if binPath == "" {
		binPath = filepath.Join(*work, "occystrap")
		log.Printf("building occystrap into %s", binPath)
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			sidebyside.Fatalf("go build (run the harness from the repository's root): %v", err)
		}
	}
	if binPath, err = filepath.Abs(binPath); err != nil {
		sidebyside.Fatalf("%v", err)
	}
	if _, err := os.Stat(binPath); err != nil {
		sidebyside.Fatalf("%v", err)
	}

	// The engine. Its directory holds its socket, so it is short (socket
	// paths are limited to 108 bytes) and outside -work; it is removed at
	// the end.
	engDir, err := os.MkdirTemp("", "occy-bench-")
	if err != nil {
		sidebyside.Fatalf("%v", err)
	}
	sidebyside.AtExit(func() { os.RemoveAll(engDir) })
	eng := &engine{dir: engDir}
	sidebyside.AtExit(eng.stop)
	log.Printf("starting dockerd in %s", engDir)
	eng.start()

	// The images.
	dataDesc := "incompressible"
	data := "random"
	if *compressible {
		dataDesc, data = "compressible, gzip to about 56%", "mixed"
	}
	var imgs []*benchImage
	for _, l := range []int{*layers, *many} {
		if l <= 0 || slices.ContainsFunc(imgs, func(b *benchImage) bool { return b.layers == l }) {
			continue
		}
		b := &benchImage{name: fmt.Sprintf("%s, %d layers", *size, l), layers: l,
			tarball: filepath.Join(*work, fmt.Sprintf("image-%d.tar", l))}
		log.Printf("generating a %s image (%s data) with %d layers in %s", *size, dataDesc, l, b.tarball)
		if b.res, err = sidebyside.Generate(b.tarball, *size, l, data); err != nil {
			sidebyside.Fatalf("generate the image: %v", err)
		}
		fi, err := os.Stat(b.tarball)
		if err != nil {
			sidebyside.Fatalf("%v", err)
		}
		b.tarSize = fi.Size()
		log.Printf("loading %s (%s) into the engine", b.res.RepoTag, sidebyside.MiB(b.tarSize))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		_, err = eng.docker(ctx, "load", "-i", b.tarball)
		cancel()
		if err != nil {
			sidebyside.Fatalf("docker load: %v", err)
		}
		log.Printf("loaded in %.1f s", time.Since(start).Seconds())
		// The generated tarball is no longer needed; keep the page cache
		// for the engine's files.
		os.Remove(b.tarball)
		imgs = append(imgs, b)
	}
	if len(imgs) == 0 {
		sidebyside.Fatalf("no image to measure (-layers and -many are both 0)")
	}
	for _, b := range imgs {
		ids, err := eng.imageLayerFiles(b.res.RepoTag)
		if err != nil {
			sidebyside.Fatalf("find the layer files of %s: %v", b.res.RepoTag, err)
		}
		log.Printf("%s: %d layer directories, %s of layer files in the engine", b.res.RepoTag, len(ids.dirs), sidebyside.MiB(ids.bytes))
	}

	out := filepath.Join(*work, "out")
	outTar := filepath.Join(out, "out.tar")
	tmpDir := filepath.Join(*work, "tmp")
	jflag := strconv.Itoa(*par)
	argv := func(tool string, b *benchImage) []string {
		q := "?socket=" + eng.socket()
		switch tool {
		case toolSave:
			return []string{"docker", "-H", "unix://" + eng.socket(), "save", "-o", outTar, b.res.RepoTag}
		case toolPull:
			return []string{binPath, "-j", jflag, "--temp-dir", tmpDir, "process", "docker://" + b.res.RepoTag + q, "tar://" + outTar}
		default:
			return []string{binPath, "-j", jflag, "--temp-dir", tmpDir, "process", "dockerpush://" + b.res.RepoTag + q, "tar://" + outTar}
		}
	}

	type row struct {
		img    *benchImage
		tool   string
		ms     []measure
		failed string // the first failure's output; the row is not run again
	}
	var rows []*row
	rowOf := map[string]*row{}
	key := func(b *benchImage, tool string) string { return b.name + ": " + tool }
	for _, b := range imgs {
		for _, t := range toolNames {
			r := &row{img: b, tool: t}
			rows = append(rows, r)
			rowOf[key(b, t)] = r
		}
	}
	logDir := filepath.Join(*work, "logs")
	os.MkdirAll(logDir, 0o755)
	// A child's peak RSS as the kernel reports it is at least this
	// process's own (see sidebyside.Run), so this process stays small: the
	// memory-hungry helpers run as children of their own. The floor is
	// measured and printed.
	floor, err := sidebyside.Floor(filepath.Join(logDir, "floor.log"))
	if err != nil {
		sidebyside.Fatalf("%v", err)
	}
	log.Printf("warming %s of memory before each run; occystrap -j %d; engine restarted before each run: %v", sidebyside.MiB(warmBytes), *par, *restart)

	for run := range *runs {
		for _, b := range imgs {
			for _, t := range toolNames {
				name := key(b, t)
				r := rowOf[name]
				if !strings.Contains(name, *only) || r.failed != "" {
					continue
				}
				// Prepare, outside the timed region.
				for _, d := range []string{out, tmpDir} {
					if err := os.RemoveAll(d); err != nil {
						sidebyside.Fatalf("%v", err)
					}
					if err := os.MkdirAll(d, 0o755); err != nil {
						sidebyside.Fatalf("%v", err)
					}
				}
				if *restart {
					eng.stop()
					eng.forgetPushes()
					eng.start()
				}
				files, err := eng.imageLayerFiles(b.res.RepoTag)
				if err != nil {
					sidebyside.Fatalf("%s: %v", name, err)
				}
				for _, f := range files.files {
					if err := sidebyside.ReadThrough(f); err != nil {
						sidebyside.Fatalf("%v", err)
					}
				}
				syscall.Sync()
				if warmBytes > 0 {
					if err := sidebyside.Warm(warmBytes, filepath.Join(logDir, "touch.log")); err != nil {
						sidebyside.Fatalf("touch %s of memory: %v (try a smaller -warm)", sidebyside.MiB(warmBytes), err)
					}
				}
				if *idle > 0 {
					sidebyside.WaitIdle(*idle)
				}
				var m measure
				m.Usage, m.engineCPU, err = sidebyside.RunBeside(argv(t, b), filepath.Join(logDir, fmt.Sprintf("%d-%d-%s.log", run, b.layers, sidebyside.Slug(t))), eng.cpu)
				if err != nil {
					log.Printf("run %d  %-40s FAILED after %.3fs: %v", run+1, name, m.Wall.Seconds(), err)
					r.failed = err.Error()
					continue
				}
				if m.bytes, err = checkOutput(outTar, b.res); err != nil {
					log.Printf("run %d  %-40s BAD OUTPUT: %v", run+1, name, err)
					r.failed = "bad output: " + err.Error()
					continue
				}
				log.Printf("run %d  %-40s %8.3fs  cpu %6.2fs  engine cpu %6.2fs  other cpu %6.2fs  %7.1f MiB  %s",
					run+1, name, m.Wall.Seconds(), m.CPU.Seconds(), m.engineCPU.Seconds(), m.Other.Seconds(),
					float64(m.MaxRSS)/(1<<20), sidebyside.MiB(m.bytes))
				r.ms = append(r.ms, m)
			}
		}
	}
	os.RemoveAll(out)

	median := func(r *row) measure {
		if r == nil || len(r.ms) == 0 {
			return measure{}
		}
		ms := sidebyside.Sorted(r.ms)
		return ms[len(ms)/2]
	}
	fmt.Printf("\nImages: %s of files (%s data) in %s layers; %d runs each, median; occystrap -j %d; dockerd %s (vfs); %d CPUs.\n\n",
		*size, dataDesc, layerList(imgs), *runs, *par, dockerdVersion(), runtime.NumCPU())
	fmt.Println("| image | tool | wall time (median) | fastest – slowest | vs docker save | quiet runs: median (n) | tool CPU | engine CPU | other CPU | peak RSS | output |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		if len(r.ms) == 0 {
			if r.failed != "" {
				fmt.Printf("| %s | %s | FAILED | | | | | | | | |\n", r.img.name, r.tool)
			}
			continue
		}
		ms := sidebyside.Sorted(r.ms)
		m := ms[len(ms)/2]
		ratio := "-"
		if s := median(rowOf[key(r.img, toolSave)]); s.Wall > 0 {
			ratio = fmt.Sprintf("%.2fx", m.Wall.Seconds()/s.Wall.Seconds())
		}
		quiet := "-"
		if q, n := sidebyside.QuietMedian(r.ms); n > 0 {
			quiet = fmt.Sprintf("%.2f s (%d)", q.Wall.Seconds(), n)
		}
		fmt.Printf("| %s | %s | %.2f s | %.2f – %.2f s | %s | %s | %.2f s | %.2f s | %.2f s | %.1f MiB | %s |\n",
			r.img.name, r.tool, m.Wall.Seconds(), ms[0].Wall.Seconds(), ms[len(ms)-1].Wall.Seconds(), ratio, quiet,
			m.CPU.Seconds(), m.engineCPU.Seconds(), m.Other.Seconds(), float64(m.MaxRSS)/(1<<20), sidebyside.MiB(m.bytes))
	}
	fmt.Printf("\nTool CPU is the child's (for docker save, the docker client's); engine CPU is dockerd's and its children's.\n")
	fmt.Printf("Peak RSS floor: %.1f MiB (a child that does nothing; every child's peak reads at least this).\n\n",
		float64(floor.MaxRSS)/(1<<20))
	ratio := func(b *benchImage, num, den string, goal float64) {
		a, c := rowOf[key(b, num)], rowOf[key(b, den)]
		am, cm := median(a), median(c)
		if am.Wall == 0 || cm.Wall == 0 {
			return
		}
		r := am.Wall.Seconds() / cm.Wall.Seconds()
		fmt.Printf("- %s: %s / %s: %.2f s / %.2f s = %.2fx", b.name, num, den, am.Wall.Seconds(), cm.Wall.Seconds(), r)
		if goal > 0 {
			fmt.Printf(" (goal: at most %.1fx) — %s", goal, sidebyside.Met(r <= goal))
		}
		aq, an := sidebyside.QuietMedian(a.ms)
		cq, cn := sidebyside.QuietMedian(c.ms)
		if an > 0 && cn > 0 && (an < len(a.ms) || cn < len(c.ms)) {
			rq := aq.Wall.Seconds() / cq.Wall.Seconds()
			fmt.Printf("; quiet runs only: %.2f s / %.2f s = %.2fx", aq.Wall.Seconds(), cq.Wall.Seconds(), rq)
			if goal > 0 {
				fmt.Printf(" — %s", sidebyside.Met(rq <= goal))
			}
		}
		fmt.Println()
	}
	for _, b := range imgs {
		ratio(b, toolPull, toolSave, 1.2)
		ratio(b, toolPush, toolPull, 0)
	}
	var peak int64
	for _, r := range rows {
		if r.tool != toolSave {
			for _, m := range r.ms {
				peak = max(peak, m.MaxRSS)
			}
		}
	}
	if peak > 0 {
		fmt.Printf("- occystrap peak RSS over every run with -j %d: %.1f MiB\n", *par, float64(peak)/(1<<20))
	}
	failed := false
	for _, r := range rows {
		if r.failed != "" {
			if !failed {
				fmt.Println("\nFailures (each failed row was not run again):")
				failed = true
			}
			fmt.Printf("\n%s: %s:\n```\n%s\n```\n", r.img.name, r.tool, strings.TrimSpace(r.failed))
		}
	}
	sidebyside.RunCleanups()
	if failed {
		os.Exit(1)
	}
}

func layerList(imgs []*benchImage) string {
	var s []string
	for _, b := range imgs {
		s = append(s, strconv.Itoa(b.layers))
	}
	return strings.Join(s, " and ")
}

func dockerdVersion() string {
	b, err := exec.Command("dockerd", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(b)), "Docker version ")
}

// checkOutput checks that the tarball at path is a docker-save tarball of
// the image (its manifest.json names the config and as many layers), and
// returns its size.
func checkOutput(path string, want sidebyside.Image) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(f) // skips entries by seeking: cheap
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fi.Size(), errors.New("no manifest.json")
		}
		if err != nil {
			return fi.Size(), err
		}
		if strings.TrimPrefix(h.Name, "./") != "manifest.json" {
			continue
		}
		var ms []struct {
			Config string
			Layers []string
		}
		if err := json.NewDecoder(tr).Decode(&ms); err != nil {
			return fi.Size(), fmt.Errorf("manifest.json: %v", err)
		}
		if len(ms) != 1 {
			return fi.Size(), fmt.Errorf("manifest.json: %d images, want 1", len(ms))
		}
		hex := strings.TrimPrefix(want.ConfigDigest, "sha256:")
		if !strings.Contains(ms[0].Config, hex) {
			return fi.Size(), fmt.Errorf("manifest.json: config %s, want %s", ms[0].Config, want.ConfigDigest)
		}
		if len(ms[0].Layers) != want.Layers {
			return fi.Size(), fmt.Errorf("manifest.json: %d layers, want %d", len(ms[0].Layers), want.Layers)
		}
		return fi.Size(), nil
	}
}

// engine is the private dockerd, which runs between start and stop.
type engine struct {
	mu  sync.Mutex // held while starting or stopping
	dir string
	d   *peers.Docker
	pid int
}

func (e *engine) socket() string { return filepath.Join(e.dir, "docker.sock") }

func (e *engine) start() {
	if err := e.tryStart(); err != nil {
		sidebyside.Fatalf("%v", err)
	}
}

func (e *engine) tryStart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if sidebyside.Exiting() {
		return errors.New("interrupted")
	}
	d, err := peers.StartDocker(e.dir)
	if err != nil {
		return err
	}
	e.d = d
	b, _ := os.ReadFile(filepath.Join(e.dir, "docker.pid"))
	e.pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	if e.pid == 0 {
		log.Printf("warning: cannot read dockerd's pid file; the engine's CPU time will read 0")
	}
	return nil
}

func (e *engine) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.d != nil {
		e.d.Stop()
		e.d, e.pid = nil, 0
	}
}

// docker runs the docker client against the engine.
func (e *engine) docker(ctx context.Context, args ...string) (string, error) {
	e.mu.Lock()
	d := e.d
	e.mu.Unlock()
	if d == nil {
		return "", errors.New("the engine is not running")
	}
	return d.Docker(ctx, args...)
}

// forgetPushes deletes what the (stopped) engine remembers of earlier
// pushes: which registry and repository holds each layer's compressed
// blob, which it would otherwise use to skip or mount blobs.
func (e *engine) forgetPushes() {
	dirs, _ := filepath.Glob(filepath.Join(e.dir, "data", "image", "*", "distribution"))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			sidebyside.Fatalf("%v", err)
		}
	}
}

// cpu returns the user+system time of dockerd and every process under it
// (containerd, shims), with the children they have reaped.
func (e *engine) cpu() time.Duration {
	if e.pid == 0 {
		return 0
	}
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(pid); ok {
			parent[pid] = st.ppid
		}
	}
	under := func(pid int) bool {
		for i := 0; pid > 1 && i < 64; i++ {
			if pid == e.pid {
				return true
			}
			pid = parent[pid]
		}
		return false
	}
	var total time.Duration
	for pid := range parent {
		if under(pid) {
			st, _ := procStat(pid)
			total += st.cpu
		}
	}
	return total
}

// layerFiles are the files of an image's layers in the engine's storage.
type layerFiles struct {
	dirs  []string
	files []string
	bytes int64
}

// imageLayerFiles finds the files the engine reads to export an image.
// With vfs every layer is a full copy of the filesystem up to it; imagegen's
// Big puts layer N's files in data/layer-NN, so a layer's own files are
// those of the highest-numbered data/layer-NN in its directory.
func (e *engine) imageLayerFiles(ref string) (layerFiles, error) {
	var lf layerFiles
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	chains, err := e.chainIDs(ctx, ref)
	if err != nil {
		return lf, err
	}
	driverRoot := filepath.Join(e.dir, "data", "vfs", "dir")
	layerdb := filepath.Join(e.dir, "data", "image", "vfs", "layerdb", "sha256")
	for i, c := range chains {
		id, err := os.ReadFile(filepath.Join(layerdb, strings.TrimPrefix(c, "sha256:"), "cache-id"))
		if err != nil {
			return lf, err
		}
		dir := filepath.Join(driverRoot, strings.TrimSpace(string(id)), "data", fmt.Sprintf("layer-%02d", i+1))
		lf.dirs = append(lf.dirs, dir)
		err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				lf.files = append(lf.files, p)
				if fi, err := d.Info(); err == nil {
					lf.bytes += fi.Size()
				}
			}
			return nil
		})
		if err != nil {
			return lf, err
		}
	}
	return lf, nil
}

// sha256Digest returns the digest of s, as "sha256:HEX".
func sha256Digest(s string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s)))
}

// chainIDs returns the chain IDs of an image's layers, bottom first.
func (e *engine) chainIDs(ctx context.Context, ref string) ([]string, error) {
	js, err := e.docker(ctx, "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref)
	if err != nil {
		return nil, err
	}
	var diffIDs []string
	if err := json.Unmarshal([]byte(js), &diffIDs); err != nil {
		return nil, fmt.Errorf("RootFS.Layers %q: %v", js, err)
	}
	var chains []string
	for i, d := range diffIDs {
		if i == 0 {
			chains = append(chains, d)
			continue
		}
		chains = append(chains, sha256Digest(chains[i-1]+" "+d))
	}
	return chains, nil
}

// procStatT is what the harness reads of /proc/PID/stat.
type procStatT struct {
	ppid int
	cpu  time.Duration // utime+stime+cutime+cstime
}

// procStat reads /proc/PID/stat (clock ticks of 1/100 s, as on every
// Linux the project runs on).
func procStat(pid int) (procStatT, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStatT{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStatT{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return procStatT{}, false
	}
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15,
	// cutime 16, cstime 17.
	ppid, _ := strconv.Atoi(f[1])
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += v
	}
	return procStatT{ppid: ppid, cpu: time.Duration(ticks) * 10 * time.Millisecond}, true
}
