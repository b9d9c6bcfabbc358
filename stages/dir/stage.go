package dir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stagePrefix starts the names of staging directories.
const stagePrefix = ".occystrap-"

// stage is where an image is written before it is moved into the
// destination. For a new destination it is a sibling directory renamed into
// place at the end; for an existing one (a shared, unique_names directory)
// it is a hidden directory inside it whose entries are moved in one by one.
type stage struct {
	dest     string
	dir      string
	existing bool
	done     bool
}

func newStage(dest string) (*stage, error) {
	dest = filepath.Clean(dest)
	fi, err := os.Stat(dest)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("%s exists and is not a directory", dest)
	case err == nil:
		d, err := os.MkdirTemp(dest, stagePrefix+"*")
		if err != nil {
			return nil, fmt.Errorf("create staging directory: %w", err)
		}
		return &stage{dest: dest, dir: d, existing: true}, nil
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dest)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", parent, err)
		}
		d, err := os.MkdirTemp(parent, stagePrefix+filepath.Base(dest)+"-*")
		if err != nil {
			return nil, fmt.Errorf("create staging directory: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			os.RemoveAll(d)
			return nil, err
		}
		return &stage{dest: dest, dir: d}, nil
	default:
		return nil, fmt.Errorf("stat %s: %w", dest, err)
	}
}

// hasLayer reports whether the destination already holds <name>/layer.tar.
func (s *stage) hasLayer(name string) bool {
	if !s.existing {
		return false
	}
	_, err := os.Lstat(filepath.Join(s.dest, name, "layer.tar"))
	return err == nil
}

// commit records the image in catalog.json and moves the staged entries
// into the destination.
func (s *stage) commit(image, tag, manifestName string) error {
	catalog := map[string]map[string]string{}
	if s.existing {
		b, err := os.ReadFile(filepath.Join(s.dest, "catalog.json"))
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &catalog); err != nil {
				return fmt.Errorf("read %s: %w", filepath.Join(s.dest, "catalog.json"), err)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("read catalog: %w", err)
		}
	}
	if catalog[image] == nil {
		catalog[image] = map[string]string{}
	}
	catalog[image][tag] = manifestName
	if err := writeJSON(filepath.Join(s.dir, "catalog.json"), catalog); err != nil {
		return err
	}

	if !s.existing {
		if err := os.Rename(s.dir, s.dest); err != nil {
			return fmt.Errorf("move output into place: %w", err)
		}
		s.done = true
		return nil
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read staging directory: %w", err)
	}
	// Layers, then config and expanded trees, then the manifest, and the
	// catalog last, so that the catalog never names what is not there.
	order := func(name string) int {
		switch {
		case name == "catalog.json":
			return 3
		case filepath.Ext(name) == ".json":
			return 2
		}
		return 1
	}
	for pass := 1; pass <= 3; pass++ {
		for _, e := range entries {
			if order(e.Name()) != pass {
				continue
			}
			if err := s.move(e.Name()); err != nil {
				return err
			}
		}
	}
	s.abort()
	return nil
}

// move puts one staged entry into the destination, replacing what was
// there, except that a layer directory already present is kept.
func (s *stage) move(name string) error {
	from, to := filepath.Join(s.dir, name), filepath.Join(s.dest, name)
	fi, err := os.Lstat(to)
	if err == nil && fi.IsDir() {
		if _, err := os.Lstat(filepath.Join(to, "layer.tar")); err == nil {
			return nil // a shared layer already in place
		}
		// An old expanded tree: swap it out, then remove it.
		old := filepath.Join(s.dir, ".old-"+name)
		if err := os.Rename(to, old); err != nil {
			return fmt.Errorf("replace %s: %w", to, err)
		}
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("move %s into place: %w", name, err)
	}
	return nil
}

// abort removes the staging directory unless it became the destination.
func (s *stage) abort() {
	if s.done {
		return
	}
	s.done = true
	os.RemoveAll(s.dir)
}
