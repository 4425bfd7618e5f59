package workspace

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/teeml/teeml/internal/atomicfile"
)

// Import limits.
const (
	MaxArchiveSize = 64 << 20  // compressed archive
	MaxFileSize    = 64 << 20  // one extracted file
	MaxTotalSize   = 256 << 20 // all extracted files
	MaxEntries     = 10000
)

// limits are the Import limits in force (tests lower them).
var limits = struct{ archive, file, total, entries int64 }{MaxArchiveSize, MaxFileSize, MaxTotalSize, MaxEntries}

// exported reports whether a workspace file goes into an export: private
// keys (*-key.pem, *.key) never do, nor anything under save/ (model
// states), data/ (collaborators' private data) or logs/, nor lock files.
func exported(rel string, dir bool) bool {
	top, _, _ := strings.Cut(rel, "/")
	switch top {
	case "save", "data", "logs":
		return dir && rel == top // keep the empty directory
	}
	base := path.Base(rel)
	if dir {
		return true
	}
	return !strings.HasSuffix(base, "-key.pem") && !strings.HasSuffix(base, ".key") && !strings.HasSuffix(base, ".lock") && !strings.HasPrefix(base, ".") // temp files of atomicfile too
}

// Export is `teeml fl workspace export`: it writes a tar.gz of workspace ws
// to out (atomically), with the plan, collaborators list and policies but
// no private keys and no save/, data/ or logs/ contents. Entries are sorted
// and carry no owner or time, so the same workspace gives the same archive.
// Symbolic links and other special files are refused.
func Export(ws, out string) error {
	absOut, _ := filepath.Abs(out)
	type item struct {
		rel  string
		full string
		dir  bool
	}
	var items []item
	err := filepath.WalkDir(ws, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(ws, full)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if a, _ := filepath.Abs(full); a == absOut {
			return nil
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file or directory (symlinks are not exported)", rel)
		}
		if !exported(rel, d.IsDir()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		items = append(items, item{rel, full, d.IsDir()})
		if d.IsDir() && !exported(rel+"/x", false) {
			return fs.SkipDir // save/, data/, logs/: the directory only
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("workspace: export %s: %w", ws, err)
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.rel, b.rel) })
	err = atomicfile.WriteFile(out, 0o644, func(w io.Writer) error {
		zw := gzip.NewWriter(w)
		tw := tar.NewWriter(zw)
		for _, it := range items {
			h := &tar.Header{Name: it.rel, Mode: 0o644, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
			if it.dir {
				h.Typeflag, h.Name, h.Mode = tar.TypeDir, it.rel+"/", 0o755
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
				continue
			}
			f, err := os.Open(it.full)
			if err != nil {
				return err
			}
			st, err := f.Stat()
			if err != nil {
				f.Close()
				return err
			}
			h.Typeflag, h.Size = tar.TypeReg, st.Size()
			if err := tw.WriteHeader(h); err != nil {
				f.Close()
				return err
			}
			_, err = io.CopyN(tw, f, st.Size())
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", it.rel, err)
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return fmt.Errorf("workspace: export %s: %w", out, err)
	}
	return nil
}

// checkEntryName accepts a relative, clean, slash-separated archive path.
func checkEntryName(name string) (string, error) {
	clean := strings.TrimSuffix(name, "/")
	switch {
	case clean == "" || clean == ".":
		return "", errors.New("empty path")
	case strings.ContainsRune(name, 0) || strings.Contains(name, "\\"):
		return "", errors.New("NUL or backslash in path")
	case strings.HasPrefix(clean, "/") || filepath.IsAbs(clean) || filepath.VolumeName(clean) != "" || (len(clean) > 1 && clean[1] == ':'):
		return "", errors.New("absolute path")
	}
	for _, part := range strings.Split(clean, "/") {
		if part == ".." {
			return "", errors.New("'..' in path")
		}
		if part == "" || part == "." {
			return "", errors.New("not a clean path")
		}
	}
	return clean, nil
}

// Import is `teeml fl workspace import`: it extracts a workspace archive
// (from Export) into dir, which must not exist or be empty. It refuses
// archives larger than MaxArchiveSize, entries with absolute paths or '..',
// symbolic and hard links, devices and other special files, duplicate
// entries, files over MaxFileSize, more than MaxEntries entries or
// MaxTotalSize bytes in all, and archives without a valid plan/plan.yaml
// (matching plan/plan.hash when there is one). On error
// the partly extracted dir is removed (if Import created it).
func Import(archive, dir string) (err error) {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("workspace: import: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return fmt.Errorf("workspace: import: %w", err)
	} else if st.Size() > limits.archive {
		return fmt.Errorf("workspace: import %s: archive is %d bytes, at most %d", archive, st.Size(), limits.archive)
	}
	created := false
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("workspace: import: %s exists and is not empty", dir)
	} else if errors.Is(err, fs.ErrNotExist) {
		created = true
	} else if err != nil {
		return fmt.Errorf("workspace: import: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("workspace: import: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			os.RemoveAll(dir)
		} else {
			// Leave the (previously empty) directory empty again.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}()
	fail := func(name, format string, args ...any) error {
		return fmt.Errorf("workspace: import %s: entry %q: %s", archive, name, fmt.Sprintf(format, args...))
	}
	zr, err := gzip.NewReader(io.LimitReader(f, limits.archive))
	if err != nil {
		return fmt.Errorf("workspace: import %s: %w", archive, err)
	}
	tr := tar.NewReader(zr)
	seen := map[string]bool{}
	var total int64
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("workspace: import %s: %w", archive, err)
		}
		if int64(n) >= limits.entries {
			return fmt.Errorf("workspace: import %s: more than %d entries", archive, limits.entries)
		}
		name := strings.TrimPrefix(h.Name, "./") // tar -C ws . style archives
		if (name == "" || name == ".") && h.Typeflag == tar.TypeDir {
			continue
		}
		rel, err := checkEntryName(name)
		if err != nil {
			return fail(h.Name, "%v", err)
		}
		if seen[rel] {
			return fail(h.Name, "duplicate entry")
		}
		seen[rel] = true
		full := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := mkdirIn(dir, rel); err != nil {
				return fail(h.Name, "%v", err)
			}
		case tar.TypeReg:
			if h.Size < 0 || h.Size > limits.file {
				return fail(h.Name, "%d bytes, at most %d", h.Size, limits.file)
			}
			if total += h.Size; total > limits.total {
				return fail(h.Name, "archive expands beyond %d bytes", limits.total)
			}
			if parent := path.Dir(rel); parent != "." {
				if err := mkdirIn(dir, parent); err != nil {
					return fail(h.Name, "%v", err)
				}
			}
			out, err := os.OpenFile(full, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return fail(h.Name, "%v", err)
			}
			written, err := io.Copy(out, io.LimitReader(tr, limits.file+1))
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fail(h.Name, "%v", err)
			}
			if written != h.Size {
				return fail(h.Name, "size %d does not match header %d", written, h.Size)
			}
		case tar.TypeSymlink, tar.TypeLink:
			return fail(h.Name, "links are not allowed")
		default:
			return fail(h.Name, "type %q not allowed (only files and directories)", h.Typeflag)
		}
	}
	if !seen[PlanFile] {
		return fmt.Errorf("workspace: import %s: no %s: not a workspace archive", archive, PlanFile)
	}
	for _, d := range dirs {
		if err := mkdirIn(dir, d); err != nil {
			return fmt.Errorf("workspace: import: %w", err)
		}
	}
	// The plan must be valid and, when frozen, match its hash.
	if _, err := LoadPlan(dir); err != nil {
		return fmt.Errorf("workspace: import %s: %w", archive, err)
	}
	return nil
}

// mkdirIn creates rel under root, refusing to go through anything that is
// not a real directory (a file, or a symlink planted earlier).
func mkdirIn(root, rel string) error {
	cur := root
	for _, part := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, part)
		st, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case !st.IsDir():
			return fmt.Errorf("%s is not a directory", part)
		}
	}
	return nil
}
