package rootkey

import (
	"encoding/hex"
	"fmt"

	"github.com/teeml/teeml/internal/explain"
)

// Wrapped blobs are self-describing so that a broker can tell at once which
// kind of root key (and which key) a stored row needs, and so that the format
// can change later without guessing:
//
//	offset  size  field
//	0       1     format version (FormatV1)
//	1       1     holder kind (KindFile, KindGramine, KindPKCS11)
//	2       8     key ID: a non-secret fingerprint of the root key
//	10      12    AES-GCM nonce, random per Wrap
//	22      n+16  AES-256-GCM ciphertext of the n-byte plaintext, then the tag
//
// The 22-byte header is authenticated: the GCM additional data is the header
// followed by the caller's aad, so changing the version, kind or key ID
// fails authentication just as a flipped ciphertext bit does. The header has
// a fixed length, so header||aad is unambiguous.
const (
	// FormatV1 is the only blob format this package writes or reads.
	FormatV1 byte = 1

	keyIDSize  = 8
	nonceSize  = 12
	tagSize    = 16
	headerSize = 2 + keyIDSize + nonceSize
	// Overhead is how many bytes Wrap adds to the plaintext.
	Overhead = headerSize + tagSize
)

// Kind names the holder of a root key; it is the blob's second byte.
type Kind byte

const (
	KindFile    Kind = 1 // local key file: SIMULATION only
	KindGramine Kind = 2 // key derived from Gramine's SGX sealing key
	KindPKCS11  Kind = 3 // AES key inside a PKCS#11 token
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindGramine:
		return "gramine"
	case KindPKCS11:
		return "pkcs11"
	}
	return fmt.Sprintf("unknown kind %d", byte(k))
}

// KeyID is a fingerprint of a root key. It reveals nothing about the key
// (it is an HMAC output for software keys and a hash of the token object's
// identity for PKCS#11) and lets Unwrap say "wrong root key" instead of a bare
// authentication failure.
type KeyID [keyIDSize]byte

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// Blob is a parsed wrapped blob. Its slices alias the input.
type Blob struct {
	Version    byte
	Kind       Kind
	KeyID      KeyID
	Nonce      []byte // nonceSize bytes
	Ciphertext []byte // ciphertext followed by the 16-byte GCM tag
	header     []byte // the authenticated header bytes
}

// ParseBlob splits a wrapped blob into its fields. It checks the structure
// only (length, version, known kind); authenticity is checked by Unwrap.
func ParseBlob(b []byte) (Blob, error) {
	if len(b) < Overhead {
		return Blob{}, fmt.Errorf("rootkey: wrapped blob is %d bytes, shorter than the minimum %d (truncated?)", len(b), Overhead)
	}
	if b[0] != FormatV1 {
		return Blob{}, fmt.Errorf("rootkey: wrapped blob format version %d not supported (want %d)", b[0], FormatV1)
	}
	k := Kind(b[1])
	switch k {
	case KindFile, KindGramine, KindPKCS11:
	default:
		return Blob{}, fmt.Errorf("rootkey: wrapped blob names unknown root key kind %d", b[1])
	}
	var id KeyID
	copy(id[:], b[2:2+keyIDSize])
	return Blob{
		Version:    b[0],
		Kind:       k,
		KeyID:      id,
		Nonce:      b[2+keyIDSize : headerSize],
		Ciphertext: b[headerSize:],
		header:     b[:headerSize],
	}, nil
}

// header builds the authenticated header for a new blob.
func newHeader(k Kind, id KeyID, nonce []byte) []byte {
	h := make([]byte, 0, headerSize)
	h = append(h, FormatV1, byte(k))
	h = append(h, id[:]...)
	return append(h, nonce...)
}

// gcmAAD is the additional data given to AES-GCM: the blob header, then the
// caller's aad.
func gcmAAD(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	out = append(out, header...)
	return append(out, aad...)
}

// checkFor parses b and checks it was made by a holder of kind k with key id.
func checkFor(b []byte, k Kind, id KeyID) (Blob, error) {
	p, err := ParseBlob(b)
	if err != nil {
		return Blob{}, err
	}
	if p.Kind != k {
		return Blob{}, explain.Errorf(ErrWrongKey, "rootkey: blob was wrapped by a %s root key, not by this %s root key", p.Kind, k)
	}
	if p.KeyID != id {
		return Blob{}, explain.Errorf(ErrWrongKey, "rootkey: blob was wrapped under root key %s, this holder's key is %s (wrong root key)", p.KeyID, id)
	}
	return p, nil
}
