package sealed

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/explain"
)

// DataKeySize is the length of every data key: AES-256.
const DataKeySize = 32

// KeySource hands out data keys. The key broker implements it over RA-TLS
// (a data key is released only to callers whose attestation satisfies the
// key's release policy); LocalKeys implements it from a key file for tests
// and simulation.
type KeySource interface {
	// NewDataKey returns a fresh DataKeySize-byte data key for keyID and its
	// wrapped form (opaque to this package, stored in the header).
	NewDataKey(ctx context.Context, keyID string) (plain, wrapped []byte, err error)
	// Unwrap returns the data key for a header's keyID and wrapped blob.
	Unwrap(ctx context.Context, keyID string, wrapped []byte) ([]byte, error)
}

// SimulationBanner is printed wherever a local key file stands in for the
// key broker.
var SimulationBanner = sim.Notice("data keys come from a local key file, not from the attested key broker; anyone who can read the key file can decrypt")

// keyFileType marks the JSON document LocalKeys reads, so that some other
// JSON file given by mistake is refused instead of half-parsed.
const keyFileType = "teeml-simulation-keys"

// keyFile is the on-disk form of LocalKeys.
type keyFile struct {
	Type    string            `json:"type"`
	Warning string            `json:"warning"`
	Keys    map[string]string `json:"keys"` // key ID -> base64 of a 32-byte key-encryption key
}

// LocalKeys is a simulation KeySource: key-encryption keys held in process
// memory (loaded from a key file). Data keys are wrapped with AES-256-GCM
// under the key-encryption key, with the key ID as associated data, so a
// wrapped key copied into a header naming another key ID does not unwrap.
type LocalKeys struct {
	keks map[string][]byte
	path string
}

// NewLocalKeys returns a LocalKeys holding keks (key ID -> 32-byte key).
func NewLocalKeys(keks map[string][]byte) (*LocalKeys, error) {
	l := &LocalKeys{keks: make(map[string][]byte, len(keks))}
	for id, k := range keks {
		if err := ValidKeyID(id); err != nil {
			return nil, fmt.Errorf("key ID %q: %w", id, err)
		}
		if len(k) != DataKeySize {
			return nil, fmt.Errorf("key %q: %d bytes, want %d", id, len(k), DataKeySize)
		}
		l.keks[id] = slices.Clone(k)
	}
	return l, nil
}

// errKeyFileExists refuses to replace a key file; errors.Is(err,
// fs.ErrExist) holds for it.
var errKeyFileExists = explain.Errorf(fs.ErrExist, "already exists; refusing to overwrite a key")

// GenerateKeyFile writes a new key file at path holding one random key named
// keyID (mode 0600). It refuses to overwrite an existing file.
func GenerateKeyFile(path, keyID string) error {
	if err := ValidKeyID(keyID); err != nil {
		return fmt.Errorf("key ID %q: %w", keyID, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("key file %s: %w", path, errKeyFileExists)
	}
	k := make([]byte, DataKeySize)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	doc := keyFile{Type: keyFileType, Warning: SimulationBanner, Keys: map[string]string{keyID: base64.StdEncoding.EncodeToString(k)}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(b, '\n'), 0o600)
}

// AddKeyToFile adds a new random key named keyID to the existing key file
// at path (rewritten atomically). It refuses an ID the file already holds.
func AddKeyToFile(path, keyID string) error {
	if err := ValidKeyID(keyID); err != nil {
		return fmt.Errorf("key ID %q: %w", keyID, err)
	}
	l, err := LoadKeyFile(path)
	if err != nil {
		return err
	}
	if _, ok := l.keks[keyID]; ok {
		return fmt.Errorf("key file %s: already holds key %q; refusing to replace a key", path, keyID)
	}
	k := make([]byte, DataKeySize)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	doc := keyFile{Type: keyFileType, Warning: SimulationBanner, Keys: map[string]string{keyID: base64.StdEncoding.EncodeToString(k)}}
	for id, kek := range l.keks {
		doc.Keys[id] = base64.StdEncoding.EncodeToString(kek)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(b, '\n'), 0o600)
}

// LoadKeyFile reads a key file written by GenerateKeyFile.
func LoadKeyFile(path string) (*LocalKeys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	var doc keyFile
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if doc.Type != keyFileType {
		return nil, fmt.Errorf("key file %s: type %q, want %q", path, doc.Type, keyFileType)
	}
	if len(doc.Keys) == 0 {
		return nil, fmt.Errorf("key file %s: no keys", path)
	}
	keks := make(map[string][]byte, len(doc.Keys))
	for id, enc := range doc.Keys {
		k, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("key file %s: key %q: %w", path, id, err)
		}
		keks[id] = k
	}
	l, err := NewLocalKeys(keks)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	l.path = path
	return l, nil
}

// KeyIDs lists the key IDs l holds, sorted.
func (l *LocalKeys) KeyIDs() []string {
	ids := make([]string, 0, len(l.keks))
	for id := range l.keks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Describe names l for logs, with the simulation warning.
func (l *LocalKeys) Describe() string {
	where := "in-memory keys"
	if l.path != "" {
		where = "key file " + l.path
	}
	return where + " (" + SimulationBanner + ")"
}

// Simulated reports true: a local key file is never attested key release.
func (l *LocalKeys) Simulated() bool { return true }

// wrapAAD binds a wrapped data key to its key ID and to this use.
func wrapAAD(keyID string) []byte { return []byte("teeml sealed local-wrap v1\x00" + keyID) }

func (l *LocalKeys) aead(keyID string) (cipher.AEAD, error) {
	kek, ok := l.keks[keyID]
	if !ok {
		return nil, &KeyError{KeyID: keyID, Reason: fmt.Sprintf("not in %s (it holds %s)", l.where(), strings.Join(l.KeyIDs(), ", "))}
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (l *LocalKeys) where() string {
	if l.path != "" {
		return "key file " + l.path
	}
	return "the local keys"
}

// NewDataKey implements KeySource.
func (l *LocalKeys) NewDataKey(ctx context.Context, keyID string) ([]byte, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	a, err := l.aead(keyID)
	if err != nil {
		return nil, nil, err
	}
	plain := make([]byte, DataKeySize)
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+DataKeySize+a.Overhead())
	if _, err := rand.Read(plain); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	return plain, a.Seal(nonce, nonce, plain, wrapAAD(keyID)), nil
}

// Unwrap implements KeySource.
func (l *LocalKeys) Unwrap(ctx context.Context, keyID string, wrapped []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, err := l.aead(keyID)
	if err != nil {
		return nil, err
	}
	if len(wrapped) != a.NonceSize()+DataKeySize+a.Overhead() {
		return nil, &KeyError{KeyID: keyID, Reason: fmt.Sprintf("wrapped data key is %d bytes, want %d", len(wrapped), a.NonceSize()+DataKeySize+a.Overhead())}
	}
	plain, err := a.Open(nil, wrapped[:a.NonceSize()], wrapped[a.NonceSize():], wrapAAD(keyID))
	if err != nil {
		return nil, &KeyError{KeyID: keyID, Reason: "wrapped data key does not authenticate under this key (wrong key file, or the wrapped key or key ID was modified)"}
	}
	return plain, nil
}

// KeyError reports a data key that could not be obtained for KeyID.
type KeyError struct {
	KeyID  string
	Reason string
}

func (e *KeyError) Error() string { return fmt.Sprintf("key %q: %s", e.KeyID, e.Reason) }
