package rootkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
)

// softKey wraps with AES-256-GCM in process memory. It backs the file holder
// (simulation) and the Gramine holder, whose key is only ever in enclave
// memory. cipher.AEAD is safe for concurrent use, so no lock is needed.
type softKey struct {
	kind      Kind
	id        KeyID
	aead      atomic.Pointer[cipher.AEAD] // nil once closed
	describe  string
	simulated bool
}

// newSoftKey builds a wrapper from a 32-byte AES key. The caller zeroes its
// copy of key afterwards; the AES key schedule keeps what GCM needs.
func newSoftKey(kind Kind, key []byte, describe string, simulated bool) (*softKey, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("rootkey: %s key is %d bytes, want 32", kind, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &softKey{kind: kind, id: softKeyID(key), describe: describe, simulated: simulated}
	s.aead.Store(&aead)
	return s, nil
}

// softKeyID fingerprints a software key with HMAC so that the ID reveals
// nothing about the key itself.
func softKeyID(key []byte) KeyID {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("teeml kms rootkey key-id v1"))
	var id KeyID
	copy(id[:], m.Sum(nil))
	return id
}

func (s *softKey) Wrap(plaintext, aad []byte) ([]byte, error) {
	ap := s.aead.Load()
	if ap == nil {
		return nil, ErrClosed
	}
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("rootkey: nonce: %w", err)
	}
	h := newHeader(s.kind, s.id, nonce)
	out := make([]byte, 0, len(h)+len(plaintext)+tagSize)
	out = append(out, h...)
	return (*ap).Seal(out, nonce, plaintext, gcmAAD(h, aad)), nil
}

func (s *softKey) Unwrap(ciphertext, aad []byte) ([]byte, error) {
	ap := s.aead.Load()
	if ap == nil {
		return nil, ErrClosed
	}
	b, err := checkFor(ciphertext, s.kind, s.id)
	if err != nil {
		return nil, err
	}
	pt, err := (*ap).Open(nil, b.Nonce, b.Ciphertext, gcmAAD(b.header, aad))
	if err != nil {
		return nil, ErrAuthentication
	}
	return pt, nil
}

func (s *softKey) Describe() string { return s.describe }
func (s *softKey) Simulated() bool  { return s.simulated }

// Close drops the cipher. Go cannot reliably wipe the AES key schedule, so
// this is hygiene, not a guarantee.
func (s *softKey) Close() error {
	s.aead.Store(nil)
	return nil
}

var (
	// ErrClosed is returned by Wrap and Unwrap after Close.
	ErrClosed = errors.New("rootkey: holder is closed")
	// ErrAuthentication is returned (possibly wrapped) when a blob does not
	// authenticate. It is deliberately unspecific: GCM cannot tell a
	// tampered blob from a wrong aad, and must not say which.
	ErrAuthentication = errors.New("rootkey: wrapped blob failed authentication (tampered, or wrong aad for this row)")
)

// deriveKey stretches input keying material into a 32-byte wrapping key
// bound to a teeml-specific label, so the same sealing key used by another
// application (or another purpose inside teeml) yields an unrelated key.
func deriveKey(ikm []byte, label string) ([]byte, error) {
	return hkdf.Key(sha256.New, ikm, nil, "teeml kms root key v1: "+label, 32)
}
