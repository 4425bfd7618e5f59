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

// runState names why rel is a party's own run state, which never leaves the
// workspace in either direction ("" when it is not): a run directory
// (runs/<hash>/: state/ checkpoints — the global model, plaintext when the
// run is not encrypted — metrics.jsonl, reports), any metrics.jsonl, and a
// key broker's directory and stores (kms/, *.db and their -wal/-shm,
// *.sqlite, audit anchors). An imported checkpoint would make an aggregator
// "resume" a run it never trained and publish that model as final.
func runState(rel string) string {
	top, _, _ := strings.Cut(rel, "/")
	base := path.Base(rel)
	switch {
	case top == "runs":
		return "run state (checkpoints, metrics and reports of a run) never travels in a workspace archive"
	case top == "kms":
		return "a key broker's directory (store, root key, audit anchor) never travels in a workspace archive"
	case base == "metrics.jsonl":
		return "a run's metrics file never travels in a workspace archive"
	}
	for _, sfx := range []string{".db", ".db-wal", ".db-shm", ".db-journal", ".sqlite", ".anchor"} {
		if strings.HasSuffix(base, sfx) {
			return "a database or key broker store never travels in a workspace archive"
		}
	}
	return ""
}

// exported reports whether a workspace file goes into an export: only what
// a receiving party needs (plan, policies, templates, certificates and
// bundles). Private keys (*-key.pem, *.key) never do, nor anything under
// save/ (model states), data/ (collaborators' private data) or logs/, nor
// run state (see runState), nor lock and temporary files.
func exported(rel string, dir bool) bool {
	top, _, _ := strings.Cut(rel, "/")
	switch top {
	case "save", "data", "logs":
		return dir && rel == top // keep the empty directory
	}
	if runState(rel) != "" {
		return false
	}
	base := path.Base(rel)
	if dir {
		return true
	}
	return !strings.HasSuffix(base, "-key.pem") && !strings.HasSuffix(base, ".key") && !strings.HasSuffix(base, ".lock") && !strings.HasPrefix(base, ".") // temp files of atomicfile too
}

// Export is `teeml fl workspace export`: it writes a tar.gz of workspace ws
// to out (atomically), with the plan, collaborators list and policies but
// no private keys, no save/, data/ or logs/ contents and no run state
// (runs/, metrics.jsonl, kms/, databases). Entries are sorted
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
// archives larger than MaxArchiveSize, run state (runs/…, metrics.jsonl,
// kms/…, databases: see runState), entries with absolute paths or '..',
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
	zr, err := gzip.NewReader(io.LimitReader(f, limits.archive))
	if err != nil {
		return fmt.Errorf("workspace: import %s: %w", archive, err)
	}
	x := &extractor{tr: tar.NewReader(zr), archive: archive, dir: dir, seen: map[string]bool{}}
	if err := x.extractAll(); err != nil {
		return err
	}
	if !x.seen[PlanFile] {
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

// extractor unpacks a workspace archive's entries into dir.
type extractor struct {
	tr      *tar.Reader
	archive string
	dir     string
	seen    map[string]bool // entry paths, relative and slash-separated
	total   int64           // bytes of regular files so far
}

// fail is an error about the archive entry called name.
func (x *extractor) fail(name, format string, args ...any) error {
	return fmt.Errorf("workspace: import %s: entry %q: "+format, append([]any{x.archive, name}, args...)...)
}

// extractAll extracts every entry, at most limits.entries of them.
func (x *extractor) extractAll() error {
	for n := 0; ; n++ {
		h, err := x.tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("workspace: import %s: %w", x.archive, err)
		}
		if int64(n) >= limits.entries {
			return fmt.Errorf("workspace: import %s: more than %d entries", x.archive, limits.entries)
		}
		if err := x.extract(h); err != nil {
			return err
		}
	}
}

// extract extracts one entry: a directory or a regular file, under a
// checked relative name not seen before.
func (x *extractor) extract(h *tar.Header) error {
	name := strings.TrimPrefix(h.Name, "./") // tar -C ws . style archives
	if (name == "" || name == ".") && h.Typeflag == tar.TypeDir {
		return nil
	}
	rel, err := checkEntryName(name)
	if err != nil {
		return x.fail(h.Name, "%w", err)
	}
	if why := runState(rel); why != "" {
		return x.fail(h.Name, "%s", why)
	}
	if x.seen[rel] {
		return x.fail(h.Name, "duplicate entry")
	}
	x.seen[rel] = true
	switch h.Typeflag {
	case tar.TypeDir:
		if err := mkdirIn(x.dir, rel); err != nil {
			return x.fail(h.Name, "%w", err)
		}
	case tar.TypeReg:
		return x.extractFile(h, rel)
	case tar.TypeSymlink, tar.TypeLink:
		return x.fail(h.Name, "links are not allowed")
	default:
		return x.fail(h.Name, "type %q not allowed (only files and directories)", h.Typeflag)
	}
	return nil
}

// extractFile writes the regular file entry h to rel, within the size
// limits, creating its parent directories.
func (x *extractor) extractFile(h *tar.Header, rel string) error {
	if h.Size < 0 || h.Size > limits.file {
		return x.fail(h.Name, "%d bytes, at most %d", h.Size, limits.file)
	}
	if x.total += h.Size; x.total > limits.total {
		return x.fail(h.Name, "archive expands beyond %d bytes", limits.total)
	}
	if parent := path.Dir(rel); parent != "." {
		if err := mkdirIn(x.dir, parent); err != nil {
			return x.fail(h.Name, "%w", err)
		}
	}
	out, err := os.OpenFile(filepath.Join(x.dir, filepath.FromSlash(rel)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return x.fail(h.Name, "%w", err)
	}
	written, err := io.Copy(out, io.LimitReader(x.tr, limits.file+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return x.fail(h.Name, "%w", err)
	}
	if written != h.Size {
		return x.fail(h.Name, "size %d does not match header %d", written, h.Size)
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
