// Package rootkey protects the key broker's stored key material with a root
// key that never leaves its holder: a key sealed to the TEE (Gramine's
// /dev/attestation/keys), a PKCS#11 token (an HSM; SoftHSM2 in tests) or, in
// simulation only, a local key file that is announced as insecure.
package rootkey

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
