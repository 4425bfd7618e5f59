package kms

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/kms/rootkey"
)

// simFileRoot is a root key in a plain local file: SIMULATION only, the key
// is as safe as the file. It exists so `teeml kms serve` runs without a TEE
// or HSM until kms/rootkey's sealed-file and PKCS#11 holders are wired in
// (see OpenRootKey).
type simFileRoot struct {
	path string
	key  []byte
}

// OpenRootKey opens the root key named by spec. Supported here:
//
//	sim-file:PATH   a 32-byte key in a local file, created (0600) if missing
//	                and create is set; SIMULATION: not sealed to a TEE,
//	                announced as such
//
// The sealed-file (Gramine /dev/attestation/keys) and PKCS#11 holders live
// in package kms/rootkey; Config.RootKeyOpener plugs them in.
func OpenRootKey(spec string, create bool) (rootkey.Wrapper, error) {
	path, ok := strings.CutPrefix(spec, "sim-file:")
	if !ok {
		return nil, fmt.Errorf("root key %q: unsupported (want sim-file:PATH; sealed and pkcs11 root keys come from kms/rootkey)", spec)
	}
	if path == "" {
		return nil, errors.New("root key sim-file: no path")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteBytes(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("root key %s: %v", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("root key: %v", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("root key %s: %d bytes, want 32", path, len(b))
	}
	return &simFileRoot{path: path, key: b}, nil
}

func (r *simFileRoot) Wrap(plaintext, aad []byte) ([]byte, error) {
	a, err := gcm(r.key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plaintext, aad), nil
}

func (r *simFileRoot) Unwrap(ct, aad []byte) ([]byte, error) {
	a, err := gcm(r.key)
	if err != nil {
		return nil, err
	}
	if len(ct) < a.NonceSize()+a.Overhead() {
		return nil, errors.New("root key: ciphertext too short")
	}
	pt, err := a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], aad)
	if err != nil {
		return nil, errors.New("root key: ciphertext does not authenticate (wrong root key, or tampered)")
	}
	return pt, nil
}

func (r *simFileRoot) Describe() string {
	return "file " + r.path + " (SIMULATION: not sealed to a TEE)"
}

func (r *simFileRoot) Simulated() bool { return true }
func (r *simFileRoot) Close() error    { return nil }
