// Command registry measures occystrap's registry transfers side by side
// with skopeo and crane against one real local registry (the distribution
// registry, `docker-registry`, on 127.0.0.1, started through
// testdata/peers), on a generated image, and prints a Markdown table of
// median wall times, CPU time, peak memory and bytes moved.
//
// Jobs, each run by every tool:
//
//   - registry -> tarball: pull an image pushed once beforehand (by skopeo,
//     gzip layers) into a docker-save tarball;
//   - tarball -> registry (gzip): push the generated docker-save tarball,
//     whose layers are uncompressed, so every tool compresses them;
//   - registry -> registry: copy the pre-pushed image to another repository
//     of the same registry.
//
// Run it with `go run ./bench/registry -size 1GiB` (or `go tool task
// bench:registry`, which builds bin/occystrap first). Runs go round-robin
// (every job and tool once, then again, -runs times) so slow spells of the
// machine spread over all of them; the median is reported.
//
// Every timed run starts from the same state, prepared outside the timed
// region:
//
//  1. the registry is stopped and started again, so each run talks to a
//     fresh process whose CPU time (from /proc/PID/stat) is that run's
//     alone. Pushes go to an EMPTY registry (its storage is wiped), so no
//     tool can skip a blob the registry already holds. Pulls and copies use
//     a registry holding only the source image: whatever a copy added (its
//     repository, any new blob) is deleted again;
//  2. skopeo's blob info cache is deleted, so that it cannot skip or mount
//     blobs from its memory of earlier runs (it would otherwise remember
//     where every blob went);
//  3. the previous output is deleted, the inputs (the tarball, the
//     registry's blobs) are read through into the page cache, and
//     everything dirty is written back (sync);
//  4. -warm bytes of anonymous memory are touched and freed (in a helper
//     process, see runCmd), so that the page cache each command fills
//     comes from memory the machine holds (see bench/harness for why this
//     matters on the project's virtual machine);
//  5. the harness waits, up to -idle, for the rest of the machine to be
//     idle. It is shared with other sessions' builds and tests, so the CPU
//     time the rest of the machine used during each run is measured too
//     ("other CPU"), and the table also gives the median of the quiet runs
//     alone (those where that stayed under a tenth of a CPU).
//
// crane is taken from PATH, or -crane, or else built with `go install
// github.com/google/go-containerregistry/cmd/crane@latest` into the work
// directory (never added to go.mod); if that fails its rows are skipped.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/occystrap/occystrap/testdata/imagegen"
	"github.com/occystrap/occystrap/testdata/peers"
)

// measure is one timed run.
type measure struct {
	wall   time.Duration
	cpu    time.Duration // the tool's user+system time (with its children)
	regCPU time.Duration // the registry's user+system time during the run
	other  time.Duration // CPU time the rest of the machine used during the run
	maxRSS int64         // bytes
	bytes  int64         // output size (pull) or compressed bytes stored (push, copy)
	note   string
}

// srcRepo is the repository of the image pushed once for pulls and copies.
const srcRepo = "bench/img"

// skopeoCaches are where skopeo keeps its blob info cache, as root and not.
func skopeoCaches() []string {
	c := []string{"/var/lib/containers/cache/blob-info-cache-v1.boltdb"}
	if home, err := os.UserHomeDir(); err == nil {
		c = append(c, filepath.Join(home, ".local/share/containers/cache/blob-info-cache-v1.boltdb"))
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		c = append(c, filepath.Join(x, "containers/cache/blob-info-cache-v1.boltdb"))
	}
	return c
}

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// atExit registers f to run (last registered first) on exit, on failure
// and on Ctrl-C: the registry runs in its own process group, so it would
// not see the terminal's signal.
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
	runCleanups()
	os.Exit(1)
}

// helperArg, as the first argument, runs one of the harness's own helpers
// instead of the harness (see helper).
const helperArg = "__helper"

func main() {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		helper(os.Args[2:])
		return
	}
	size := flag.String("size", "1GiB", "image size (KiB, MiB, GiB suffixes)")
	layers := flag.Int("layers", 8, "layers in the generated image")
	runs := flag.Int("runs", 5, "runs of each job and tool (the median is reported)")
	only := flag.String("only", "", "run only the rows whose \"job: tool\" name contains this text")
	work := flag.String("work", "", "scratch directory (default: a new one under /tmp, removed at the end unless -keep; a given directory is left in place)")
	keep := flag.Bool("keep", false, "keep the default scratch directory")
	bin := flag.String("bin", "bin/occystrap", "occystrap binary to measure")
	par := flag.Int("j", 4, "occystrap's parallelism (-j)")
	data := flag.String("data", "random", "layer file contents: random (incompressible) or mixed (gzip shrinks it to about 56%)")
	warm := flag.String("warm", "", "bytes of memory to touch before each run (default: 3 times -size plus 256MiB, at most half the available memory; 0 disables)")
	cranePath := flag.String("crane", "", "crane binary (default: crane on PATH, else built with go install)")
	idle := flag.Duration("idle", 20*time.Second, "before each run, wait up to this long for the rest of the machine to be idle (under 10% of a CPU for half a second); 0 disables")
	flag.Parse()
	log.SetFlags(log.Ltime)

	n, err := parseSize(*size)
	if err != nil {
		log.Fatal(err)
	}
	if *data != "random" && *data != "mixed" {
		log.Fatalf("-data %q: want random or mixed", *data)
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
	binPath, err := filepath.Abs(*bin)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := os.Stat(binPath); err != nil {
		log.Fatalf("%v (build it first: go build -o bin/occystrap .)", err)
	}
	for _, p := range []string{"skopeo", peers.RegistryProgram} {
		if _, err := exec.LookPath(p); err != nil {
			log.Fatalf("%s is not installed (go tool task deps)", p)
		}
	}
	if *work == "" {
		d, err := os.MkdirTemp("/tmp", "occystrap-bench-registry-")
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
		runCleanups()
		os.Exit(130)
	}()

	crane := findCrane(*cranePath, *work)
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}

	// The image.
	img := filepath.Join(*work, "image.tar")
	log.Printf("generating a %s image (%s data) with %d layers in %s", *size, *data, *layers, img)
	res, err := generate(img, *size, *layers, *data)
	if err != nil {
		fatalf("generate the image: %v", err)
	}
	fi, _ := os.Stat(img)
	log.Printf("image: %s, config %s", mib(fi.Size()), res.ConfigDigest)

	// Two registry directories; only one registry runs at a time. "full"
	// holds the source image (pulls and copies), "empty" nothing (pushes).
	full := &registry{dir: filepath.Join(*work, "reg-full")}
	empty := &registry{dir: filepath.Join(*work, "reg-empty")}
	for _, r := range []*registry{full, empty} {
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			fatalf("%v", err)
		}
	}
	atExit(func() { full.stop(); empty.stop() })

	log.Printf("pushing the source image once with skopeo (gzip)")
	full.start()
	deleteSkopeoCaches()
	ctx := context.Background()
	if err := full.r.SkopeoPush(ctx, "docker-archive:"+img, srcRepo+":v1", peers.SkopeoOptions{CompressFormat: "gzip"}); err != nil {
		fatalf("%v", err)
	}
	srcMan, err := getManifest(full.r.Host, srcRepo)
	if err != nil {
		fatalf("source image: %v", err)
	}
	if srcMan.Config.Digest != res.ConfigDigest {
		fatalf("source image: config %s, want %s", srcMan.Config.Digest, res.ConfigDigest)
	}
	log.Printf("source image: %d layers, %s of gzip blobs (%.0f%% of the tarball)",
		len(srcMan.Layers), mib(srcMan.layerBytes()), 100*float64(srcMan.layerBytes())/float64(fi.Size()))
	full.stop()
	full.pristine = blobSet(full.storage())

	out := filepath.Join(*work, "out")
	outTar := filepath.Join(out, "out.tar")
	jflag := strconv.Itoa(*par)
	skopeo := []string{"skopeo", "--insecure-policy", "copy"}

	type tool struct {
		name string
		argv func(host string, run int) []string
	}
	type job struct {
		name    string
		reg     *registry
		inputs  func() []string
		tools   []tool
		collect func(host string, run int) (int64, string, error) // after the run, outside timing
	}
	pushRepo := func(run int) string { return fmt.Sprintf("bench/push%d", run) }
	copyRepo := func(run int) string { return fmt.Sprintf("bench/copy%d", run) }
	checkPushed := func(repoOf func(int) string, same bool) func(host string, run int) (int64, string, error) {
		return func(host string, run int) (int64, string, error) {
			m, err := getManifest(host, repoOf(run))
			if err != nil {
				return 0, "", err
			}
			if m.Config.Digest != res.ConfigDigest {
				return 0, "", fmt.Errorf("pushed config %s, want %s", m.Config.Digest, res.ConfigDigest)
			}
			if len(m.Layers) != res.Layers {
				return 0, "", fmt.Errorf("pushed %d layers, want %d", len(m.Layers), res.Layers)
			}
			note := ""
			if same {
				note = "new blobs"
				if slices.Equal(m.layerDigests(), srcMan.layerDigests()) {
					note = "same blobs"
				}
			}
			return m.layerBytes(), note, nil
		}
	}
	regInputs := func() []string { return blobFiles(full.storage()) }
	jobs := []job{
		{
			name: "registry -> tarball", reg: full, inputs: regInputs,
			tools: []tool{
				{"occystrap", func(h string, _ int) []string {
					return []string{binPath, "-j", jflag, "process", "registry://" + h + "/" + srcRepo + ":v1", "tar://" + outTar}
				}},
				{"skopeo", func(h string, _ int) []string {
					return append(slices.Clone(skopeo), "--src-tls-verify=false", "docker://"+h+"/"+srcRepo+":v1", "docker-archive:"+outTar+":"+srcRepo+":v1")
				}},
				{"crane", func(h string, _ int) []string {
					return []string{crane, "pull", "--insecure", h + "/" + srcRepo + ":v1", outTar}
				}},
			},
			collect: func(string, int) (int64, string, error) {
				fi, err := os.Stat(outTar)
				if err != nil {
					return 0, "", err
				}
				return fi.Size(), "", nil
			},
		},
		{
			name: "tarball -> registry (gzip)", reg: empty, inputs: func() []string { return []string{img} },
			tools: []tool{
				{"occystrap", func(h string, run int) []string {
					return []string{binPath, "-j", jflag, "process", "tar://" + img, "registry://" + h + "/" + pushRepo(run) + ":v1"}
				}},
				{"skopeo", func(h string, run int) []string {
					return append(slices.Clone(skopeo), "--dest-tls-verify=false", "docker-archive:"+img, "docker://"+h+"/"+pushRepo(run)+":v1")
				}},
				{"crane", func(h string, run int) []string {
					return []string{crane, "push", "--insecure", img, h + "/" + pushRepo(run) + ":v1"}
				}},
			},
			collect: checkPushed(pushRepo, false),
		},
		{
			name: "registry -> registry", reg: full, inputs: regInputs,
			tools: []tool{
				{"occystrap", func(h string, run int) []string {
					return []string{binPath, "-j", jflag, "process", "registry://" + h + "/" + srcRepo + ":v1", "registry://" + h + "/" + copyRepo(run) + ":v1"}
				}},
				{"skopeo", func(h string, run int) []string {
					return append(slices.Clone(skopeo), "--src-tls-verify=false", "--dest-tls-verify=false",
						"docker://"+h+"/"+srcRepo+":v1", "docker://"+h+"/"+copyRepo(run)+":v1")
				}},
				{"crane", func(h string, run int) []string {
					return []string{crane, "copy", "--insecure", h + "/" + srcRepo + ":v1", h + "/" + copyRepo(run) + ":v1"}
				}},
			},
			collect: checkPushed(copyRepo, true),
		},
	}

	type row struct {
		job, tool string
		ms        []measure
	}
	var rows []*row
	rowOf := map[string]*row{}
	for _, j := range jobs {
		for _, t := range j.tools {
			r := &row{job: j.name, tool: t.name}
			rows = append(rows, r)
			rowOf[j.name+": "+t.name] = r
		}
	}
	logDir := filepath.Join(*work, "logs")
	os.MkdirAll(logDir, 0o755)
	// A child's peak RSS as the kernel reports it is at least this
	// process's own (exec keeps the high-water mark of the memory it
	// replaces), so this process stays small: the memory-hungry helpers
	// run as children of their own. The floor is measured and printed.
	floor, err := runCmd([]string{self, helperArg, "nothing"}, filepath.Join(logDir, "floor.log"))
	if err != nil {
		fatalf("%v", err)
	}
	log.Printf("warming %s of memory before each run; occystrap -j %d; crane: %s", mib(warmBytes), *par, orNone(crane))

	for run := range *runs {
		for _, j := range jobs {
			for _, t := range j.tools {
				name := j.name + ": " + t.name
				if !strings.Contains(name, *only) {
					continue
				}
				if t.name == "crane" && crane == "" {
					continue
				}
				// Prepare, outside the timed region.
				if err := os.RemoveAll(out); err != nil {
					fatalf("%v", err)
				}
				if err := os.MkdirAll(out, 0o755); err != nil {
					fatalf("%v", err)
				}
				full.stop()
				empty.stop()
				if j.reg == full {
					full.restore()
				} else {
					empty.wipe()
				}
				j.reg.start()
				deleteSkopeoCaches()
				for _, f := range j.inputs() {
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
				host := j.reg.r.Host
				argv := t.argv(host, run)
				regBefore, sysBefore, selfBefore := j.reg.cpu(), systemCPU(), selfCPU()
				m, err := runCmd(argv, filepath.Join(logDir, fmt.Sprintf("%d-%s-%s.log", run, slug(j.name), t.name)))
				m.regCPU = j.reg.cpu() - regBefore
				m.other = max(0, systemCPU()-sysBefore-m.cpu-m.regCPU-(selfCPU()-selfBefore))
				if err != nil {
					fatalf("%s: %v", name, err)
				}
				if m.bytes, m.note, err = j.collect(host, run); err != nil {
					fatalf("%s: result: %v", name, err)
				}
				log.Printf("run %d  %-40s %8.3fs  cpu %6.2fs  registry cpu %6.2fs  other cpu %6.2fs  %7.1f MiB  %s %s",
					run+1, name, m.wall.Seconds(), m.cpu.Seconds(), m.regCPU.Seconds(), m.other.Seconds(),
					float64(m.maxRSS)/(1<<20), mib(m.bytes), m.note)
				rowOf[name].ms = append(rowOf[name].ms, m)
			}
		}
	}
	full.stop()
	empty.stop()
	os.RemoveAll(out)

	median := func(r *row) measure {
		ms := sorted(r.ms)
		if len(ms) == 0 {
			return measure{}
		}
		return ms[len(ms)/2]
	}
	skopeoOf := func(jobName string) measure { return median(rowOf[jobName+": skopeo"]) }

	dataDesc := "incompressible"
	if *data == "mixed" {
		dataDesc = "mixed, gzip to 56%"
	}
	fmt.Printf("\nImage: %s (%s data) in %d layers, tarball %s; %d runs each, median; occystrap -j %d; %d CPUs.\n\n",
		*size, dataDesc, *layers, mib(fi.Size()), *runs, *par, runtime.NumCPU())
	fmt.Println("| job | tool | wall time (median) | fastest – slowest | vs skopeo | quiet runs: median (n) | vs skopeo | tool CPU | registry CPU | other CPU | peak RSS | bytes |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		if len(r.ms) == 0 {
			continue
		}
		ms := sorted(r.ms)
		m := ms[len(ms)/2]
		ratio := "-"
		if s := skopeoOf(r.job); s.wall > 0 {
			ratio = fmt.Sprintf("%.2fx", m.wall.Seconds()/s.wall.Seconds())
		}
		b := mib(m.bytes)
		if m.note != "" {
			b += " (" + m.note + ")"
		}
		quiet, qratio := "-", "-"
		if q, n := quietMedian(r.ms); n > 0 {
			quiet = fmt.Sprintf("%.2f s (%d)", q.wall.Seconds(), n)
			if s, sn := quietMedian(rowOf[r.job+": skopeo"].ms); sn > 0 {
				qratio = fmt.Sprintf("%.2fx", q.wall.Seconds()/s.wall.Seconds())
			}
		}
		fmt.Printf("| %s | %s | %.2f s | %.2f – %.2f s | %s | %s | %s | %.2f s | %.2f s | %.2f s | %.1f MiB | %s |\n",
			r.job, r.tool, m.wall.Seconds(), ms[0].wall.Seconds(), ms[len(ms)-1].wall.Seconds(), ratio, quiet, qratio,
			m.cpu.Seconds(), m.regCPU.Seconds(), m.other.Seconds(), float64(m.maxRSS)/(1<<20), b)
	}
	if crane == "" {
		fmt.Println("\ncrane: not available, its rows are skipped.")
	}
	fmt.Printf("\nPeak RSS floor: %.1f MiB (a child that does nothing; every child's peak reads at least this).\n",
		float64(floor.maxRSS)/(1<<20))
	fmt.Println()
	goal := func(jobName string, want float64) {
		o, s := median(rowOf[jobName+": occystrap"]), skopeoOf(jobName)
		if o.wall == 0 || s.wall == 0 {
			return
		}
		r := o.wall.Seconds() / s.wall.Seconds()
		fmt.Printf("- %s: occystrap %.2f s, skopeo %.2f s: %.2fx (goal: at most %.1fx) — %s",
			jobName, o.wall.Seconds(), s.wall.Seconds(), r, want, met(r <= want))
		oq, on := quietMedian(rowOf[jobName+": occystrap"].ms)
		sq, sn := quietMedian(rowOf[jobName+": skopeo"].ms)
		if on > 0 && sn > 0 {
			rq := oq.wall.Seconds() / sq.wall.Seconds()
			fmt.Printf("; quiet runs only: %.2f s against %.2f s: %.2fx — %s", oq.wall.Seconds(), sq.wall.Seconds(), rq, met(rq <= want))
		}
		fmt.Println()
	}
	goal("registry -> tarball", 0.5)
	goal("tarball -> registry (gzip)", 0.5)
	var peak int64
	for _, r := range rows {
		if r.tool == "occystrap" {
			for _, m := range r.ms {
				peak = max(peak, m.maxRSS)
			}
		}
	}
	if peak > 0 {
		fmt.Printf("- occystrap peak RSS over every run with -j %d: %.1f MiB (goal: under 128 MiB) — %s\n",
			*par, float64(peak)/(1<<20), met(peak < 128<<20))
	}
	runCleanups()
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

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
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

// registry is one registry directory, whose process runs between start
// and stop.
type registry struct {
	dir      string
	r        *peers.Registry
	pid      int
	pristine map[string]bool // blob digests the source push left (full only)
}

func (g *registry) storage() string { return filepath.Join(g.dir, "storage") }

func (g *registry) start() {
	r, err := peers.StartRegistry(g.dir, peers.RegistryOptions{Auth: peers.AuthNone})
	if err != nil {
		fatalf("%v", err)
	}
	g.r = r
	g.pid = registryPID(r.ConfigPath)
	if g.pid == 0 {
		log.Printf("warning: cannot find the registry's process; its CPU time will read 0")
	}
}

func (g *registry) stop() {
	if g.r != nil {
		g.r.Stop()
		g.r, g.pid = nil, 0
	}
}

// cpu returns the registry process's user+system time so far.
func (g *registry) cpu() time.Duration {
	if g.pid == 0 {
		return 0
	}
	return procCPU(g.pid)
}

// wipe empties the storage.
func (g *registry) wipe() {
	if err := os.RemoveAll(g.storage()); err != nil {
		fatalf("%v", err)
	}
}

// restore brings the storage back to what the source push left: only the
// source repository, and only its blobs.
func (g *registry) restore() {
	v2 := filepath.Join(g.storage(), "docker", "registry", "v2")
	repos := filepath.Join(v2, "repositories")
	owners, _ := os.ReadDir(repos)
	for _, o := range owners {
		if o.Name() != "bench" {
			os.RemoveAll(filepath.Join(repos, o.Name()))
			continue
		}
		names, _ := os.ReadDir(filepath.Join(repos, "bench"))
		for _, n := range names {
			if "bench/"+n.Name() != srcRepo {
				os.RemoveAll(filepath.Join(repos, "bench", n.Name()))
			}
		}
	}
	for d := range blobSet(g.storage()) {
		if !g.pristine[d] {
			os.RemoveAll(filepath.Join(v2, "blobs", "sha256", d[:2], d))
		}
	}
}

// blobSet lists the blob digests (hex) in a registry's storage.
func blobSet(storage string) map[string]bool {
	set := map[string]bool{}
	root := filepath.Join(storage, "docker", "registry", "v2", "blobs", "sha256")
	prefixes, _ := os.ReadDir(root)
	for _, p := range prefixes {
		ds, _ := os.ReadDir(filepath.Join(root, p.Name()))
		for _, d := range ds {
			set[d.Name()] = true
		}
	}
	return set
}

// blobFiles lists the data files of a registry's blobs.
func blobFiles(storage string) []string {
	var files []string
	root := filepath.Join(storage, "docker", "registry", "v2", "blobs")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() == "data" {
			files = append(files, p)
		}
		return nil
	})
	return files
}

// registryPID finds the registry process serving configPath.
func registryPID(configPath string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) >= 3 && filepath.Base(args[0]) == peers.RegistryProgram && args[1] == "serve" && args[2] == configPath {
			return pid
		}
	}
	return 0
}

// procCPU reads a process's utime+stime from /proc/PID/stat (clock ticks
// of 1/100 s, as on every Linux the project runs on).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

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
// sessions' tests, builds) has used under 10% of a CPU for half a second,
// so that runs compete for the CPUs with the registry alone. The "other
// CPU" column shows what still ran during each run.
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

func deleteSkopeoCaches() {
	for _, c := range skopeoCaches() {
		if err := os.Remove(c); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fatalf("delete skopeo's blob info cache: %v", err)
		}
	}
}

// manifest is the part of an image manifest the harness reads.
type manifest struct {
	Config struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"layers"`
}

func (m manifest) layerBytes() int64 {
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func (m manifest) layerDigests() []string {
	var ds []string
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

// getManifest fetches repo:v1 from the registry at host.
func getManifest(host, repo string) (manifest, error) {
	var m manifest
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/v1", nil)
	if err != nil {
		return m, err
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return m, err
	}
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("GET %s: %s: %s", req.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	return m, json.Unmarshal(body, &m)
}

// findCrane returns a crane binary, building one with go install into
// work/gobin when there is none; "" when that fails too.
func findCrane(flagPath, work string) string {
	if flagPath != "" {
		return flagPath
	}
	if p, err := exec.LookPath("crane"); err == nil {
		return p
	}
	gobin := filepath.Join(work, "gobin")
	log.Printf("crane is not on PATH: go install github.com/google/go-containerregistry/cmd/crane@latest (GOBIN=%s)", gobin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/google/go-containerregistry/cmd/crane@latest")
	cmd.Dir = work // outside this module: go.mod is never touched
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if outb, err := cmd.CombinedOutput(); err != nil {
		log.Printf("cannot build crane, its rows are skipped: %v\n%s", err, outb)
		return ""
	}
	return filepath.Join(gobin, "crane")
}

// runCmd runs argv with its output in logPath, and returns its wall time,
// CPU time and peak RSS. The peak RSS is the child's ru_maxrss, which
// Linux computes as the largest of the high-water marks of every memory
// map the process had: that includes this process's, which the child
// shares until it calls exec (Go starts children with vfork semantics), so
// no child reads below this process's own peak. Keep this process small.
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
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.maxRSS = ru.Maxrss * 1024 // Linux reports KiB
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// image is what the harness needs to know of the generated image.
type image struct {
	ConfigDigest string
	Layers       int
}

// generate writes the image in a helper process (generating mixed data
// holds a buffer as large as the largest file, which would otherwise raise
// every child's measured peak RSS; see runCmd).
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
		json.NewEncoder(os.Stdout).Encode(image{ConfigDigest: res.ConfigDigest.String(), Layers: len(res.DiffIDs)})
	default:
		log.Fatalf("helper: unknown %q", args[0])
	}
}

// mixed returns img with every generated file's contents taken from one
// shared buffer in which each 8 KiB block is 2 KiB of random bytes and
// 6 KiB of text made of a small vocabulary: gzip shrinks it to 56%,
// between a typical image's binaries and its text. Files start at different
// offsets of the buffer, so no two are alike within gzip's 32 KiB window,
// and layers stay distinct. imagegen copies Data as it writes, so this is
// as cheap as the random data, and the buffer (the largest file plus
// 4 MiB) is the only memory it takes.
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
