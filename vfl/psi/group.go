package psi

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/gtank/ristretto255"
)

// Version names the protocol; it starts every domain-separation tag.
const Version = "teeml-psi-v1"

// DigestLen is the length of the truncated doubly blinded values compared.
//
// With n_L and n_F IDs on the two sides, a false match needs two distinct
// pseudorandom 128-bit values to collide: probability at most
// n_L*n_F/2^128, below 2^-74 for 2^27 (134M) IDs per side. Truncating halves
// the bytes of steps 1-3 compared with sending 32-byte encodings.
const DigestLen = 16

const pointLen = 32

// hashDST is the domain-separation tag of hash-to-group for a session:
// "teeml-psi-v1:" followed by the session id in hex (77 bytes). Binding the
// session id makes the blinded values of one session useless in any other.
func hashDST(session [32]byte) []byte {
	return []byte(Version + ":" + hex.EncodeToString(session[:]))
}

// hashToGroup maps id to a ristretto255 element as the RFC 9380 suite
// ristretto255_XMD:SHA-512_R255MAP_RO_ does: expand_message_xmd with SHA-512
// to 64 uniform bytes, then the ristretto255 one-way map (SetUniformBytes).
// The result is a random oracle into the prime-order group, so nobody knows
// a discrete-log relation between the images of two IDs.
func hashToGroup(dst []byte, id string) *ristretto255.Element {
	var u [64]byte
	expandXMD(u[:], dst, id)
	e, err := ristretto255.NewElement().SetUniformBytes(u[:])
	if err != nil {
		// Unreachable: u is always 64 bytes.
		panic("psi: hash to group: " + err.Error())
	}
	return e
}

// expandXMD is RFC 9380 section 5.3.1 expand_message_xmd with SHA-512 for
// len_in_bytes = 64 (one output block, so ell = 1). dst must be at most 255
// bytes.
func expandXMD(out []byte, dst []byte, msg string) {
	var zpad [128]byte // SHA-512 block size
	dstPrime := append(append([]byte(nil), dst...), byte(len(dst)))
	h := sha512.New()
	h.Write(zpad[:])
	io.WriteString(h, msg)
	h.Write([]byte{0, 64, 0}) // I2OSP(64, 2) || I2OSP(0, 1)
	h.Write(dstPrime)
	b0 := h.Sum(nil)
	h.Reset()
	h.Write(b0)
	h.Write([]byte{1})
	h.Write(dstPrime)
	h.Sum(out[:0])
}

// newSecret returns a uniformly random non-zero scalar from rnd.
func newSecret(rnd io.Reader) (*ristretto255.Scalar, error) {
	var b [64]byte
	for {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("psi: secret scalar: %w", err)
		}
		s, err := ristretto255.NewScalar().SetUniformBytes(b[:])
		if err != nil {
			return nil, fmt.Errorf("psi: secret scalar: %w", err)
		}
		if s.Equal(ristretto255.NewScalar()) == 0 {
			return s, nil
		}
	}
}

// blindIDs writes hashToGroup(id)^k for each id to out (32 bytes each).
func blindIDs(out []byte, dst []byte, k *ristretto255.Scalar, ids []string) {
	p := ristretto255.NewElement()
	for i, id := range ids {
		p.ScalarMult(k, hashToGroup(dst, id))
		copy(out[i*pointLen:(i+1)*pointLen], p.Bytes())
	}
}

var errIdentity = errors.New("the identity element")

// reblind decodes the peer's blinded points in, raises each to k and writes
// the digest of the result to out (DigestLen bytes each). Non-canonical
// encodings and the identity element are refused: an honest peer never sends
// them, and the identity would match every other identity.
func reblind(out []byte, k *ristretto255.Scalar, in []byte) error {
	p := ristretto255.NewElement()
	zero := ristretto255.NewElement()
	for i := 0; i*pointLen < len(in); i++ {
		if _, err := p.SetCanonicalBytes(in[i*pointLen : (i+1)*pointLen]); err != nil {
			return fmt.Errorf("point %d: not a canonical ristretto255 encoding", i)
		}
		if p.Equal(zero) == 1 {
			return fmt.Errorf("point %d: %w", i, errIdentity)
		}
		p.ScalarMult(k, p)
		digest(out[i*DigestLen:(i+1)*DigestLen], p.Bytes())
	}
	return nil
}

// digest truncates SHA-256("teeml-psi-v1 digest" || encoding) to DigestLen
// bytes; hashing first makes the truncated bytes uniform (a canonical
// encoding's bytes are not: its top bit is always clear, for one).
func digest(out []byte, enc []byte) {
	h := sha256.New()
	h.Write([]byte(Version + " digest"))
	h.Write(enc)
	var s [32]byte
	copy(out, h.Sum(s[:0]))
}
