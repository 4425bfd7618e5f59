package rootkey

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/explain"
)

// fileKeySize is the size of a simulation root key file: one raw AES-256 key.
const fileKeySize = 32

// CreateFile writes a new random 32-byte root key to path with mode 0600 for
// simulation. It never replaces an existing file (a lost root key makes every
// stored key unreadable), and a failure leaves no file behind: the key is
// written and fsynced under a temporary name, then hard-linked to path, which
// fails if path exists.
func CreateFile(path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Lstat(path); err == nil {
		return explain.Errorf(ErrKeyExists, "rootkey: file %s already exists; refusing to replace a root key", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	key := make([]byte, fileKeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("rootkey: generating key: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the link, only the temporary name goes
	// Restrict before writing so the key is never readable by others.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return explain.Errorf(ErrKeyExists, "rootkey: file %s already exists; refusing to replace a root key", path)
		}
		return fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable
		d.Close()
	}
	return nil
}

// openFile loads a simulation root key. The file must be a regular file of
// exactly 32 bytes that neither group nor others can access: a key others
// can read protects nothing, and a file of another size is not one we wrote.
func openFile(path string) (*softKey, error) {
	if path == "" {
		return nil, errors.New("rootkey: file: empty path (want file:PATH)")
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, explain.Errorf(err, "rootkey: file %s does not exist (create it with `teeml kms rootkey init --root-key file:%s`)", path, path)
		}
		return nil, fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("rootkey: file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("rootkey: file %s has mode %04o; group and others must have no access (chmod 600)", path, perm)
	}
	if st.Size() != fileKeySize {
		return nil, fmt.Errorf("rootkey: file %s is %d bytes, want exactly %d", path, st.Size(), fileKeySize)
	}
	key := make([]byte, fileKeySize)
	defer clear(key)
	// Read one byte more than expected so a file growing under us is noticed.
	buf := make([]byte, fileKeySize+1)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("rootkey: file %s: %w", path, err)
	}
	if n != fileKeySize {
		return nil, fmt.Errorf("rootkey: file %s is %d bytes, want exactly %d", path, n, fileKeySize)
	}
	copy(key, buf)
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return newSoftKey(KindFile, key, fmt.Sprintf("file %s (%s)", abs, sim.Notice("not sealed to a TEE or held by an HSM")), true)
}
