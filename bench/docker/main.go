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
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
)

// measure is one timed run.
type measure struct {
	wall      time.Duration
	cpu       time.Duration // the child's user+system time (with its children)
	engineCPU time.Duration // dockerd's (and its children's) user+system time during the run
	other     time.Duration // CPU time the rest of the machine used during the run
	maxRSS    int64         // bytes
	bytes     int64         // size of the output tarball
}

var (
	cleanupMu sync.Mutex
	cleanups  []func()
	// exiting is set once an interrupt's cleanup has begun: from then on
	// the main goroutine must neither start an engine nor exit by itself.
	exiting atomic.Bool
)

// atExit registers f to run (last registered first) on exit, on failure
// and on Ctrl-C: dockerd runs in its own process group, so it would not
// see the terminal's signal.
func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

func runCleanups() {
	cleanupMu.Lock()
	cs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func fatalf(format string, args ...any) {
	log.Printf(format, args...)
	if exiting.Load() {
		select {} // the interrupt's cleanup exits
	}
	runCleanups()
	os.Exit(1)
}

// helperArg, as the first argument, runs one of the harness's own helpers
// instead of the harness (see helper).
const helperArg = "__helper"

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
	res     image
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		helper(os.Args[2:])
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

	n, err := parseSize(*size)
	if err != nil {
		log.Fatal(err)
	}
	warmBytes := 3*n + 256<<20
	if avail := memAvailable(); avail > 0 {
		warmBytes = min(warmBytes, avail/2)
	}
	if *warm != "" {
		if warmBytes, err = parseSize(*warm); err != nil {
			log.Fatal(err)
		}
	}
	for _, p := range []string{"docker", "dockerd"} {
		if _, err := exec.LookPath(p); err != nil {
			log.Fatalf("%s is not installed (go tool task deps)", p)
		}
	}
	if os.Geteuid() != 0 {
		log.Printf("warning: not root; dockerd will probably not start")
	}
	if *work == "" {
		d, err := os.MkdirTemp("/tmp", "occystrap-bench-docker-")
		if err != nil {
			log.Fatal(err)
		}
		*work = d
		if !*keep {
			atExit(func() { os.RemoveAll(d) })
		} else {
			atExit(func() { log.Printf("kept %s", d) })
		}
	} else if err := os.MkdirAll(*work, 0o755); err != nil {
		log.Fatal(err)
	}
	if *work, err = filepath.Abs(*work); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		log.Printf("interrupted; cleaning up")
		exiting.Store(true)
		runCleanups()
		os.Exit(130)
	}()
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}

	// occystrap.
	binPath := *bin
	if binPath == "" {
		binPath = filepath.Join(*work, "occystrap")
		log.Printf("building occystrap into %s", binPath)
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fatalf("go build (run the harness from the repository's root): %v", err)
		}
	}
	if binPath, err = filepath.Abs(binPath); err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(binPath); err != nil {
		fatalf("%v", err)
	}

	// The engine. Its directory holds its socket, so it is short (socket
	// paths are limited to 108 bytes) and outside -work; it is removed at
	// the end.
	engDir, err := os.MkdirTemp("", "occy-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	atExit(func() { os.RemoveAll(engDir) })
	eng := &engine{dir: engDir}
	atExit(eng.stop)
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
		if b.res, err = generate(b.tarball, *size, l, data); err != nil {
			fatalf("generate the image: %v", err)
		}
		fi, err := os.Stat(b.tarball)
		if err != nil {
			fatalf("%v", err)
		}
		b.tarSize = fi.Size()
		log.Printf("loading %s (%s) into the engine", b.res.RepoTag, mib(b.tarSize))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		_, err = eng.docker(ctx, "load", "-i", b.tarball)
		cancel()
		if err != nil {
			fatalf("docker load: %v", err)
		}
		log.Printf("loaded in %.1f s", time.Since(start).Seconds())
		// The generated tarball is no longer needed; keep the page cache
		// for the engine's files.
		os.Remove(b.tarball)
		imgs = append(imgs, b)
	}
	if len(imgs) == 0 {
		fatalf("no image to measure (-layers and -many are both 0)")
	}
	for _, b := range imgs {
		ids, err := eng.imageLayerFiles(b.res.RepoTag)
		if err != nil {
			fatalf("find the layer files of %s: %v", b.res.RepoTag, err)
		}
		log.Printf("%s: %d layer directories, %s of layer files in the engine", b.res.RepoTag, len(ids.dirs), mib(ids.bytes))
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
	// process's own (see runCmd), so this process stays small: the
	// memory-hungry helpers run as children of their own. The floor is
	// measured and printed.
	floor, err := runCmd([]string{self, helperArg, "nothing"}, filepath.Join(logDir, "floor.log"))
	if err != nil {
		fatalf("%v", err)
	}
	log.Printf("warming %s of memory before each run; occystrap -j %d; engine restarted before each run: %v", mib(warmBytes), *par, *restart)

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
						fatalf("%v", err)
					}
					if err := os.MkdirAll(d, 0o755); err != nil {
						fatalf("%v", err)
					}
				}
				if *restart {
					eng.stop()
					eng.forgetPushes()
					eng.start()
				}
				files, err := eng.imageLayerFiles(b.res.RepoTag)
				if err != nil {
					fatalf("%s: %v", name, err)
				}
				for _, f := range files.files {
					readThrough(f)
				}
				syscall.Sync()
				if warmBytes > 0 {
					if _, err := runCmd([]string{self, helperArg, "touch", strconv.FormatInt(warmBytes, 10)}, filepath.Join(logDir, "touch.log")); err != nil {
						fatalf("touch %s of memory: %v (try a smaller -warm)", mib(warmBytes), err)
					}
				}
				if *idle > 0 {
					waitIdle(*idle)
				}
				engBefore, sysBefore, selfBefore := eng.cpu(), systemCPU(), selfCPU()
				m, err := runCmd(argv(t, b), filepath.Join(logDir, fmt.Sprintf("%d-%d-%s.log", run, b.layers, slug(t))))
				m.engineCPU = eng.cpu() - engBefore
				m.other = max(0, systemCPU()-sysBefore-m.cpu-m.engineCPU-(selfCPU()-selfBefore))
				if err != nil {
					log.Printf("run %d  %-40s FAILED after %.3fs: %v", run+1, name, m.wall.Seconds(), err)
					r.failed = err.Error()
					continue
				}
				if m.bytes, err = checkOutput(outTar, b.res); err != nil {
					log.Printf("run %d  %-40s BAD OUTPUT: %v", run+1, name, err)
					r.failed = "bad output: " + err.Error()
					continue
				}
				log.Printf("run %d  %-40s %8.3fs  cpu %6.2fs  engine cpu %6.2fs  other cpu %6.2fs  %7.1f MiB  %s",
					run+1, name, m.wall.Seconds(), m.cpu.Seconds(), m.engineCPU.Seconds(), m.other.Seconds(),
					float64(m.maxRSS)/(1<<20), mib(m.bytes))
				r.ms = append(r.ms, m)
			}
		}
	}
	os.RemoveAll(out)

	median := func(r *row) measure {
		if r == nil || len(r.ms) == 0 {
			return measure{}
		}
		ms := sorted(r.ms)
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
		ms := sorted(r.ms)
		m := ms[len(ms)/2]
		ratio := "-"
		if s := median(rowOf[key(r.img, toolSave)]); s.wall > 0 {
			ratio = fmt.Sprintf("%.2fx", m.wall.Seconds()/s.wall.Seconds())
		}
		quiet := "-"
		if q, n := quietMedian(r.ms); n > 0 {
			quiet = fmt.Sprintf("%.2f s (%d)", q.wall.Seconds(), n)
		}
		fmt.Printf("| %s | %s | %.2f s | %.2f – %.2f s | %s | %s | %.2f s | %.2f s | %.2f s | %.1f MiB | %s |\n",
			r.img.name, r.tool, m.wall.Seconds(), ms[0].wall.Seconds(), ms[len(ms)-1].wall.Seconds(), ratio, quiet,
			m.cpu.Seconds(), m.engineCPU.Seconds(), m.other.Seconds(), float64(m.maxRSS)/(1<<20), mib(m.bytes))
	}
	fmt.Printf("\nTool CPU is the child's (for docker save, the docker client's); engine CPU is dockerd's and its children's.\n")
	fmt.Printf("Peak RSS floor: %.1f MiB (a child that does nothing; every child's peak reads at least this).\n\n",
		float64(floor.maxRSS)/(1<<20))
	ratio := func(b *benchImage, num, den string, goal float64) {
		a, c := rowOf[key(b, num)], rowOf[key(b, den)]
		am, cm := median(a), median(c)
		if am.wall == 0 || cm.wall == 0 {
			return
		}
		r := am.wall.Seconds() / cm.wall.Seconds()
		fmt.Printf("- %s: %s / %s: %.2f s / %.2f s = %.2fx", b.name, num, den, am.wall.Seconds(), cm.wall.Seconds(), r)
		if goal > 0 {
			fmt.Printf(" (goal: at most %.1fx) — %s", goal, met(r <= goal))
		}
		aq, an := quietMedian(a.ms)
		cq, cn := quietMedian(c.ms)
		if an > 0 && cn > 0 && (an < len(a.ms) || cn < len(c.ms)) {
			rq := aq.wall.Seconds() / cq.wall.Seconds()
			fmt.Printf("; quiet runs only: %.2f s / %.2f s = %.2fx", aq.wall.Seconds(), cq.wall.Seconds(), rq)
			if goal > 0 {
				fmt.Printf(" — %s", met(rq <= goal))
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
				peak = max(peak, m.maxRSS)
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
	runCleanups()
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
func checkOutput(path string, want image) (int64, error) {
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
		fatalf("%v", err)
	}
}

func (e *engine) tryStart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if exiting.Load() {
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
			fatalf("%v", err)
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

// quiet reports whether the rest of the machine used under a tenth of a
// CPU, on average, during a run.
func quiet(m measure) bool { return m.other*10 < m.wall }

// quietMedian returns the median of the quiet runs, and how many there
// were.
func quietMedian(ms []measure) (measure, int) {
	var q []measure
	for _, m := range ms {
		if quiet(m) {
			q = append(q, m)
		}
	}
	if len(q) == 0 {
		return measure{}, 0
	}
	q = sorted(q)
	return q[len(q)/2], len(q)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

func sorted(ms []measure) []measure {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b measure) int { return int(a.wall - b.wall) })
	return ms
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// systemCPU returns the CPU time the whole machine has spent busy (user,
// nice, system, interrupts, steal; not idle or I/O wait), from /proc/stat.
func systemCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// selfCPU returns this process's own user+system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitIdle waits, at most limit, until the rest of the machine (other
// sessions' tests, builds) has used under 10% of a CPU for half a second.
// The engine, idle between runs, counts as the rest of the machine here.
func waitIdle(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		before, self := systemCPU(), selfCPU()
		time.Sleep(500 * time.Millisecond)
		busy := systemCPU() - before - (selfCPU() - self)
		if busy < 50*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			log.Printf("the machine is still busy (%.0f%% of a CPU besides this harness); running anyway", 100*busy.Seconds()/0.5)
			return
		}
	}
}

// runCmd runs argv with its output in logPath, and returns its wall time,
// CPU time and peak RSS. The peak RSS is the child's ru_maxrss, which
// Linux computes as the largest of the high-water marks of every memory
// map the process had: that includes this process's, which the child
// shares until it calls exec, so no child reads below this process's own
// peak. Keep this process small.
func runCmd(argv []string, logPath string) (measure, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return measure{}, err
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	start := time.Now()
	err = cmd.Run()
	m := measure{wall: time.Since(start)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.maxRSS = ru.Maxrss * 1024 // Linux reports KiB
			m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err != nil {
		b, _ := os.ReadFile(logPath)
		return m, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, tail(string(b), 3000))
	}
	return m, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// readThrough reads a file to its end, so that it is in the page cache.
func readThrough(path string) {
	f, err := os.Open(path)
	if err != nil {
		fatalf("%v", err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20)); err != nil {
		fatalf("%v", err)
	}
}

// touchMemory faults in n bytes of anonymous memory and frees them, so that
// the next allocations are served from memory this machine holds rather
// than memory its hypervisor has reclaimed.
func touchMemory(n int64) error {
	if n <= 0 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_POPULATE)
	if err != nil {
		return err
	}
	return syscall.Munmap(b)
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes, or 0.
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kib << 10
			}
		}
	}
	return 0
}

// image is what the harness needs to know of a generated image.
type image struct {
	RepoTag      string
	ConfigDigest string
	Layers       int
}

// generate writes the image in a helper process (generating compressible
// data holds a buffer as large as the largest file, which would otherwise
// raise every child's measured peak RSS; see runCmd).
func generate(path, size string, layers int, data string) (image, error) {
	self, err := os.Executable()
	if err != nil {
		return image{}, err
	}
	cmd := exec.Command(self, helperArg, "generate", path, size, strconv.Itoa(layers), data)
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return image{}, err
	}
	var im image
	return im, json.Unmarshal(outb, &im)
}

// helper runs a helper: "generate PATH SIZE LAYERS DATA" writes the image
// and prints its description as JSON; "touch BYTES" faults in and frees
// that much memory; "nothing" does nothing (its peak RSS is the floor).
func helper(args []string) {
	if len(args) == 0 {
		log.Fatal("helper: no name")
	}
	switch args[0] {
	case "nothing":
	case "touch":
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			log.Fatal(err)
		}
		if err := touchMemory(n); err != nil {
			log.Fatal(err)
		}
	case "generate":
		n, err := parseSize(args[2])
		if err != nil {
			log.Fatal(err)
		}
		layers, err := strconv.Atoi(args[3])
		if err != nil {
			log.Fatal(err)
		}
		img := imagegen.Big(n, layers)
		if args[4] == "mixed" {
			img = mixed(img)
		}
		res, err := imagegen.WriteFile(args[1], img, imagegen.Legacy)
		if err != nil {
			log.Fatal(err)
		}
		json.NewEncoder(os.Stdout).Encode(image{RepoTag: img.RepoTag,
			ConfigDigest: res.ConfigDigest.String(), Layers: len(res.DiffIDs)})
	default:
		log.Fatalf("helper: unknown %q", args[0])
	}
}

// mixed returns img with every generated file's contents taken from one
// shared buffer in which each 8 KiB block is 2 KiB of random bytes and
// 6 KiB of text made of a small vocabulary: gzip shrinks it to 56%. It is
// bench/registry's -data mixed, unchanged: files start at different
// offsets of the buffer, so no two are alike within gzip's 32 KiB window,
// and layers stay distinct.
func mixed(img imagegen.Image) imagegen.Image {
	var largest int64
	for _, l := range img.Layers {
		for _, e := range l.Entries {
			largest = max(largest, e.Size)
		}
	}
	const spread = 4 << 20
	buf := make([]byte, largest+spread)
	r := rand.New(rand.NewPCG(7, 11))
	words := strings.Fields("the of and to in is for on that with as by this be are from at or an it not which config usr lib bin share " +
		"locale python3 site packages dist info __init__ py so x86_64 linux gnu include etc doc man html copyright changelog gz")
	for off := 0; off < len(buf); off += 8 << 10 {
		blk := buf[off:min(off+8<<10, len(buf))]
		half := min(2<<10, len(blk))
		for i := range blk[:half] {
			blk[i] = byte(r.Uint32())
		}
		for i := half; i < len(blk); {
			w := words[r.IntN(len(words))]
			i += copy(blk[i:], w)
			if i < len(blk) {
				blk[i] = " /\n_."[r.IntN(5)]
				i++
			}
		}
	}
	layers := make([]imagegen.Layer, len(img.Layers))
	for li, l := range img.Layers {
		es := slices.Clone(l.Entries)
		for i, e := range es {
			if e.Type == imagegen.File && e.Data == nil && e.Size > 0 {
				off := (e.Seed * 40961) % spread
				es[i].Data = buf[off : off+e.Size]
			}
		}
		l.Entries = es
		layers[li] = l
	}
	img.Layers = layers
	return img
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
