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

// The group is ristretto255's: the prime-order subgroup of edwards25519,
// with the RFC 9496 one-way map for hashing to it. Points travel as the
// standard compressed Edwards encoding (RFC 8032 5.1.2) of 8·P, which is
// canonical for the ristretto255 element P stands for: the element is a
// coset P + E[4] of the curve's 4-torsion, 8·(P + T) = 8·P for every T in
// E[4], and multiplying by 8 is a bijection of the prime-order subgroup.
// Unlike the ristretto255 encoding, which needs an inverse square root per
// point, the Edwards encoding needs only the affine coordinates X/Z, Y/Z,
// and those of a whole batch come from one field inversion (Montgomery's
// trick: three multiplications per point).
//
// Every scalar multiplication is edwards25519's constant-time
// Point.ScalarMult: the exponents are the parties' secrets and the points
// stand for private IDs, so nothing here is variable time.

// blindIDs writes enc(8·k·H(id)) for each id to out (pointLen bytes each).
func blindIDs(out []byte, dst []byte, k *ristretto255.Scalar, ids []string) {
	ek := edScalar(k)
	var x xmd
	x.init(dst)
	pts := make([]edwards25519.Point, len(ids))
	for i, id := range ids {
		x.hashToPoint(&pts[i], id)
		pts[i].ScalarMult(ek, &pts[i])
	}
	if err := eachAffine(pts, func(i int, enc []byte) error {
		copy(out[i*pointLen:(i+1)*pointLen], enc)
		return nil
	}); err != nil {
		panic("psi: blind: " + err.Error()) // unreachable: H(id) is never of small order
	}
}

// edScalar is k as an edwards25519 scalar (the same integer mod ℓ).
func edScalar(k *ristretto255.Scalar) *edwards25519.Scalar {
	ek, err := edwards25519.NewScalar().SetCanonicalBytes(k.Bytes())
	if err != nil {
		panic("psi: secret scalar: " + err.Error()) // unreachable: both are canonical mod ℓ
	}
	return ek
}

var (
	errIdentity     = errors.New("a point of small order (8·P is the identity)")
	errNonCanonical = errors.New("not a canonical Edwards point encoding")
)

// reblind decodes the peer's blinded points in, raises each to k and writes
// digest(enc(8·k·P)) to out (DigestLen bytes each). Non-canonical encodings,
// encodings of no curve point and points of small order are refused: an
// honest peer never sends them, and the identity would match every other
// identity. A point with a torsion component gets the same answer as its
// prime-order part (8· removes it), so it tells the sender nothing about k.
func reblind(out []byte, k *ristretto255.Scalar, in []byte) error {
	ek := edScalar(k)
	n := len(in) / pointLen
	pts := make([]edwards25519.Point, n)
	for i := range n {
		if err := decodePoint(&pts[i], in[i*pointLen:(i+1)*pointLen]); err != nil {
			return fmt.Errorf("point %d: %w", i, err)
		}
		pts[i].ScalarMult(ek, &pts[i])
	}
	return eachAffine(pts, func(i int, enc []byte) error {
		digest(out[i*DigestLen:(i+1)*DigestLen], enc)
		return nil
	})
}

// decodePoint decodes a compressed Edwards encoding, refusing the
// non-canonical ones edwards25519's SetBytes accepts (y not reduced, or
// x = 0 with the sign bit set). Small order is caught by eachAffine.
func decodePoint(p *edwards25519.Point, b []byte) error {
	var y field.Element
	if _, err := y.SetBytes(b); err != nil {
		return errNonCanonical
	}
	yb := y.Bytes()
	if !bytes.Equal(yb[:31], b[:31]) || yb[31] != b[31]&0x7f {
		return errNonCanonical
	}
	if _, err := p.SetBytes(b); err != nil {
		return errors.New("not the encoding of a curve point")
	}
	if b[31]&0x80 != 0 {
		X, _, _, _ := p.ExtendedCoordinates()
		if X.Equal(new(field.Element)) == 1 {
			return errNonCanonical
		}
	}
	return nil
}

// eachAffine calls fn(i, enc(8·P_i)) for each point, refusing a point
// whose 8·P is the identity. pts is overwritten.
func eachAffine(pts []edwards25519.Point, fn func(i int, enc []byte) error) error {
	n := len(pts)
	if n == 0 {
		return nil
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
	var inv, zi, x, y, zero field.Element
	inv.Invert(&prefix[n-1]) // Z is never 0 for a point in extended coordinates
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
		if x.Equal(&zero) == 1 {
			// In the prime-order subgroup only the identity has x = 0.
			return fmt.Errorf("point %d: %w", i, errIdentity)
		}
		y.Multiply(Y, &zi)
		copy(enc[:], y.Bytes())
		enc[31] |= byte(x.IsNegative() << 7)
		if err := fn(i, enc[:]); err != nil {
			return err
		}
	}
	return nil
}

// Constants of RFC 9496 section 4.1 (little-endian field elements).
var (
	edD            = feConst("a3785913ca4deb75abd841414d0a700098e879777940c78c73fe6f2bee6c0352")
	sqrtM1         = feConst("b0a00e4a271beec478e42fad0618432fa7d7fb3d99004d2b0bdfc14f8024832b")
	sqrtADMinusOne = feConst("1b2e7b49a0f6977ebd54781b0c8e9daffdd1f531c9fc3c0fac48832bbf316937")
	oneMinusDSq    = feConst("76c15f94c1097ce20f355ecd38a1812ce4df70beddab9499d7e0b3b2a8729002")
	dMinusOneSq    = feConst("204ded44aa5aad3199191eb02c4a9ed2eb4e9b522fd3dc4c41226cf67ab36859")
)

func feConst(h string) *field.Element {
	b, err := hex.DecodeString(h)
	if err == nil {
		var e *field.Element
		if e, err = new(field.Element).SetBytes(b); err == nil {
			return e
		}
	}
	panic("psi: field constant: " + err.Error())
}

// mapToPoint is the ristretto255 MAP of RFC 9496 section 4.3.4 (one
// Elligator 2 map), giving an Edwards representative of the element.
func mapToPoint(out *edwards25519.Point, t *field.Element) {
	var one, minusOne, r, u, v, rd, s, sPrime, c, nn, s2, w0, w1, w2, w3 field.Element
	one.One()
	minusOne.Negate(&one)
	r.Square(t)
	r.Multiply(&r, sqrtM1) // r = SQRT_M1 * t^2
	u.Add(&r, &one)
	u.Multiply(&u, oneMinusDSq) // u = (r + 1) * ONE_MINUS_D_SQ
	rd.Multiply(&r, edD)
	v.Subtract(&minusOne, &rd)
	rd.Add(&r, edD)
	v.Multiply(&v, &rd) // v = (-1 - r*D) * (r + D)
	_, wasSquare := s.SqrtRatio(&u, &v)
	sPrime.Multiply(&s, t)
	sPrime.Absolute(&sPrime)
	sPrime.Negate(&sPrime) // s' = -|s*t|
	s.Select(&s, &sPrime, wasSquare)
	c.Select(&minusOne, &r, wasSquare)
	nn.Subtract(&r, &one)
	nn.Multiply(&nn, &c)
	nn.Multiply(&nn, dMinusOneSq)
	nn.Subtract(&nn, &v) // N = c * (r - 1) * D_MINUS_ONE_SQ - v
	s2.Square(&s)
	w0.Multiply(&s, &v)
	w0.Add(&w0, &w0) // w0 = 2 * s * v
	w1.Multiply(&nn, sqrtADMinusOne)
	w2.Subtract(&one, &s2)
	w3.Add(&one, &s2)
	var X, Y, Z, T field.Element
	X.Multiply(&w0, &w3)
	Y.Multiply(&w2, &w1)
	Z.Multiply(&w1, &w3)
	T.Multiply(&w0, &w2)
	if _, err := out.SetExtendedCoordinates(&X, &Y, &Z, &T); err != nil {
		panic("psi: ristretto255 map gave a point off the curve") // unreachable
	}
}

// hashToPoint is H(id): RFC 9380 ristretto255_XMD:SHA-512_R255MAP_RO_ —
// 64 bytes of expand_message_xmd, each half (top bit ignored) through MAP,
// the two points added (RFC 9496 section 4.3.4, element derivation).
func (x *xmd) hashToPoint(out *edwards25519.Point, id string) {
	var u [64]byte
	x.expand(u[:], id)
	var t field.Element
	var p2 edwards25519.Point
	t.SetBytes(u[:32])
	mapToPoint(out, &t)
	t.SetBytes(u[32:])
	mapToPoint(&p2, &t)
	out.Add(out, &p2)
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
