// Package rootkey protects the key broker's stored key material with a root
// key that never leaves its holder: a key sealed to the TEE (Gramine's
// /dev/attestation/keys), a PKCS#11 token (an HSM; SoftHSM2 in tests) or, in
// simulation only, a local key file that is announced as insecure.
package rootkey

import (
	"errors"
	"fmt"
	"strings"
)

// Refusals a caller may branch on, matched with errors.Is. The errors
// returned keep their own, more specific messages (explain.Errorf).
var (
	// ErrWrongKey: a blob was wrapped by another root key (another kind,
	// or another key of the same kind) than this holder's. Unlike
	// ErrAuthentication this is a configuration mistake, not tampering.
	ErrWrongKey = errors.New("rootkey: blob was wrapped by another root key")
	// ErrKeyExists: creating a root key was refused because one already
	// exists (a replaced root key would orphan every stored key).
	ErrKeyExists = errors.New("rootkey: a root key already exists")
	// ErrWrongPIN: a PKCS#11 token rejected the user PIN.
	ErrWrongPIN = errors.New("rootkey: pkcs11: wrong PIN")
)

// Wrapper encrypts and authenticates key material at rest. aad binds a
// ciphertext to its context (for example the key ID and version), so a
// wrapped blob moved to another row does not unwrap.
type Wrapper interface {
	// Wrap returns an authenticated ciphertext of plaintext bound to aad.
	Wrap(plaintext, aad []byte) ([]byte, error)
	// Unwrap reverses Wrap; any change to the ciphertext or aad is an error.
	Unwrap(ciphertext, aad []byte) ([]byte, error)
	// Describe names the root key's kind and location in one line, e.g.
	// "pkcs11 token \"teeml\" key \"root\"" or "file /x/root.key (SIMULATION:
	// not sealed to a TEE)". Callers log it at start.
	Describe() string
	// Simulated reports whether the root key is not protected by a TEE or
	// HSM (a plain local file); such a broker must say so in its logs.
	Simulated() bool
	// Close releases the holder (e.g. the PKCS#11 session).
	Close() error
}

// Config selects and configures a root key holder.
type Config struct {
	// Spec names the holder:
	//
	//	file:PATH                 simulation: a local 32-byte key file (see CreateFile)
	//	gramine:[mrenclave|mrsigner]  Gramine's SGX sealing key, HKDF-derived
	//	pkcs11:...                an AES key in a PKCS#11 token (see ParsePKCS11URI)
	Spec string
	// GramineKeysDir overrides DefaultGramineKeysDir; tests only. A holder
	// opened with an override says so in Describe.
	GramineKeysDir string
	// PKCS11Sessions overrides the session pool size given in the URI.
	PKCS11Sessions int
}

// Open opens the root key holder named by spec; see Config.Spec.
func Open(spec string) (Wrapper, error) { return OpenConfig(Config{Spec: spec}) }

// OpenConfig opens the root key holder cfg names.
func OpenConfig(cfg Config) (Wrapper, error) {
	kind, arg, ok := strings.Cut(cfg.Spec, ":")
	if !ok {
		return nil, fmt.Errorf("rootkey: spec %q has no kind (want file:PATH, gramine: or pkcs11:...)", cfg.Spec)
	}
	switch kind {
	case "file":
		return openFile(arg)
	case "gramine":
		return openGramine(arg, cfg.GramineKeysDir)
	case "pkcs11":
		p, err := ParsePKCS11URI(cfg.Spec)
		if err != nil {
			return nil, err
		}
		if cfg.PKCS11Sessions > 0 {
			p.Sessions = cfg.PKCS11Sessions
		}
		return openPKCS11(p)
	}
	return nil, fmt.Errorf("rootkey: unknown root key kind %q in spec (want file, gramine or pkcs11)", kind)
}

// Init creates the root key named by spec: a new key file for file:PATH, a
// new AES key inside the token for pkcs11:... . A Gramine key needs no
// initialisation (the CPU derives it), so Init refuses gramine: with a reason.
// Init never replaces an existing key.
func Init(spec string) error {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return fmt.Errorf("rootkey: spec %q has no kind (want file:PATH or pkcs11:...)", spec)
	}
	switch kind {
	case "file":
		if arg == "" {
			return fmt.Errorf("rootkey: file: empty path (want file:PATH)")
		}
		return CreateFile(arg)
	case "gramine":
		return fmt.Errorf("rootkey: gramine: nothing to initialise; the sealing key is derived by the CPU for the running enclave")
	case "pkcs11":
		p, err := ParsePKCS11URI(spec)
		if err != nil {
			return err
		}
		return InitPKCS11(p)
	}
	return fmt.Errorf("rootkey: unknown root key kind %q in spec (want file or pkcs11)", kind)
}

// Rewrap moves one wrapped blob from one root key to another (a migration
// to a new holder, or ahead of a Gramine sealing-key change): it unwraps
// under from and wraps under to with the same aad. The plaintext exists
// only in this call's memory and is zeroed before returning.
func Rewrap(from, to Wrapper, blob, aad []byte) ([]byte, error) {
	pt, err := from.Unwrap(blob, aad)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return to.Wrap(pt, aad)
}
