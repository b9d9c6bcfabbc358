// Command harness measures occystrap side by side with the least the same
// work can cost, on a generated image, and prints a Markdown table of
// median wall times, CPU times and peak memory:
//
//   - tar -> tar against `cp` of the file plus one sha256 pass over it with
//     Go's crypto/sha256 (every diff ID must be verified, so the copy and
//     one hash are the floor);
//   - tar -> dir?expand=true against `tar -x` of the same layers one after
//     another.
//
// Run it with `go run ./bench/harness -size 1GiB` (or `go tool task
// bench:compare`). The commands run round-robin, -runs times each, and the
// median is reported; peak RSS is the child's maximum resident set size as
// the kernel reports it. -baseline measures an earlier build beside -bin.
//
// Every timed run starts from the same state, prepared outside the timed
// region, whatever command ran before it:
//
//  1. the previous run's output is deleted and everything dirty is written
//     back (sync), so that no command pays for another's writeback or
//     deletion;
//  2. the inputs of every command are read through once, so that all of
//     them read from the page cache;
//  3. the machine is idle: on a shared machine the harness waits (up to
//     -quiet) until other processes leave the CPUs alone, and says how many
//     runs it had to start while they did not;
//  4. the free memory that the command will fill with page cache is in the
//     same state for every command (-memory);
//  5. commands write to pipes, not to /dev/null (see runChild), and are
//     started by a small runner process (see runCmd).
//
// The fourth point matters on virtual machines that hand freed memory back
// to their host (virtio-balloon free page reporting, as on the project's
// Firecracker machine): a second or two after page cache is freed in large
// blocks, the host takes that memory back, and the guest then pays host
// page faults when it writes into it again, the more so for large writes.
// There, at times, writing 2 GiB into the page cache took 0.3 s right
// after a previous output was deleted and 3 to 5 s once the freed memory
// had been handed back; at other times, with the host less loaded, the
// difference vanishes. A pause between cleaning up and the timed run (as
// this harness once made, "to let the file system settle") charges every
// command with that, in proportion to the bytes it writes and to the size
// of its writes: it made occystrap's expand look 2.2x slower than `tar -x`.
//
// With -memory warm (the default) the harness writes -warm bytes to a
// scratch file and deletes it just before starting the clock, so that every
// command writes into memory the machine already holds, as in a shell loop
// that deletes the last output and runs again: the time measured is the
// command's own work. With -memory cold it pauses, then waits until the
// kernel has stopped handing free memory back, as the old harness's
// conditions were: commands then also pay for the host's faults, which vary
// with the host's load.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/occystrap/occystrap/bench/internal/sidebyside"
	"github.com/occystrap/occystrap/testdata/imagegen"
)

type measure struct {
	sidebyside.Usage      // wall time, CPU time (of the command and its children), peak RSS
	loaded           bool // started while the machine was busy
}

// reportedKiB is where the kernel of this project's machine counts the
// memory it has reported free to the hypervisor; other kernels may not
// have it.
const reportedKiB = "/sys/module/page_reporting/parameters/reported_kib"

// envRun makes the harness binary a runner: it runs os.Args[1:] and prints
// the wall time, CPU time and peak RSS (see runCmd).
const envRun = "OCCYSTRAP_HARNESS_RUN"

func main() {
	if os.Getenv(envRun) != "" {
		runChild(os.Args[1:])
		return
	}
	size := flag.String("size", "1GiB", "image size (KiB, MiB, GiB suffixes)")
	layers := flag.Int("layers", 8, "layers in the generated image")
	runs := flag.Int("runs", 5, "runs of each command (the median is reported)")
	work := flag.String("work", "", "scratch directory (default: a new temporary one, removed at the end)")
	memory := flag.String("memory", "warm", "state of free memory when a command starts: warm (just freed by this machine) or cold (handed back to the hypervisor, on virtual machines that do that)")
	warm := flag.String("warm", "", "with -memory warm, bytes written to a scratch file and deleted before each run (default: 2.5 times -size, at most a third of the available memory)")
	settle := flag.Duration("settle", 3*time.Second, "with -memory cold, the least pause before each run; the harness then waits until no more free memory is being handed to the hypervisor")
	quiet := flag.Duration("quiet", 2*time.Minute, "wait at most this long before each run for the machine's CPUs to be idle (0: do not wait)")
	only := flag.String("only", "", "run only the commands whose name contains this text")
	bin := flag.String("bin", "bin/occystrap", "occystrap binary to measure")
	baseline := flag.String("baseline", "", "another occystrap binary (an earlier build) to measure beside -bin, in the same runs")
	original := flag.String("original", "", "command line (split at spaces) that runs the original Python occystrap's CLI, e.g. \"/usr/bin/python3 /tmp/pyoccy/run.py\": adds its tar -> tar with normalize-timestamps (see docs/benchmarks.md)")
	flag.Parse()
	n, err := sidebyside.ParseSize(*size)
	if err != nil {
		log.Fatal(err)
	}
	if *memory != "warm" && *memory != "cold" {
		log.Fatalf("-memory %q: want warm or cold", *memory)
	}
	warmBytes := n*5/2 + 64<<20
	if *warm != "" {
		if warmBytes, err = sidebyside.ParseSize(*warm); err != nil {
			log.Fatal(err)
		}
	} else if avail := sidebyside.MemAvailable(); avail > 0 {
		warmBytes = min(warmBytes, avail/3)
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
	inputs := append([]string{in}, layerFiles...)

	out := filepath.Join(*work, "out")
	scratch := filepath.Join(*work, "warm")
	// The commands run round-robin, -runs times each, so that slow spells
	// of the machine spread over all of them; the median is kept.
	type job struct {
		name string
		fn   func() measure
		ms   []measure
	}
	// prepare puts the machine in the same state before every timed run
	// (see the package comment) and reports whether it is idle.
	prepare := func() (idle bool) {
		if err := os.RemoveAll(out); err != nil {
			log.Fatal(err)
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			log.Fatal(err)
		}
		syscall.Sync()
		for _, f := range inputs {
			if err := sidebyside.ReadThrough(f); err != nil {
				log.Fatal(err)
			}
		}
		idle = waitQuiet(*quiet)
		if *memory == "cold" {
			waitCold(*settle)
			return idle
		}
		writeAndDelete(scratch, warmBytes)
		return idle
	}
	jobs := []*job{
		{name: "cp image.tar", fn: func() measure { return runCmd("cp", in, filepath.Join(out, "copy.tar")) }},
		{name: "sha256 of image.tar (Go crypto/sha256)", fn: func() measure { return hashFile(in) }},
		{name: "occystrap tar -> tar", fn: func() measure {
			return runCmd(binPath, "process", "tar://"+in, "tar://"+filepath.Join(out, "copy.tar"))
		}},
		{name: "tar -x of each layer, one after another", fn: func() measure {
			var total measure
			for _, l := range layerFiles {
				m := runCmd("tar", "-xf", l, "-C", out)
				total.Wall += m.Wall
				total.CPU += m.CPU
				total.MaxRSS = max(total.MaxRSS, m.MaxRSS)
			}
			return total
		}},
		{name: "occystrap tar -> dir?expand=true", fn: func() measure {
			return runCmd(binPath, "process", "tar://"+in, "dir://"+filepath.Join(out, "d")+"?expand=true")
		}},
		{name: "occystrap tar -> tar -f normalize-timestamps", fn: func() measure {
			return runCmd(binPath, "process", "tar://"+in, "tar://"+filepath.Join(out, "norm.tar"), "-f", "normalize-timestamps")
		}},
	}
	var originalJob *job
	if *original != "" {
		argv := strings.Fields(*original)
		originalJob = &job{name: "original (Python) tar -> tar -f normalize-timestamps", fn: func() measure {
			return runCmd(argv[0], append(argv[1:], "process", "tar://"+in, "tar://"+filepath.Join(out, "norm-py.tar"), "-f", "normalize-timestamps")...)
		}}
		jobs = append(jobs, originalJob)
	}
	if *baseline != "" {
		basePath, err := filepath.Abs(*baseline)
		if err != nil {
			log.Fatal(err)
		}
		jobs = append(jobs,
			&job{name: "baseline: occystrap tar -> tar", fn: func() measure {
				return runCmd(basePath, "process", "tar://"+in, "tar://"+filepath.Join(out, "copy.tar"))
			}},
			&job{name: "baseline: occystrap tar -> dir?expand=true", fn: func() measure {
				return runCmd(basePath, "process", "tar://"+in, "dir://"+filepath.Join(out, "d")+"?expand=true")
			}},
			&job{name: "baseline: occystrap tar -> tar -f normalize-timestamps", fn: func() measure {
				return runCmd(basePath, "process", "tar://"+in, "tar://"+filepath.Join(out, "norm.tar"), "-f", "normalize-timestamps")
			}},
		)
	}
	floor0 := runCmd("true")
	log.Printf("peak RSS of `true` through the runner: %.1f MiB (no peak RSS below can be lower)", float64(floor0.MaxRSS)/(1<<20))
	if *memory == "warm" {
		log.Printf("memory: warm (%.1f GiB written and deleted before each run)", float64(warmBytes)/(1<<30))
	} else {
		log.Printf("memory: cold")
	}
	loaded := 0
	for range *runs {
		for _, j := range jobs {
			if !strings.Contains(j.name, *only) {
				continue
			}
			idle := prepare()
			m := j.fn()
			m.loaded = !idle
			if !idle {
				loaded++
			}
			note := ""
			if m.loaded {
				note = "  (machine busy)"
			}
			log.Printf("%-44s %8.3fs  cpu %6.3fs  %6.1f MiB%s", j.name, m.Wall.Seconds(), m.CPU.Seconds(), float64(m.MaxRSS)/(1<<20), note)
			j.ms = append(j.ms, m)
		}
	}
	sorted := func(j *job) []measure { return sidebyside.Sorted(j.ms) }
	median := func(j *job) measure {
		ms := sorted(j)
		if len(ms) == 0 {
			return measure{Usage: sidebyside.Usage{Wall: 1}}
		}
		return ms[len(ms)/2]
	}
	cp, sum, ours, tarx, expand, norm := median(jobs[0]), median(jobs[1]), median(jobs[2]), median(jobs[3]), median(jobs[4]), median(jobs[5])
	os.RemoveAll(out)

	fmt.Printf("\nImage: %s in %d layers, %d runs each, median; memory %s.\n\n", *size, *layers, *runs, *memory)
	fmt.Println("| command | wall time (median) | fastest – slowest | CPU time | peak RSS |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, j := range jobs {
		ms := sorted(j)
		if len(ms) == 0 {
			continue
		}
		m := ms[len(ms)/2]
		rss := "-"
		if m.MaxRSS > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(m.MaxRSS)/(1<<20))
		}
		fmt.Printf("| %s | %.3f s | %.3f – %.3f s | %.3f s | %s |\n", j.name, m.Wall.Seconds(),
			ms[0].Wall.Seconds(), ms[len(ms)-1].Wall.Seconds(), m.CPU.Seconds(), rss)
	}
	fmt.Printf("\nCPU time is user + system time of the command (and its children) in the median run. Peak RSS cannot be below the runner's own, %.1f MiB.\n", float64(floor0.MaxRSS)/(1<<20))
	if loaded > 0 {
		fmt.Printf("%d runs started while other processes kept the CPUs busy (waited %s for them).\n", loaded, *quiet)
	}
	ran := func(j *job) bool { return len(j.ms) > 0 }
	if ran(jobs[0]) && ran(jobs[1]) && ran(jobs[2]) {
		floor := cp.Wall + sum.Wall
		fmt.Printf("\ntar -> tar: %.3f s against a floor of %.3f s (cp + sha256): %.2fx (goal: at most 1.5x)\n",
			ours.Wall.Seconds(), floor.Seconds(), ours.Wall.Seconds()/floor.Seconds())
	}
	if ran(jobs[3]) && ran(jobs[4]) {
		fmt.Printf("tar -> dir expand: %.3f s against %.3f s for tar -x: %.2fx (goal: at most 1x)\n",
			expand.Wall.Seconds(), tarx.Wall.Seconds(), expand.Wall.Seconds()/tarx.Wall.Seconds())
		fmt.Printf("peak RSS: tar -> tar %.1f MiB, expand %.1f MiB (goal: under 64 MiB)\n",
			float64(ours.MaxRSS)/(1<<20), float64(expand.MaxRSS)/(1<<20))
	}
	if !ran(jobs[2]) || !ran(jobs[5]) {
		return
	}
	fmt.Printf("normalize-timestamps: %.3f s against %.3f s with no filter: %.2fx (goal: at most 1.3x)\n",
		norm.Wall.Seconds(), ours.Wall.Seconds(), norm.Wall.Seconds()/ours.Wall.Seconds())
	if originalJob != nil && ran(originalJob) {
		py := median(originalJob)
		fmt.Printf("normalize-timestamps against the original: %.3f s against %.3f s: %.1fx faster (goal: at least 8x)\n",
			norm.Wall.Seconds(), py.Wall.Seconds(), py.Wall.Seconds()/norm.Wall.Seconds())
	}
}

// runCmd runs a command and returns its wall time, CPU time and peak RSS.
//
// The command is started by a child of the harness (this binary again),
// not by the harness itself: Linux counts in a process's peak RSS the peak
// of the process it was exec'ed from (Go starts commands with vfork), and
// the harness's own peak, after generating the image, would hide the peak
// of small commands. The runner's own peak is then the floor of what is
// reported (`true` measures it).
func runCmd(name string, args ...string) measure {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Env = append(os.Environ(), envRun+"=1")
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		log.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	var wall, cpu, rss int64
	if _, err := fmt.Sscan(string(b), &wall, &cpu, &rss); err != nil {
		log.Fatalf("%s %s: runner said %q: %v", name, strings.Join(args, " "), b, err)
	}
	return measure{Usage: sidebyside.Usage{Wall: time.Duration(wall), CPU: time.Duration(cpu), MaxRSS: rss}}
}

// runChild runs a command with its output discarded and prints its wall
// time (ns), CPU time (ns) and peak RSS (bytes) on stdout.
func runChild(argv []string) {
	if len(argv) == 0 {
		log.Fatal("runner: no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// Pipes, read and dropped: the measure is of the work, not of its
	// logging. Not /dev/null: it is a character device, which occystrap
	// (cli.isTerminal) takes for a terminal, and it then draws progress
	// bars and waits for their last refresh (up to 150 ms) before exiting.
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", strings.Join(argv, " "), err)
		os.Exit(1)
	}
	cpu, rss := sidebyside.Rusage(cmd.ProcessState)
	fmt.Println(int64(wall), int64(cpu), rss)
}

// writeAndDelete writes n bytes to a new file at path, in 1 MiB writes,
// and deletes it: the page cache it took is free again, and was touched by
// this machine a moment ago.
func writeAndDelete(path string, n int64) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for w := int64(0); w < n; w += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n-w)]); err != nil {
			log.Fatalf("write %s: %v (try a smaller -warm)", path, err)
		}
	}
	f.Close()
	if err := os.Remove(path); err != nil {
		log.Fatal(err)
	}
}

// waitQuiet waits, at most limit, until the CPUs have been idle for half a
// second (at most a tenth of one CPU busy), and reports whether they were.
func waitQuiet(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		busy, total := cpuTicks()
		time.Sleep(500 * time.Millisecond)
		busy2, total2 := cpuTicks()
		if total2 <= total {
			return true // no /proc/stat: cannot tell
		}
		// total counts every CPU; busy/total is the busy share of all.
		cpus := float64(max(numCPU(), 1))
		if float64(busy2-busy)/float64(total2-total)*cpus < 0.1 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// cpuTicks returns the busy and total ticks of all CPUs from /proc/stat.
func cpuTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, s := range f[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// numCPU counts the cpuN lines of /proc/stat.
func numCPU() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return n
}

// waitCold pauses for settle, then, where the kernel counts the free memory
// it reports to the hypervisor, until that count has stopped growing.
func waitCold(settle time.Duration) {
	time.Sleep(settle)
	last, ok := readInt(reportedKiB)
	if !ok {
		return
	}
	for stable, i := 0, 0; stable < 4 && i < 60; i++ {
		time.Sleep(500 * time.Millisecond)
		cur, _ := readInt(reportedKiB)
		if cur == last {
			stable++
		} else {
			stable, last = 0, cur
		}
	}
}

func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}

// hashFile hashes a file with crypto/sha256 in this process.
func hashFile(path string) measure {
	cpu0 := sidebyside.SelfCPU()
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
	wall := time.Since(start)
	return measure{Usage: sidebyside.Usage{Wall: wall, CPU: sidebyside.SelfCPU() - cpu0}}
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
