package sidebyside

import (
	"encoding/json"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/occystrap/occystrap/testdata/imagegen"
)

// HelperArg, as the first argument, makes a command run one of its
// helpers (see Helper) instead of itself.
const HelperArg = "__helper"

// IsHelper reports whether this process was started as a helper; Helper
// should then be called with os.Args[2:].
func IsHelper() bool { return len(os.Args) > 1 && os.Args[1] == HelperArg }

// Image is what a command needs to know of a generated image.
type Image struct {
	RepoTag      string
	ConfigDigest string
	Layers       int
}

// Generate writes a docker-save tarball of imagegen.Big(size, layers) at
// path, with data "random" or "mixed" (see Mixed), in a helper process:
// generating mixed data holds a buffer as large as the largest file, which
// would otherwise raise every child's measured peak RSS (see Run).
func Generate(path, size string, layers int, data string) (Image, error) {
	self, err := os.Executable()
	if err != nil {
		return Image{}, err
	}
	cmd := exec.Command(self, HelperArg, "generate", path, size, strconv.Itoa(layers), data)
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return Image{}, err
	}
	var im Image
	return im, json.Unmarshal(outb, &im)
}

// Floor runs a helper that does nothing, logging to logPath: its peak RSS
// is the least any child's can read.
func Floor(logPath string) (Usage, error) {
	self, err := os.Executable()
	if err != nil {
		return Usage{}, err
	}
	return Run([]string{self, HelperArg, "nothing"}, logPath)
}

// Warm faults in and frees n bytes of memory in a helper process (see
// TouchMemory), logging to logPath.
func Warm(n int64, logPath string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	_, err = Run([]string{self, HelperArg, "touch", strconv.FormatInt(n, 10)}, logPath)
	return err
}

// Helper runs a helper: "generate PATH SIZE LAYERS DATA" writes the image
// and prints its description (an Image) as JSON; "touch BYTES" faults in
// and frees that much memory; "nothing" does nothing (its peak RSS is the
// floor).
func Helper(args []string) {
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
		if err := TouchMemory(n); err != nil {
			log.Fatal(err)
		}
	case "generate":
		n, err := ParseSize(args[2])
		if err != nil {
			log.Fatal(err)
		}
		layers, err := strconv.Atoi(args[3])
		if err != nil {
			log.Fatal(err)
		}
		img := imagegen.Big(n, layers)
		if args[4] == "mixed" {
			img = Mixed(img)
		}
		res, err := imagegen.WriteFile(args[1], img, imagegen.Legacy)
		if err != nil {
			log.Fatal(err)
		}
		json.NewEncoder(os.Stdout).Encode(Image{RepoTag: img.RepoTag,
			ConfigDigest: res.ConfigDigest.String(), Layers: len(res.DiffIDs)})
	default:
		log.Fatalf("helper: unknown %q", args[0])
	}
}

// Mixed returns img with every generated file's contents taken from one
// shared buffer in which each 8 KiB block is 2 KiB of random bytes and
// 6 KiB of text made of a small vocabulary: gzip shrinks it to 56%,
// between a typical image's binaries and its text. Files start at different
// offsets of the buffer, so no two are alike within gzip's 32 KiB window,
// and layers stay distinct. imagegen copies Data as it writes, so this is
// as cheap as the random data, and the buffer (the largest file plus
// 4 MiB) is the only memory it takes.
func Mixed(img imagegen.Image) imagegen.Image {
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
