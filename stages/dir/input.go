package dir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/engine/flow"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/stages/tarball"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

// maxMetadataSize bounds what is read into memory from a directory's JSON
// files (catalog.json, manifests, configs): real ones are kilobytes, and a
// hostile directory must not make us allocate gigabytes.
const maxMetadataSize = 64 << 20

// Selection says which image of a directory an Input reads.
type Selection struct {
	// Image is the image's name as catalog.json lists it
	// ("example.com/test/app", "busybox"). "" means the only image (or the
	// only one that has Tag).
	Image string
	// Tag is the image's tag in catalog.json. "" means the image's only
	// tag, else "latest".
	Tag string
}

// Input reads one image from a directory written by the dir:// output (or
// by the original tool's): catalog.json names each image's manifest file,
// which names the config and the <name>/layer.tar files. Every file is
// opened through an os.Root on the directory, so neither a path in a
// manifest nor a symlink can make it read anything outside. Layers are
// streamed from their files, verified against the config's diff IDs.
type Input struct {
	path string
	sel  Selection
	log  zerolog.Logger
}

// NewInput returns an Input reading the image sel names from the directory
// at path. It does no I/O.
func NewInput(path string, sel Selection, env stages.Env) *Input {
	return &Input{path: path, sel: sel, log: env.Log}
}

// Image is what Describe learns of a directory's image without reading
// its layers.
type Image struct {
	Reference  string        // IMAGE:TAG from catalog.json, else the manifest's RepoTags; "" if none
	Manifest   string        // the manifest file's name in the directory
	Config     []byte        // raw config bytes, as the file holds them
	ConfigName string        // the config file's path in the directory
	Parsed     ocispec.Image // the parsed config
	Layers     []string      // layer paths from the manifest, in image order
}

// dirManifest is the one object of a manifest file's list.
type dirManifest struct {
	Config    string   `json:"Config"`
	Layers    []string `json:"Layers"`
	RepoTags  []string `json:"RepoTags"`
	ImageName string   `json:"ImageName"`
}

// Describe reads catalog.json, the selected image's manifest file and its
// config. It reads no layer.
func (in *Input) Describe(ctx context.Context) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, err := in.openRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return in.describe(root)
}

func (in *Input) openRoot() (*os.Root, error) {
	root, err := os.OpenRoot(in.path)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", in.path, err)
	}
	return root, nil
}

func (in *Input) describe(root *os.Root) (*Image, error) {
	img, m, err := in.selectManifest(root)
	if err != nil {
		return nil, err
	}
	if m.Config == "" {
		return nil, fmt.Errorf("%s: %s names no config", in.path, img.Manifest)
	}
	if err := in.checkPath(m.Config, "the config "+img.Manifest+" names"); err != nil {
		return nil, err
	}
	cfg, err := in.readFile(root, m.Config)
	if err != nil {
		return nil, err
	}
	img.Config, img.ConfigName, img.Layers = cfg, m.Config, m.Layers
	if err := json.Unmarshal(cfg, &img.Parsed); err != nil {
		return nil, fmt.Errorf("%s: config %s is not valid JSON: %w", in.path, m.Config, err)
	}
	if n, d := len(m.Layers), len(img.Parsed.RootFS.DiffIDs); n != d {
		return nil, fmt.Errorf("%s: %s lists %d layers but its config %s has %d diff IDs", in.path, img.Manifest, n, m.Config, d)
	}
	for i, d := range img.Parsed.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("%s: config %s: diff ID %d (%q) is not a sha256 digest", in.path, m.Config, i, d)
		}
	}
	for i, p := range m.Layers {
		if err := in.checkPath(p, fmt.Sprintf("layer %d of %s", i, img.Manifest)); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// selectManifest finds the selected image's manifest file through
// catalog.json, or takes manifest.json when there is no catalog, and reads
// it.
func (in *Input) selectManifest(root *os.Root) (*Image, *dirManifest, error) {
	var catalog map[string]map[string]string
	err := in.readJSON(root, "catalog.json", &catalog)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := root.Stat("manifest.json"); errors.Is(serr, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s has neither catalog.json nor manifest.json: it is not a directory written by dir://", in.path)
		}
		img, m, err := in.readManifest(root, "manifest.json")
		if err != nil {
			return nil, nil, err
		}
		if in.sel != (Selection{}) {
			image, tag := splitRef(img.Reference)
			ok := img.Reference != "" && (selected(in.sel, image, tag) ||
				in.sel.Image != "" && (in.sel.Tag == "" || in.sel.Tag == tag) && holds(m, in.sel.Image, tag))
			if !ok {
				return nil, nil, fmt.Errorf("%s has no catalog.json, and its manifest.json holds %s, not the image selected (%s)", in.path, describeRef(img.Reference), describeSel(in.sel))
			}
		}
		return img, m, nil
	case err != nil:
		return nil, nil, err
	}

	image, tag, err := pick(catalog, in.sel)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", in.path, err)
	}
	name := catalog[image][tag]
	if err := in.checkPath(name, "the manifest catalog.json names for "+joinRef(image, tag)); err != nil {
		return nil, nil, err
	}
	img, m, err := in.readManifest(root, name)
	if err != nil {
		return nil, nil, err
	}
	if !holds(m, image, tag) {
		return nil, nil, fmt.Errorf("%s: catalog.json lists %s in %s, but %s now holds %s (an image written later to the same directory without unique_names replaced it): %s's manifest is lost",
			in.path, joinRef(image, tag), name, name, describeRef(img.Reference), joinRef(image, tag))
	}
	img.Reference = joinRef(image, tag)
	if len(m.RepoTags) == 0 && image == "unknown" && tag == "unknown" {
		img.Reference = "" // what the output lists an image without a reference as
	}
	return img, m, nil
}

// readManifest reads a manifest file: a JSON list whose first object is
// the image.
func (in *Input) readManifest(root *os.Root, name string) (*Image, *dirManifest, error) {
	var list []dirManifest
	if err := in.readJSON(root, name, &list); err != nil {
		return nil, nil, err
	}
	if len(list) == 0 {
		return nil, nil, fmt.Errorf("%s: %s lists no image", in.path, name)
	}
	m := &list[0]
	if len(list) > 1 {
		in.log.Warn().Int("images", len(list)).Str("manifest", name).Strs("using", m.RepoTags).Msg("manifest holds several images; using the first")
	}
	img := &Image{Manifest: name}
	switch {
	case len(m.RepoTags) > 0 && m.ImageName != "":
		_, tag := splitRef(m.RepoTags[0])
		img.Reference = joinRef(m.ImageName, tag)
	case len(m.RepoTags) > 0:
		img.Reference = m.RepoTags[0]
	case m.ImageName != "":
		img.Reference = m.ImageName + ":latest"
	}
	return img, m, nil
}

// readJSON reads a small JSON file of the directory into v. Errors wrap
// fs.ErrNotExist when the file is missing.
func (in *Input) readJSON(root *os.Root, name string, v any) error {
	b, err := in.readFile(root, name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %s is not valid JSON: %w", in.path, name, err)
	}
	return nil
}

// readFile reads a small file of the directory whole, through root.
func (in *Input) readFile(root *os.Root, name string) ([]byte, error) {
	f, err := in.open(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(in.path, name), err)
	}
	if len(b) > maxMetadataSize {
		return nil, fmt.Errorf("%s: %s is larger than the %d bytes allowed for metadata", in.path, name, maxMetadataSize)
	}
	return b, nil
}

// open opens a regular file of the directory through root, which refuses
// any path that leads outside it, through ".." or a symlink.
func (in *Input) open(root *os.Root, name string) (*os.File, error) {
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		if escapes(err) {
			return nil, fmt.Errorf("%s: %s leads outside the directory (through .. or a symlink), which is refused: %w", in.path, name, err)
		}
		return nil, fmt.Errorf("open %s in %s: %w", name, in.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s in %s: %w", name, in.path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %s is not a regular file (%s)", in.path, name, fi.Mode().Type())
	}
	return f, nil
}

// escapes reports whether err is os.Root's refusal of a path that leaves
// the root. The os package has no exported sentinel for it.
func escapes(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == "path escapes from parent"
}

// checkPath refuses a path from a manifest or catalog that is absolute or
// climbs out of the directory with "..": such paths are never written by
// dir://, and reading them could expose files outside the directory.
// (Symlinks are caught when the file is opened through the root.)
func (in *Input) checkPath(p, what string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s: %s is an empty path", in.path, what)
	case path.IsAbs(p) || filepath.IsAbs(p):
		return fmt.Errorf("%s: %s is an absolute path (%q), which is refused: paths must be relative to the directory", in.path, what, p)
	case !filepath.IsLocal(filepath.FromSlash(p)):
		return fmt.Errorf("%s: %s (%q) leads outside the directory, which is refused", in.path, what, p)
	}
	return nil
}

// pick chooses the catalog entry sel names: the image (all of them when
// sel.Image is ""), narrowed to sel.Tag when given; of several tags of one
// image, "latest".
func pick(catalog map[string]map[string]string, sel Selection) (image, tag string, err error) {
	all := entries(catalog, Selection{})
	if len(all) == 0 {
		return "", "", errors.New("catalog.json lists no image")
	}
	if sel.Image != "" && catalog[sel.Image] == nil {
		return "", "", fmt.Errorf("image %q is not in catalog.json, which lists %s", sel.Image, all)
	}
	found := entries(catalog, sel)
	switch {
	case len(found) == 1:
		return found[0].image, found[0].tag, nil
	case len(found) == 0 && sel.Image != "":
		return "", "", fmt.Errorf("image %q has no tag %q in catalog.json, which lists %s", sel.Image, sel.Tag, all)
	case len(found) == 0:
		return "", "", fmt.Errorf("no image has tag %q in catalog.json, which lists %s", sel.Tag, all)
	case sel.Image != "":
		if _, ok := catalog[sel.Image]["latest"]; ok {
			return sel.Image, "latest", nil
		}
		return "", "", fmt.Errorf("image %q has several tags in catalog.json (%s): choose one with ?tag=TAG", sel.Image, found)
	}
	return "", "", fmt.Errorf("catalog.json lists several images (%s): choose one with ?image=NAME&tag=TAG", found)
}

// entry is one image and tag of a catalog.
type entry struct{ image, tag string }

// entryList is a list of catalog entries, printed as "IMAGE:TAG, ...".
type entryList []entry

func (l entryList) String() string {
	refs := make([]string, len(l))
	for i, e := range l {
		refs[i] = joinRef(e.image, e.tag)
	}
	return strings.Join(refs, ", ")
}

// entries lists the catalog's entries that sel matches, sorted.
func entries(catalog map[string]map[string]string, sel Selection) entryList {
	var out entryList
	for image, tags := range catalog {
		if sel.Image != "" && image != sel.Image {
			continue
		}
		for tag := range tags {
			if sel.Tag == "" || tag == sel.Tag {
				out = append(out, entry{image, tag})
			}
		}
	}
	slices.SortFunc(out, func(a, b entry) int {
		return strings.Compare(joinRef(a.image, a.tag), joinRef(b.image, b.tag))
	})
	return out
}

// selected reports whether image and tag are what sel asks for.
func selected(sel Selection, image, tag string) bool {
	return (sel.Image == "" || sel.Image == image) && (sel.Tag == "" || sel.Tag == tag)
}

// holds reports whether a manifest file is that of image:tag, as far as
// its RepoTags and ImageName tell: ours write the reference as `docker
// save` would, the original's only the name's last component.
func holds(m *dirManifest, image, tag string) bool {
	if m.ImageName != "" && image != "" && m.ImageName != image {
		return false
	}
	if len(m.RepoTags) == 0 || image == "" {
		return true
	}
	rt, ref := m.RepoTags[0], joinRef(image, tag)
	return rt == ref || rt == tarball.Familiar(ref) || rt == path.Base(image)+":"+tag
}

// joinRef makes a reference of a catalog's image and tag: a tag that is a
// digest ("sha256:...") is joined with "@".
func joinRef(image, tag string) string {
	if tag == "" {
		return image
	}
	if strings.Contains(tag, ":") {
		return image + "@" + tag
	}
	return image + ":" + tag
}

func describeRef(ref string) string {
	if ref == "" {
		return "an image without a name"
	}
	return ref
}

func describeSel(sel Selection) string {
	var parts []string
	if sel.Image != "" {
		parts = append(parts, "image="+sel.Image)
	}
	if sel.Tag != "" {
		parts = append(parts, "tag="+sel.Tag)
	}
	return strings.Join(parts, ", ")
}

// Run sends the image, config and layer elements on out. Every layer file
// is located before anything is sent, so a directory that lacks one fails
// before any output is started; each is then opened as it is sent, and
// reading its body to the end verifies it against its diff ID.
func (in *Input) Run(ctx context.Context, out chan<- elements.Element) error {
	root, err := in.openRoot()
	if err != nil {
		return err
	}
	defer root.Close()
	img, err := in.describe(root)
	if err != nil {
		return err
	}
	in.log.Info().Str("image", img.Reference).Int("layers", len(img.Layers)).Str("manifest", img.Manifest).Msg("reading directory")
	for i, p := range img.Layers {
		f, err := in.open(root, p)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		f.Close()
	}

	if err := flow.Send(ctx, out, elements.Element{Kind: elements.KindImage, Name: img.Reference, Index: -1, Size: -1}); err != nil {
		return err
	}
	cd := digest.FromBytes(img.Config)
	if want := path.Base(img.ConfigName); want != cd.Encoded()+".json" && want != cd.Encoded() {
		// The original wrote configs re-serialised, under their old name.
		in.log.Debug().Str("config", img.ConfigName).Str("digest", cd.String()).Msg("config file's name is not its digest; sending it under its digest")
	}
	if err := flow.Send(ctx, out, elements.Element{
		Kind: elements.KindConfig, Name: cd.Encoded() + ".json", Index: -1,
		MediaType: ocispec.MediaTypeImageConfig, Digest: cd,
		Size: int64(len(img.Config)), Body: io.NopCloser(bytes.NewReader(img.Config)),
	}); err != nil {
		return err
	}
	for i, p := range img.Layers {
		f, err := in.open(root, p)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("stat %s in %s: %w", p, in.path, err)
		}
		el := elements.Element{
			Kind: elements.KindLayer, Name: layerName(p), Index: i,
			MediaType: elements.LayerMediaType(elements.None),
			DiffID:    img.Parsed.RootFS.DiffIDs[i],
			Digest:    img.Parsed.RootFS.DiffIDs[i],
			Size:      fi.Size(),
			Source:    &elements.FileRange{File: f, Offset: 0, Length: fi.Size()},
		}
		el.Body = elements.NewVerifier(&fileBody{SectionReader: io.NewSectionReader(f, 0, fi.Size()), f: f}, el.Digest, filepath.Join(in.path, p))
		in.log.Debug().Str("layer", el.Name).Int64("size", el.Size).Msg("sending layer")
		if err := flow.Send(ctx, out, el); err != nil {
			return err
		}
	}
	return nil
}

// fileBody reads a layer file by offset (so that an output copying its
// Source range in the kernel does not disturb it); closing it closes the
// file.
type fileBody struct {
	*io.SectionReader
	f    *os.File
	once sync.Once
	err  error
}

func (b *fileBody) Close() error {
	b.once.Do(func() { b.err = b.f.Close() })
	return b.err
}

// layerName is the name a layer goes by, as for tarball inputs: the
// directory of <name>/layer.tar, else the file's base name.
func layerName(p string) string {
	p = path.Clean(p)
	if strings.HasSuffix(p, "/layer.tar") {
		return path.Base(path.Dir(p))
	}
	return path.Base(p)
}
