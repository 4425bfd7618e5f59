package collateral

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/teeml/teeml/attest"
)

// PCK CA names as used in PCS URLs (pckcrl?ca=...).
const (
	CAProcessor = "processor"
	CAPlatform  = "platform"
)

// Key identifies the collateral for one kind of platform: TEE type (TCB Info
// and QE Identity differ for SGX and TDX), FMSPC (TCB Info) and PCK CA (PCK
// CRL).
type Key struct {
	TEE   attest.TEE // attest.SGX or attest.TDX
	FMSPC string     // 12 hex digits, upper case
	CA    string     // CAProcessor or CAPlatform
}

// Validate checks that every part of the key is well formed; in particular
// a valid key is safe to use in a file name.
func (k Key) Validate() error {
	if k.TEE != attest.SGX && k.TEE != attest.TDX {
		return fmt.Errorf("collateral: key: TEE %q is not sgx or tdx", k.TEE)
	}
	if len(k.FMSPC) != 12 {
		return fmt.Errorf("collateral: key: FMSPC %q is not 12 hex digits", k.FMSPC)
	}
	for _, c := range k.FMSPC {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return fmt.Errorf("collateral: key: FMSPC %q is not upper-case hex", k.FMSPC)
		}
	}
	if k.CA != CAProcessor && k.CA != CAPlatform {
		return fmt.Errorf("collateral: key: CA %q is not %q or %q", k.CA, CAProcessor, CAPlatform)
	}
	return nil
}

func (k Key) String() string { return fmt.Sprintf("%s-%s-%s", k.TEE, k.FMSPC, k.CA) }

// Source provides collateral for a key. Cache implements it; so does the
// PCS client in attest/pcs.
type Source interface {
	Collateral(ctx context.Context, key Key) (*Collateral, error)
}

// ErrNotFound is returned (wrapped) by Cache.Get for absent entries. It
// matches fs.ErrNotExist too.
var ErrNotFound = fmt.Errorf("collateral: not in cache: %w", fs.ErrNotExist)

// Cache is a directory of collateral files, one JSON file (the format Parse
// reads) per Key. Writes are atomic (temporary file, fsync, rename, fsync of
// the directory), so concurrent readers see either the old or the new
// collateral, never a partial file.
type Cache struct {
	dir string
}

// NewCache returns a cache in dir, creating it (mode 0700) if needed.
func NewCache(dir string) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("collateral: cache: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("collateral: cache: %w", err)
	}
	return &Cache{dir: dir}, nil
}

// Dir returns the cache directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) path(k Key) (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	return filepath.Join(c.dir, k.String()+".json"), nil
}

// Get reads and parses the collateral stored for k. It does not check
// signatures or validity dates; the verifier does.
func (c *Cache) Get(k Key) (*Collateral, error) {
	p, err := c.path(k)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	if err != nil {
		return nil, fmt.Errorf("collateral: cache: %w", err)
	}
	col, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("collateral: cache: %s: %w", k, err)
	}
	return col, nil
}

// Collateral implements Source.
func (c *Cache) Collateral(_ context.Context, k Key) (*Collateral, error) { return c.Get(k) }

// Put stores col for k atomically, replacing any previous entry.
func (c *Cache) Put(k Key, col *Collateral) error {
	p, err := c.path(k)
	if err != nil {
		return err
	}
	b, err := col.MarshalJSON()
	if err != nil {
		return fmt.Errorf("collateral: cache: %w", err)
	}
	if err := writeFileAtomic(p, b); err != nil {
		return fmt.Errorf("collateral: cache: %s: %w", k, err)
	}
	return nil
}

// Delete removes the entry for k, if any.
func (c *Cache) Delete(k Key) error {
	p, err := c.path(k)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("collateral: cache: %w", err)
	}
	return nil
}

// Keys lists the keys present in the cache.
func (c *Cache) Keys() ([]Key, error) {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("collateral: cache: %w", err)
	}
	var keys []Key
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		parts := strings.Split(name, "-")
		if len(parts) != 3 {
			continue
		}
		k := Key{TEE: attest.TEE(parts[0]), FMSPC: parts[1], CA: parts[2]}
		if k.Validate() == nil {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename durable.
	d, derr := os.Open(dir)
	if derr != nil {
		return nil
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}
