package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileSuccess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	err := WriteFile(path, 0o640, func(w io.Writer) error {
		for i := range 3 {
			if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "line 0\nline 1\nline 2\n"; string(got) != want {
		t.Fatalf("content %q, want %q", got, want)
	}
	if runtime.GOOS != "windows" {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o640 {
			t.Fatalf("perm %v, want 0640", st.Mode().Perm())
		}
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "out.bin" {
		t.Fatalf("directory holds %v, want only out.bin", names)
	}
}

func TestWriteBytes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b")
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300_000) // larger than the internal buffer
	if err := WriteBytes(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	// Empty content is a valid file too.
	if err := WriteBytes(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 0 {
		t.Fatalf("after empty write: %v, %v", st, err)
	}
}

func TestWriteFileRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteBytes("rel.txt", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "rel.txt")); err != nil || string(got) != "x" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	boom := errors.New("boom")
	err := WriteFile(path, 0o644, func(w io.Writer) error {
		// Write more than the internal buffer so part of it reaches the
		// temporary file before the failure.
		if _, err := w.Write(make([]byte, 1<<20)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("directory holds %v after failed write, want nothing", names)
	}
}

func TestWriteFilePanicLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic did not propagate")
			}
		}()
		_ = WriteFile(path, 0o644, func(w io.Writer) error {
			_, _ = w.Write([]byte("partial"))
			panic("write func panicked")
		})
	}()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("directory holds %v after panicking write, want nothing", names)
	}
}

func TestWriteFileFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model")
	if err := WriteBytes(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, 0o644, func(w io.Writer) error {
		_, _ = w.Write([]byte("new half"))
		return errors.New("disk full (simulated)")
	})
	if err == nil {
		t.Fatal("expected error")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "old content" {
		t.Fatalf("old file changed to %q", got)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v, want only model", names)
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model")
	if err := WriteBytes(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A reader that opened the old file keeps seeing the old content: the
	// new file is a different inode renamed over the name, not an in-place
	// rewrite.
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldStat, err := old.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(path, []byte("new content, longer than before"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "new content, longer than before" {
		t.Fatalf("content %q", got)
	}
	if runtime.GOOS != "windows" {
		newStat, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if os.SameFile(oldStat, newStat) {
			t.Fatal("file was rewritten in place, not replaced")
		}
		if newStat.Mode().Perm() != 0o600 {
			t.Fatalf("perm %v, want 0600", newStat.Mode().Perm())
		}
		oldData, err := io.ReadAll(old)
		if err != nil {
			t.Fatal(err)
		}
		if string(oldData) != "old content" {
			t.Fatalf("open handle sees %q", oldData)
		}
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v, want only model", names)
	}
}

// Concurrent writers and readers: every read sees one writer's complete
// content, never a mix or a truncation.
func TestWriteFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shared")
	contents := make([][]byte, 4)
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 200_000+i)
	}
	if err := WriteBytes(path, contents[0], 0o644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range contents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if err := WriteBytes(path, contents[i], 0o644); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		defer close(readerErr)
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := os.ReadFile(path)
			if err != nil {
				readerErr <- err
				return
			}
			ok := false
			for _, c := range contents {
				if bytes.Equal(got, c) {
					ok = true
				}
			}
			if !ok {
				readerErr <- fmt.Errorf("read a torn file of %d bytes", len(got))
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v, want only shared", names)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "no", "such", "dir", "f")
	called := false
	err := WriteFile(path, 0o644, func(w io.Writer) error { called = true; return nil })
	if err == nil {
		t.Fatal("expected error for missing directory")
	}
	if called {
		t.Fatal("write func called although no temp file could be made")
	}
}

func TestWriteFileDirectoryPath(t *testing.T) {
	dir := t.TempDir()
	if err := WriteBytes(dir+string(filepath.Separator), []byte("x"), 0o644); err == nil {
		t.Fatal("expected error for a path ending in a separator")
	}
	// Renaming a file over an existing directory fails; nothing is left.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(sub, []byte("x"), 0o644); err == nil {
		t.Fatal("expected error replacing a directory")
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "sub" {
		t.Fatalf("directory holds %v", names)
	}
}
