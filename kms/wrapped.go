package kms

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/teeml/teeml/pki"
)

// Wrapped data key format (all integers big endian):
//
//	"tkdk" ‖ format 1 (1 byte) ‖ len(key id) (1 byte) ‖ key id ‖ key version (4 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM(data key) (48 bytes)
//
// The GCM additional data is "teeml-kms/datakey/v1" ‖ the header (everything
// before the nonce) ‖ len(context) (4 bytes) ‖ context, so neither the key
// id, the version nor the caller's context can be changed without the
// unwrap failing.
const (
	wrapMagic     = "tkdk"
	wrapFormat    = 1
	nonceSize     = 12
	dataKeySize   = 32
	sealedSize    = dataKeySize + 16
	maxContext    = 4096
	dataKeyDomain = "teeml-kms/datakey/v1"
)

// WrappedKey is a parsed wrapped data key.
type WrappedKey struct {
	KeyID   string
	Version uint32
	header  []byte
	nonce   []byte
	sealed  []byte
}

// CheckKeyID returns an error unless id is a valid key id (the same rules as
// federation member names: 1 to 64 letters, digits, '.', '_', '-').
func CheckKeyID(id string) error {
	if err := pki.CheckName(id); err != nil {
		return fmt.Errorf("key id: %s", trimMember(err.Error()))
	}
	return nil
}

func trimMember(s string) string {
	const p = "member name "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// ParseWrapped parses untrusted bytes; it checks the shape only (the
// ciphertext is authenticated at unwrap).
func ParseWrapped(b []byte) (*WrappedKey, error) {
	if len(b) < len(wrapMagic)+2 || string(b[:4]) != wrapMagic {
		return nil, errors.New("wrapped key: not a teeml wrapped data key (bad magic)")
	}
	if b[4] != wrapFormat {
		return nil, fmt.Errorf("wrapped key: format %d, want %d", b[4], wrapFormat)
	}
	n := int(b[5])
	want := 6 + n + 4 + nonceSize + sealedSize
	if len(b) != want {
		return nil, fmt.Errorf("wrapped key: %d bytes, want %d for a %d-byte key id", len(b), want, n)
	}
	id := string(b[6 : 6+n])
	if err := CheckKeyID(id); err != nil {
		return nil, fmt.Errorf("wrapped key: %w", err)
	}
	hdrEnd := 6 + n + 4
	w := &WrappedKey{
		KeyID:   id,
		Version: binary.BigEndian.Uint32(b[6+n : hdrEnd]),
		header:  b[:hdrEnd:hdrEnd],
		nonce:   b[hdrEnd : hdrEnd+nonceSize : hdrEnd+nonceSize],
		sealed:  b[hdrEnd+nonceSize:],
	}
	if w.Version == 0 {
		return nil, errors.New("wrapped key: version 0")
	}
	return w, nil
}

func wrapHeader(id string, version uint32) []byte {
	h := append([]byte(wrapMagic), wrapFormat, byte(len(id)))
	h = append(h, id...)
	return binary.BigEndian.AppendUint32(h, version)
}

func dataKeyAAD(header, context []byte) []byte {
	a := append([]byte(dataKeyDomain), header...)
	a = binary.BigEndian.AppendUint32(a, uint32(len(context)))
	return append(a, context...)
}

func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// sealDataKey wraps dk under primary key material pk (id, version).
func sealDataKey(pk []byte, id string, version uint32, nonce, dk, context []byte) ([]byte, error) {
	a, err := gcm(pk)
	if err != nil {
		return nil, err
	}
	h := wrapHeader(id, version)
	out := append(append([]byte{}, h...), nonce...)
	return a.Seal(out, nonce, dk, dataKeyAAD(h, context)), nil
}

// open unwraps w under primary key material pk.
func (w *WrappedKey) open(pk, context []byte) ([]byte, error) {
	a, err := gcm(pk)
	if err != nil {
		return nil, err
	}
	dk, err := a.Open(nil, w.nonce, w.sealed, dataKeyAAD(w.header, context))
	if err != nil {
		return nil, errors.New("wrapped key does not authenticate under its key version (corrupted, or a different context)")
	}
	return dk, nil
}

// primaryAAD binds stored primary key material to its key id and version.
func primaryAAD(id string, version uint32) []byte {
	a := append([]byte("teeml-kms/primary/v1\x00"), id...)
	a = append(a, 0)
	return binary.BigEndian.AppendUint32(a, version)
}
