package staging

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// names lists the entries of dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestNewFileErrors(t *testing.T) {
	tmp := t.TempDir()
	if err := os.Mkdir(filepath.Join(tmp, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dest string
		want string
	}{
		{"missing directory", filepath.Join(tmp, "nope", "out.tar"), "create output"},
		{"dest is a directory", filepath.Join(tmp, "adir"), "is a directory"},
		{"dest ends in a slash", filepath.Join(tmp, "adir") + "/", "names a directory"},
		{"dest ends in a slash, missing", filepath.Join(tmp, "new") + "/", "names a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFile(tt.dest)
			if err == nil {
				f.Abort()
				t.Fatalf("NewFile(%q) succeeded", tt.dest)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
	if got := names(t, tmp); len(got) != 1 || got[0] != "adir" {
		t.Errorf("failed NewFile calls left %q", got)
	}
}

func TestNewFileTempName(t *testing.T) {
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "out.tar")
	f, err := NewFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if filepath.Dir(f.Name()) != tmp {
		t.Errorf("temp file %s is not beside %s", f.Name(), dest)
	}
	if base := filepath.Base(f.Name()); !strings.HasPrefix(base, ".out.tar.tmp-") {
		t.Errorf("temp file name %q does not start with .out.tar.tmp-", base)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("destination exists before Commit: %v", err)
	}
}

func TestNewFileRelative(t *testing.T) {
	tmp := t.TempDir()
	t.Chdir(tmp)
	f, err := NewFile("rel.tar")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(tmp, "rel.tar")); err != nil || string(b) != "x" {
		t.Errorf("rel.tar = %q, %v", b, err)
	}
}

func TestCommitAndAbort(t *testing.T) {
	tests := []struct {
		name string
		// run does the operations; it returns the errors of the calls that
		// must fail (nil entries for those that must succeed).
		run       func(f *File) []error
		wantErrs  []bool
		wantFile  bool // the destination exists with the content
		preExists bool // the destination holds older content first
	}{
		{
			name:     "commit",
			run:      func(f *File) []error { return []error{f.Commit()} },
			wantErrs: []bool{false}, wantFile: true,
		},
		{
			name:     "commit replaces an existing file",
			run:      func(f *File) []error { return []error{f.Commit()} },
			wantErrs: []bool{false}, wantFile: true, preExists: true,
		},
		{
			name:     "abort",
			run:      func(f *File) []error { f.Abort(); return nil },
			wantFile: false,
		},
		{
			name:     "abort keeps an existing file",
			run:      func(f *File) []error { f.Abort(); return nil },
			wantFile: false, preExists: true,
		},
		{
			name:     "commit twice",
			run:      func(f *File) []error { return []error{f.Commit(), f.Commit()} },
			wantErrs: []bool{false, true}, wantFile: true,
		},
		{
			name:     "abort after commit is a no-op",
			run:      func(f *File) []error { err := f.Commit(); f.Abort(); f.Abort(); return []error{err} },
			wantErrs: []bool{false}, wantFile: true,
		},
		{
			name:     "commit after abort fails",
			run:      func(f *File) []error { f.Abort(); return []error{f.Commit()} },
			wantErrs: []bool{true}, wantFile: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := syscall.Umask(0o077) // Commit must set 0644 whatever the umask
			defer syscall.Umask(old)
			tmp := t.TempDir()
			dest := filepath.Join(tmp, "out.tar")
			if tt.preExists {
				if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f, err := NewFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			tempName := f.Name()
			if _, err := f.WriteString("new content"); err != nil {
				t.Fatal(err)
			}
			errs := tt.run(f)
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("got %d results, want %d", len(errs), len(tt.wantErrs))
			}
			for i, e := range errs {
				if (e != nil) != tt.wantErrs[i] {
					t.Errorf("call %d: error %v, want error: %v", i, e, tt.wantErrs[i])
				}
			}
			if _, err := os.Lstat(tempName); !os.IsNotExist(err) {
				t.Errorf("temp file %s left behind (%v)", tempName, err)
			}
			b, err := os.ReadFile(dest)
			switch {
			case tt.wantFile:
				if err != nil || string(b) != "new content" {
					t.Fatalf("destination = %q, %v; want the new content", b, err)
				}
				fi, err := os.Stat(dest)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != 0o644 {
					t.Errorf("destination mode %v, want 0644", fi.Mode())
				}
			case tt.preExists:
				if string(b) != "old" {
					t.Errorf("destination = %q, %v; want the old content kept", b, err)
				}
			default:
				if !os.IsNotExist(err) {
					t.Errorf("destination exists (%q, %v), want none", b, err)
				}
			}
			want := 0
			if tt.wantFile || tt.preExists {
				want = 1
			}
			if got := names(t, tmp); len(got) != want {
				t.Errorf("directory holds %q, want %d entries", got, want)
			}
		})
	}
}

// TestCommitRenameFails: when the rename cannot happen (the destination has
// become a non-empty directory), Commit fails and removes the temp file.
func TestCommitRenameFails(t *testing.T) {
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "out.tar")
	f, err := NewFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	tempName := f.Name()
	if err := os.MkdirAll(filepath.Join(dest, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("Commit onto a non-empty directory succeeded")
	} else if !strings.Contains(err.Error(), dest) {
		t.Errorf("error %q does not name the destination", err)
	}
	if _, err := os.Lstat(tempName); !os.IsNotExist(err) {
		t.Errorf("temp file left behind after a failed Commit (%v)", err)
	}
	f.Abort() // still safe
}
