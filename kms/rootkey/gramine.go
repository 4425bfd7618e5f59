package rootkey

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/teeml/teeml/internal/explain"
)

// DefaultGramineKeysDir is where Gramine exposes its keys inside an SGX
// enclave. _sgx_mrenclave and _sgx_mrsigner there are read-only pseudo-files
// holding the 16-byte SGX sealing keys (EGETKEY) bound to the enclave's
// measurement or to its signer; the same directory holds the keys that
// Gramine's encrypted-files mounts use.
const DefaultGramineKeysDir = "/dev/attestation/keys"

// gramineSealKeySize is the size of an SGX sealing key (AES-128).
const gramineSealKeySize = 16

// gramineKeyName maps the spec's policy word to Gramine's key file name.
// MRENCLAVE keys survive only the exact same enclave build: a new release
// cannot read the old root key, so upgrades need a re-wrap. MRSIGNER keys
// survive upgrades signed by the same key, at the price of trusting every
// enclave that signer ever signs.
func gramineKeyName(policy string) (string, error) {
	switch strings.TrimPrefix(policy, "_sgx_") {
	case "", "mrenclave":
		return "_sgx_mrenclave", nil
	case "mrsigner":
		return "_sgx_mrsigner", nil
	}
	return "", fmt.Errorf("rootkey: gramine: unknown sealing policy %q (want mrenclave or mrsigner)", policy)
}

// openGramine derives the wrapping key from Gramine's sealing key with
// HKDF-SHA256 under a teeml label. The sealing key never leaves the enclave,
// so a blob wrapped here can only be unwrapped by the same enclave (or, with
// mrsigner, an enclave of the same signer) on the same CPU.
func openGramine(policy, dir string) (*softKey, error) {
	name, err := gramineKeyName(policy)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		dir = DefaultGramineKeysDir
	}
	path := filepath.Join(dir, name)
	seal, err := os.ReadFile(path)
	defer clear(seal)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, explain.Errorf(err, "rootkey: gramine: %s not present (not running inside a Gramine SGX enclave)", path)
		}
		return nil, fmt.Errorf("rootkey: gramine: %s: %w", path, err)
	}
	if len(seal) != gramineSealKeySize {
		return nil, fmt.Errorf("rootkey: gramine: %s is %d bytes, want a %d-byte SGX sealing key", path, len(seal), gramineSealKeySize)
	}
	key, err := deriveKey(seal, name)
	if err != nil {
		return nil, fmt.Errorf("rootkey: gramine: deriving key: %w", err)
	}
	defer clear(key)
	desc := fmt.Sprintf("gramine SGX sealing key %s (HKDF-SHA256 derived)", path)
	if dir != DefaultGramineKeysDir {
		// Only tests point elsewhere; say so rather than pass as sealed.
		desc += " [non-default keys directory]"
	}
	return newSoftKey(KindGramine, key, desc, false)
}
