package psi

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"github.com/gtank/ristretto255"
)

// Version names the protocol; it starts every domain-separation tag.
const Version = "teeml-psi-v2"

// DigestLen is the length of the truncated doubly blinded values compared.
//
// With n_L and n_F IDs on the two sides, a false match needs two distinct
// pseudorandom 128-bit values to collide: probability at most
// n_L*n_F/2^128, below 2^-74 for 2^27 (134M) IDs per side. Truncating halves
// the bytes of steps 1-3 compared with sending 32-byte encodings.
const DigestLen = 16

const pointLen = 32

// hashDST is the domain-separation tag of hash-to-group for a session:
// "teeml-psi-v2:" followed by the session id in hex (77 bytes). Binding the
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
// bytes. blindIDs uses the same code (xmd) with the per-session part
// precomputed.
func expandXMD(out []byte, dst []byte, msg string) {
	var x xmd
	x.init(dst)
	x.expand(out, msg)
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
	var x xmd
	x.init(dst)
	var u [64]byte
	h, p := ristretto255.NewElement(), ristretto255.NewElement()
	for i, id := range ids {
		x.expand(u[:], id)
		if _, err := h.SetUniformBytes(u[:]); err != nil {
			panic("psi: hash to group: " + err.Error()) // unreachable: u is 64 bytes
		}
		p.ScalarMult(k, h)
		p.Encode(out[i*pointLen : i*pointLen : (i+1)*pointLen])
	}
}

var errIdentity = errors.New("the identity element")

// reblind decodes the peer's blinded points in, raises each to k and writes
// the digest of the result to out (DigestLen bytes each). Non-canonical
// encodings and the identity element are refused: an honest peer never sends
// them, and the identity would match every other identity.
//
// The digest is of the canonical Edwards encoding of 8·P (see digestPoints),
// not of P's ristretto255 encoding: both are injective functions of the
// ristretto255 element, but the Edwards form needs only a field inversion,
// and all the inversions of a batch share one exponentiation, where each
// ristretto255 encoding needs its own inverse square root.
func reblind(out []byte, k *ristretto255.Scalar, in []byte) error {
	ek, err := edwards25519.NewScalar().SetCanonicalBytes(k.Bytes())
	if err != nil {
		panic("psi: secret scalar: " + err.Error()) // unreachable: ristretto255 scalars are canonical
	}
	n := len(in) / pointLen
	pts := make([]edwards25519.Point, n)
	for i := range n {
		if err := decodeRistretto(&pts[i], in[i*pointLen:(i+1)*pointLen]); err != nil {
			return fmt.Errorf("point %d: %w", i, err)
		}
		pts[i].ScalarMult(ek, &pts[i])
	}
	digestPoints(out, pts)
	return nil
}

// digestPoints writes digest(encode(8·P)) for each point to out, where
// encode is the standard compressed Edwards encoding (RFC 8032 5.1.2).
//
// A ristretto255 element is a coset P + E[4] of the curve's 4-torsion, and
// 8·(P + T) = 8·P for every T in E[4], so 8·P is the same point whichever
// representative the arithmetic produced; multiplying by 8 is a bijection
// of the prime-order subgroup, so distinct elements keep distinct
// encodings. The affine coordinates X/Z, Y/Z of the whole batch come from
// one field inversion (Montgomery's trick: 3 multiplications per point).
// pts is overwritten.
func digestPoints(out []byte, pts []edwards25519.Point) {
	n := len(pts)
	if n == 0 {
		return
	}
	zs := make([]field.Element, n)     // Z of each point
	prefix := make([]field.Element, n) // prefix[i] = Z_0 * ... * Z_i
	for i := range pts {
		pts[i].MultByCofactor(&pts[i])
		_, _, z, _ := pts[i].ExtendedCoordinates()
		zs[i].Set(z)
		if i == 0 {
			prefix[0].Set(z)
		} else {
			prefix[i].Multiply(&prefix[i-1], z)
		}
	}
	var inv, zi, x, y field.Element
	inv.Invert(&prefix[n-1]) // 1 / (Z_0 * ... * Z_{n-1}); Z is never 0
	var enc [32]byte
	for i := n - 1; i >= 0; i-- {
		if i > 0 {
			zi.Multiply(&inv, &prefix[i-1]) // 1 / Z_i
			inv.Multiply(&inv, &zs[i])      // 1 / (Z_0 * ... * Z_{i-1})
		} else {
			zi.Set(&inv)
		}
		X, Y, _, _ := pts[i].ExtendedCoordinates()
		x.Multiply(X, &zi)
		y.Multiply(Y, &zi)
		copy(enc[:], y.Bytes())
		enc[31] |= byte(x.IsNegative() << 7)
		digest(out[i*DigestLen:(i+1)*DigestLen], enc[:])
	}
}

// edD is the Edwards curve constant d = -121665/121666.
var edD = func() *field.Element {
	b, _ := hex.DecodeString("a3785913ca4deb75abd841414d0a700098e879777940c78c73fe6f2bee6c0352")
	d, err := new(field.Element).SetBytes(b)
	if err != nil {
		panic(err)
	}
	return d
}()

var errNonCanonical = errors.New("not a canonical ristretto255 encoding")

// decodeRistretto is the ristretto255 decoding of RFC 9496 section 4.3.1
// into an Edwards point (a representative of the element), refusing
// non-canonical encodings and the identity. It is constant time in the
// value of a valid encoding.
func decodeRistretto(p *edwards25519.Point, b []byte) error {
	var s field.Element
	if _, err := s.SetBytes(b); err != nil {
		return errNonCanonical
	}
	// SetBytes ignores the top bit and reduces values >= p: a canonical
	// encoding is the one that re-encodes to itself, and s is non-negative.
	if !bytes.Equal(s.Bytes(), b) || s.IsNegative() == 1 {
		return errNonCanonical
	}
	var zero, one field.Element
	zero.Zero()
	one.One()
	if s.Equal(&zero) == 1 {
		return errIdentity // the identity's unique encoding is all zeros
	}
	var ss, u1, u2, u2sq, v, t0, invsqrt, denX, denY, x, y, t field.Element
	ss.Square(&s)
	u1.Subtract(&one, &ss)
	u2.Add(&one, &ss)
	u2sq.Square(&u2)
	v.Square(&u1)
	v.Multiply(&v, edD)
	v.Negate(&v)
	v.Subtract(&v, &u2sq) // v = -(d * u1^2) - u2^2
	t0.Multiply(&v, &u2sq)
	_, wasSquare := invsqrt.SqrtRatio(&one, &t0)
	denX.Multiply(&invsqrt, &u2)
	denY.Multiply(&invsqrt, &denX)
	denY.Multiply(&denY, &v)
	x.Multiply(&s, &denX)
	x.Add(&x, &x)
	x.Absolute(&x)
	y.Multiply(&u1, &denY)
	t.Multiply(&x, &y)
	if wasSquare == 0 || t.IsNegative() == 1 || y.Equal(&zero) == 1 {
		return errNonCanonical
	}
	if _, err := p.SetExtendedCoordinates(&x, &y, &one, &t); err != nil {
		return errNonCanonical // unreachable: the formulas give a curve point
	}
	return nil
}

// xmd is expandXMD with the per-session parts precomputed: the SHA-512
// state after the 128-byte zero block Z_pad (exactly one SHA-512 block),
// which every ID's first hash starts from, and DST_prime.
type xmd struct {
	padded   []byte // marshalled SHA-512 state after Z_pad
	dstPrime []byte
	h        hash.Hash
	b0       [64]byte
}

func (x *xmd) init(dst []byte) {
	x.dstPrime = append(append(make([]byte, 0, len(dst)+1), dst...), byte(len(dst)))
	x.h = sha512.New()
	var zpad [128]byte
	x.h.Write(zpad[:])
	st, err := x.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("psi: sha512 state: " + err.Error())
	}
	x.padded = st
}

// expand is expandXMD(out, dst, msg) for the dst given to init.
func (x *xmd) expand(out []byte, msg string) {
	h := x.h
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(x.padded); err != nil {
		panic("psi: sha512 state: " + err.Error())
	}
	io.WriteString(h, msg)
	h.Write([]byte{0, 64, 0}) // I2OSP(64, 2) || I2OSP(0, 1)
	h.Write(x.dstPrime)
	b0 := h.Sum(x.b0[:0])
	h.Reset()
	h.Write(b0)
	h.Write([]byte{1})
	h.Write(x.dstPrime)
	h.Sum(out[:0])
}

const digestTag = Version + " digest"

// digest truncates SHA-256("teeml-psi-v2 digest" || encoding) to DigestLen
// bytes; hashing first makes the truncated bytes uniform (a canonical
// encoding's bytes are not: its top bit is always clear, for one).
func digest(out []byte, enc []byte) {
	var buf [len(digestTag) + 32]byte
	copy(buf[copy(buf[:], digestTag):], enc)
	s := sha256.Sum256(buf[:len(digestTag)+len(enc)])
	copy(out, s[:])
}
