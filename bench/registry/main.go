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
//     process, see sidebyside.Warm), so that the page cache each command fills
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
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/occystrap/occystrap/bench/internal/sidebyside"
	"github.com/occystrap/occystrap/testdata/peers"
)

// measure is one timed run.
type measure struct {
	sidebyside.Usage               // the tool's wall time, CPU time (with its children), peak RSS; other CPU
	regCPU           time.Duration // the registry's user+system time during the run
	bytes            int64         // output size (pull) or compressed bytes stored (push, copy)
	note             string
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

func main() {
	if sidebyside.IsHelper() {
		sidebyside.Helper(os.Args[2:])
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

	n, err := sidebyside.ParseSize(*size)
	if err != nil {
		log.Fatal(err)
	}
	if *data != "random" && *data != "mixed" {
		log.Fatalf("-data %q: want random or mixed", *data)
	}
	warmBytes, err := sidebyside.WarmBytes(n, *warm)
	if err != nil {
		log.Fatal(err)
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
	if *work, err = sidebyside.WorkDir(*work, *keep, "occystrap-bench-registry-"); err != nil {
		log.Fatal(err)
	}
	sidebyside.CleanUpOnInterrupt()

	crane := findCrane(*cranePath, *work)

	// The image.
	img := filepath.Join(*work, "image.tar")
	log.Printf("generating a %s image (%s data) with %d layers in %s", *size, *data, *layers, img)
	res, err := sidebyside.Generate(img, *size, *layers, *data)
	if err != nil {
		sidebyside.Fatalf("generate the image: %v", err)
	}
	fi, _ := os.Stat(img)
	log.Printf("image: %s, config %s", sidebyside.MiB(fi.Size()), res.ConfigDigest)

	// Two registry directories; only one registry runs at a time. "full"
	// holds the source image (pulls and copies), "empty" nothing (pushes).
	full := &registry{dir: filepath.Join(*work, "reg-full")}
	empty := &registry{dir: filepath.Join(*work, "reg-empty")}
	for _, r := range []*registry{full, empty} {
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			sidebyside.Fatalf("%v", err)
		}
	}
	sidebyside.AtExit(func() { full.stop(); empty.stop() })

	log.Printf("pushing the source image once with skopeo (gzip)")
	full.start()
	deleteSkopeoCaches()
	ctx := context.Background()
	if err := full.r.SkopeoPush(ctx, "docker-archive:"+img, srcRepo+":v1", peers.SkopeoOptions{CompressFormat: "gzip"}); err != nil {
		sidebyside.Fatalf("%v", err)
	}
	srcMan, err := getManifest(full.r.Host, srcRepo)
	if err != nil {
		sidebyside.Fatalf("source image: %v", err)
	}
	if srcMan.Config.Digest != res.ConfigDigest {
		sidebyside.Fatalf("source image: config %s, want %s", srcMan.Config.Digest, res.ConfigDigest)
	}
	log.Printf("source image: %d layers, %s of gzip blobs (%.0f%% of the tarball)",
		len(srcMan.Layers), sidebyside.MiB(srcMan.layerBytes()), 100*float64(srcMan.layerBytes())/float64(fi.Size()))
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
	floor, err := sidebyside.Floor(filepath.Join(logDir, "floor.log"))
	if err != nil {
		sidebyside.Fatalf("%v", err)
	}
	log.Printf("warming %s of memory before each run; occystrap -j %d; crane: %s", sidebyside.MiB(warmBytes), *par, orNone(crane))

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
					sidebyside.Fatalf("%v", err)
				}
				if err := os.MkdirAll(out, 0o755); err != nil {
					sidebyside.Fatalf("%v", err)
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
				host := j.reg.r.Host
				argv := t.argv(host, run)
				var m measure
				var err error
				m.Usage, m.regCPU, err = sidebyside.RunBeside(argv, filepath.Join(logDir, fmt.Sprintf("%d-%s-%s.log", run, sidebyside.Slug(j.name), t.name)), j.reg.cpu)
				if err != nil {
					sidebyside.Fatalf("%s: %v", name, err)
				}
				if m.bytes, m.note, err = j.collect(host, run); err != nil {
					sidebyside.Fatalf("%s: result: %v", name, err)
				}
				log.Printf("run %d  %-40s %8.3fs  cpu %6.2fs  registry cpu %6.2fs  other cpu %6.2fs  %7.1f MiB  %s %s",
					run+1, name, m.Wall.Seconds(), m.CPU.Seconds(), m.regCPU.Seconds(), m.Other.Seconds(),
					float64(m.MaxRSS)/(1<<20), sidebyside.MiB(m.bytes), m.note)
				rowOf[name].ms = append(rowOf[name].ms, m)
			}
		}
	}
	full.stop()
	empty.stop()
	os.RemoveAll(out)

	median := func(r *row) measure {
		ms := sidebyside.Sorted(r.ms)
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
		*size, dataDesc, *layers, sidebyside.MiB(fi.Size()), *runs, *par, runtime.NumCPU())
	fmt.Println("| job | tool | wall time (median) | fastest – slowest | vs skopeo | quiet runs: median (n) | vs skopeo | tool CPU | registry CPU | other CPU | peak RSS | bytes |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		if len(r.ms) == 0 {
			continue
		}
		ms := sidebyside.Sorted(r.ms)
		m := ms[len(ms)/2]
		ratio := "-"
		if s := skopeoOf(r.job); s.Wall > 0 {
			ratio = fmt.Sprintf("%.2fx", m.Wall.Seconds()/s.Wall.Seconds())
		}
		b := sidebyside.MiB(m.bytes)
		if m.note != "" {
			b += " (" + m.note + ")"
		}
		quiet, qratio := "-", "-"
		if q, n := sidebyside.QuietMedian(r.ms); n > 0 {
			quiet = fmt.Sprintf("%.2f s (%d)", q.Wall.Seconds(), n)
			if s, sn := sidebyside.QuietMedian(rowOf[r.job+": skopeo"].ms); sn > 0 {
				qratio = fmt.Sprintf("%.2fx", q.Wall.Seconds()/s.Wall.Seconds())
			}
		}
		fmt.Printf("| %s | %s | %.2f s | %.2f – %.2f s | %s | %s | %s | %.2f s | %.2f s | %.2f s | %.1f MiB | %s |\n",
			r.job, r.tool, m.Wall.Seconds(), ms[0].Wall.Seconds(), ms[len(ms)-1].Wall.Seconds(), ratio, quiet, qratio,
			m.CPU.Seconds(), m.regCPU.Seconds(), m.Other.Seconds(), float64(m.MaxRSS)/(1<<20), b)
	}
	if crane == "" {
		fmt.Println("\ncrane: not available, its rows are skipped.")
	}
	fmt.Printf("\nPeak RSS floor: %.1f MiB (a child that does nothing; every child's peak reads at least this).\n",
		float64(floor.MaxRSS)/(1<<20))
	fmt.Println()
	goal := func(jobName string, want float64) {
		o, s := median(rowOf[jobName+": occystrap"]), skopeoOf(jobName)
		if o.Wall == 0 || s.Wall == 0 {
			return
		}
		r := o.Wall.Seconds() / s.Wall.Seconds()
		fmt.Printf("- %s: occystrap %.2f s, skopeo %.2f s: %.2fx (goal: at most %.1fx) — %s",
			jobName, o.Wall.Seconds(), s.Wall.Seconds(), r, want, sidebyside.Met(r <= want))
		oq, on := sidebyside.QuietMedian(rowOf[jobName+": occystrap"].ms)
		sq, sn := sidebyside.QuietMedian(rowOf[jobName+": skopeo"].ms)
		if on > 0 && sn > 0 {
			rq := oq.Wall.Seconds() / sq.Wall.Seconds()
			fmt.Printf("; quiet runs only: %.2f s against %.2f s: %.2fx — %s", oq.Wall.Seconds(), sq.Wall.Seconds(), rq, sidebyside.Met(rq <= want))
		}
		fmt.Println()
	}
	goal("registry -> tarball", 0.5)
	goal("tarball -> registry (gzip)", 0.5)
	var peak int64
	for _, r := range rows {
		if r.tool == "occystrap" {
			for _, m := range r.ms {
				peak = max(peak, m.MaxRSS)
			}
		}
	}
	if peak > 0 {
		fmt.Printf("- occystrap peak RSS over every run with -j %d: %.1f MiB (goal: under 128 MiB) — %s\n",
			*par, float64(peak)/(1<<20), sidebyside.Met(peak < 128<<20))
	}
	sidebyside.RunCleanups()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

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
		sidebyside.Fatalf("%v", err)
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
		sidebyside.Fatalf("%v", err)
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

func deleteSkopeoCaches() {
	for _, c := range skopeoCaches() {
		if err := os.Remove(c); err != nil && !errors.Is(err, fs.ErrNotExist) {
			sidebyside.Fatalf("delete skopeo's blob info cache: %v", err)
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
