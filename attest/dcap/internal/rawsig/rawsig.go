// Package rawsig verifies the raw ECDSA P-256 signatures (r‖s, 32 bytes
// each, big endian) used throughout Intel DCAP: quote signatures, QE report
// signatures and the signatures of TCB Info and QE Identity.
package rawsig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
)

// Size is the length of a raw P-256 signature.
const Size = 64

// ErrInvalid is returned when a well-formed signature does not verify.
var ErrInvalid = errors.New("ecdsa signature invalid")

// Verify checks sig (r‖s) over SHA-256(msg) with pub, which must be a P-256
// key.
func Verify(pub *ecdsa.PublicKey, msg, sig []byte) error {
	if pub == nil || pub.Curve != elliptic.P256() {
		return errors.New("public key is not ECDSA P-256")
	}
	if len(sig) != Size {
		return fmt.Errorf("signature has %d bytes, want %d", len(sig), Size)
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	h := sha256.Sum256(msg)
	if !ecdsa.Verify(pub, h[:], r, s) {
		return ErrInvalid
	}
	return nil
}

// ParsePublicKey parses a raw P-256 public key X‖Y (64 bytes), checking
// that the point is on the curve.
func ParsePublicKey(raw []byte) (*ecdsa.PublicKey, error) {
	if len(raw) != 64 {
		return nil, fmt.Errorf("public key has %d bytes, want 64", len(raw))
	}
	u := make([]byte, 65)
	u[0] = 4
	copy(u[1:], raw)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), u)
	if err != nil {
		return nil, fmt.Errorf("invalid P-256 public key: %w", err)
	}
	return pub, nil
}

// Sign produces a raw r‖s signature over SHA-256(msg). It is used by tests
// that build synthetic quotes and collateral.
func Sign(priv *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, Size)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}
