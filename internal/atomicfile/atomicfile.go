// Package atomicfile replaces files atomically: readers see either the old
// content or the complete new content, never a partial write, and a failed or
// interrupted write leaves the old file (or no file) and no temporary file
// behind.
//
// The new content is written to a temporary file in the target's directory
// (so the final rename never crosses a file system), flushed and fsynced,
// given its permissions, renamed over the target, and then the directory is
// fsynced so that the rename itself survives a crash.
//
// If path is a symbolic link, the link itself is replaced by a regular file;
// the file it pointed to is left untouched.
package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// tempPattern is the os.CreateTemp pattern for a target named base. The
// leading dot keeps half-written files out of casual directory listings.
func tempPattern(base string) string { return "." + base + ".tmp-*" }

// WriteFile atomically replaces path with what write produces.
//
// write gets a buffered writer onto a temporary file in path's directory; if
// it returns an error (or panics), the temporary file is removed, path is left
// as it was, and the error is returned unchanged. On success the file has
// exactly the permission bits perm (they are set with chmod, so the process
// umask does not apply), is fsynced, is renamed over path, and path's
// directory is fsynced.
func WriteFile(path string, perm os.FileMode, write func(w io.Writer) error) error {
	dir, base := filepath.Split(path)
	if base == "" {
		return &os.PathError{Op: "atomicfile", Path: path, Err: errors.New("path names a directory")}
	}
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPattern(base))
	if err != nil {
		return err
	}
	tmp := f.Name()
	committed, closed := false, false
	defer func() {
		// Runs on error returns and on panics in write alike.
		if !committed {
			if !closed {
				_ = f.Close()
			}
			_ = os.Remove(tmp)
		}
	}()

	bw := bufio.NewWriterSize(f, 256<<10)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(perm.Perm()); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	closed = true
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	committed = true
	return syncDir(dir)
}

// WriteBytes atomically replaces path with data; see WriteFile.
func WriteBytes(path string, data []byte, perm os.FileMode) error {
	return WriteFile(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// syncDir fsyncs a directory so a rename in it is durable. File systems and
// platforms that cannot fsync a directory are tolerated.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	cerr := d.Close()
	if err != nil {
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
			return nil
		}
		return err
	}
	return cerr
}
