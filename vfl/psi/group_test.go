package psi

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"github.com/gtank/ristretto255"
)

// hashToGroup is the tests' reference hash to group, on
// gtank/ristretto255: id to a ristretto255 element as the RFC 9380 suite
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
// bytes; the same code (xmd) as blindIDs, without the per-session
// precomputation kept.
func expandXMD(out []byte, dst []byte, msg string) {
	var x xmd
	x.init(dst)
	x.expand(out, msg)
}

// TestHashToGroupSeparation: hash-to-group is deterministic and separated
// by session and by ID.
func TestHashToGroupSeparation(t *testing.T) {
	var s1, s2 [32]byte
	s2[0] = 1
	a := hashToGroup(hashDST(s1), "alice")
	if a.Equal(hashToGroup(hashDST(s1), "alice")) != 1 {
		t.Fatal("hash-to-group not deterministic")
	}
	if a.Equal(hashToGroup(hashDST(s2), "alice")) == 1 {
		t.Fatal("different sessions map an ID to the same element")
	}
	if a.Equal(hashToGroup(hashDST(s1), "alicf")) == 1 {
		t.Fatal("different IDs map to the same element")
	}
	if len(hashDST(s1)) != 77 || !strings.HasPrefix(string(hashDST(s1)), "teeml-psi-v2:") {
		t.Fatalf("DST %q", hashDST(s1))
	}
}

// TestExpandXMDMatchesGeneric checks expandXMD (fixed 64-byte output)
// against a generic expand_message_xmd, itself checked against the SHA-512
// vectors of RFC 9380 appendix K.3.
func TestExpandXMDMatchesGeneric(t *testing.T) {
	dst := []byte("QUUX-V01-CS02-with-expander-SHA512-256")
	for _, msg := range []string{"", "abc", "abcdef0123456789", strings.Repeat("q", 200)} {
		var got [64]byte
		expandXMD(got[:], dst, msg)
		if want := expandGeneric(dst, msg, 64); !bytes.Equal(got[:], want) {
			t.Fatalf("msg %q: %x, want %x", msg, got, want)
		}
	}
	for _, v := range []struct {
		msg string
		n   int
		hex string
	}{
		{"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"},
		{"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"},
		{"abc", 0x80, "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb1347ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b488431851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1"},
	} {
		want, _ := hex.DecodeString(v.hex)
		if got := expandGeneric(dst, v.msg, v.n); !bytes.Equal(got, want) {
			t.Fatalf("RFC 9380 K.3 msg %q len %d: %x, want %x", v.msg, v.n, got, want)
		}
	}
}

// expandGeneric is RFC 9380 section 5.3.1 expand_message_xmd with SHA-512
// for any len_in_bytes up to 255*64.
func expandGeneric(dst []byte, msg string, n int) []byte {
	dstPrime := append(append([]byte(nil), dst...), byte(len(dst)))
	h := sha512.New()
	h.Write(make([]byte, 128))
	h.Write([]byte(msg))
	h.Write([]byte{byte(n >> 8), byte(n), 0})
	h.Write(dstPrime)
	b0 := h.Sum(nil)
	var out, prev []byte
	for i := 1; len(out) < n; i++ {
		h.Reset()
		if i == 1 {
			h.Write(b0)
		} else {
			x := make([]byte, len(b0))
			for j := range x {
				x[j] = b0[j] ^ prev[j]
			}
			h.Write(x)
		}
		h.Write([]byte{byte(i)})
		h.Write(dstPrime)
		prev = h.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

// TestDoubleBlindingCommutes: (H(x)^a)^b and (H(x)^b)^a give the same
// digest, and different IDs do not.
func TestDoubleBlindingCommutes(t *testing.T) {
	a, _ := newSecret(rand.Reader)
	b, _ := newSecret(rand.Reader)
	dst := []byte("teeml-psi-v2:test")
	ids := []string{"x", "y", "用户"}
	pa, pb := make([]byte, 3*pointLen), make([]byte, 3*pointLen)
	blindIDs(pa, dst, a, ids)
	blindIDs(pb, dst, b, ids)
	da, db := make([]byte, 3*DigestLen), make([]byte, 3*DigestLen)
	if err := reblind(da, b, pa); err != nil {
		t.Fatal(err)
	}
	if err := reblind(db, a, pb); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Fatal("double blinding does not commute")
	}
	if bytes.Equal(da[:DigestLen], da[DigestLen:2*DigestLen]) {
		t.Fatal("two IDs share a digest")
	}
}

func TestReblindRefusesBadPoints(t *testing.T) {
	k, _ := newSecret(rand.Reader)
	out := make([]byte, DigestLen)
	if err := reblind(out, k, make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("identity accepted: %v", err)
	}
	bad := bytes.Repeat([]byte{0xff}, 32)
	if err := reblind(out, k, bad); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Fatalf("non-canonical accepted: %v", err)
	}
	_ = ristretto255.NewElement()
}

// TestOneWayMapVectors pins the ristretto255 one-way map that hashToGroup
// ends with to RFC 9496 appendix A.3 (inputs are the SHA-512 images of the
// RFC's strings), so a library upgrade that changed the map, and with it
// every blinded value, fails here rather than silently breaking PSI
// between parties on different builds.
func TestOneWayMapVectors(t *testing.T) {
	vectors := []struct{ in, want string }{
		{"Ristretto is traditionally a short shot of espresso coffee", "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"},
		{"made with the normal amount of ground coffee but extracted with", "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b"},
		{"about half the amount of water in the same amount of time", "006ccd2a9e6867e6a2c5cea83d3302cc9de128dd2a9a57dd8ee7b9d7ffe02826"},
		{"by using a finer grind.", "f8f0c87cf237953c5890aec3998169005dae3eca1fbb04548c635953c817f92a"},
		{"This produces a concentrated shot of coffee per volume.", "ae81e7dedf20a497e10c304a765c1767a42d6e06029758d2d7e8ef7cc4c41179"},
		{"Just pulling a normal shot short will produce a weaker shot", "e2705652ff9f5e44d3e841bf1c251cf7dddb77d140870d1ab2ed64f1a9ce8628"},
		{"and is not a Ristretto as some believe.", "80bd07262511cdde4863f8a7434cef696750681cb9510eea557088f76d9e5065"},
	}
	for i, v := range vectors {
		h := sha512.Sum512([]byte(v.in))
		e, err := ristretto255.NewElement().SetUniformBytes(h[:])
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(e.Bytes()); got != v.want {
			t.Errorf("RFC 9496 A.3 #%d: %s, want %s", i, got, v.want)
		}
	}
}

var errRistretto = errors.New("not a canonical ristretto255 encoding")

// decodeRistretto is the ristretto255 decoding of RFC 9496 section 4.3.1
// into an Edwards point (a representative of the element), refusing
// non-canonical encodings and the identity: the tests' bridge from
// gtank/ristretto255 elements to the Edwards points the protocol uses.
func decodeRistretto(p *edwards25519.Point, b []byte) error {
	var s field.Element
	if _, err := s.SetBytes(b); err != nil {
		return errRistretto
	}
	// SetBytes ignores the top bit and reduces values >= p: a canonical
	// encoding is the one that re-encodes to itself, and s is non-negative.
	if !bytes.Equal(s.Bytes(), b) || s.IsNegative() == 1 {
		return errRistretto
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
		return errRistretto
	}
	if _, err := p.SetExtendedCoordinates(&x, &y, &one, &t); err != nil {
		return errRistretto // unreachable: the formulas give a curve point
	}
	return nil
}

// edwardsOf is the Edwards point 8·P for a gtank/ristretto255 element:
// the canonical form the protocol encodes.
func edwardsOf(t testing.TB, e *ristretto255.Element) *edwards25519.Point {
	t.Helper()
	var p edwards25519.Point
	if err := decodeRistretto(&p, e.Bytes()); err != nil {
		t.Fatal(err)
	}
	return p.MultByCofactor(&p)
}

// TestDecodeRistrettoMatchesLibrary checks the test oracle decodeRistretto
// against gtank/ristretto255: for multiples of the generator it must give
// the matching multiple of the Ed25519 base point (RFC 9496: the
// ristretto255 generator is the coset of that point), up to the 4-torsion
// that 8·P removes; on random and mutated bytes it must accept exactly what
// the library accepts.
func TestDecodeRistrettoMatchesLibrary(t *testing.T) {
	var p edwards25519.Point
	for i := range 32 {
		k, _ := newSecret(rand.Reader)
		enc := ristretto255.NewElement().ScalarBaseMult(k).Bytes()
		if err := decodeRistretto(&p, enc); err != nil {
			t.Fatalf("#%d: %x: %v", i, enc, err)
		}
		want := new(edwards25519.Point).ScalarBaseMult(edScalar(k))
		if new(edwards25519.Point).MultByCofactor(&p).Equal(want.MultByCofactor(want)) != 1 {
			t.Fatalf("#%d: %x decodes to another point", i, enc)
		}
		for bit := range 256 {
			m := bytes.Clone(enc)
			m[bit/8] ^= 1 << (bit % 8)
			_, libErr := ristretto255.NewElement().SetCanonicalBytes(m)
			if err := decodeRistretto(&p, m); (err == nil) != (libErr == nil) {
				t.Fatalf("%x: decodeRistretto says %v, the library %v", m, err, libErr)
			}
		}
	}
}

// TestHashToPointMatchesLibrary: the protocol's hash to group (teeml's
// MAP, precomputed XMD state) is gtank/ristretto255's SetUniformBytes over
// expand_message_xmd (whose map is pinned to RFC 9496 A.3 above).
func TestHashToPointMatchesLibrary(t *testing.T) {
	dst := hashDST([32]byte{7})
	var x xmd
	x.init(dst)
	for _, id := range []string{"", "a", "user-0000000001", strings.Repeat("長い", 100), "\x00"} {
		var p edwards25519.Point
		x.hashToPoint(&p, id)
		if p.MultByCofactor(&p).Equal(edwardsOf(t, hashToGroup(dst, id))) != 1 {
			t.Fatalf("id %q: hash to group differs from the library's", id)
		}
	}
	// The map alone on the RFC 9496 A.3 inputs.
	for _, in := range []string{"Ristretto is traditionally a short shot of espresso coffee", "by using a finer grind."} {
		h := sha512.Sum512([]byte(in))
		var t1, t2 field.Element
		t1.SetBytes(h[:32])
		t2.SetBytes(h[32:])
		var p, q edwards25519.Point
		mapToPoint(&p, &t1)
		mapToPoint(&q, &t2)
		p.Add(&p, &q)
		want, _ := ristretto255.NewElement().SetUniformBytes(h[:])
		if p.MultByCofactor(&p).Equal(edwardsOf(t, want)) != 1 {
			t.Fatalf("%q: map differs from RFC 9496 A.3", in)
		}
	}
}

// TestBlindMatchesReference: blindIDs sends enc(8·k·H(id)), with H and the
// scalar multiplication from gtank/ristretto255 as the reference, and the
// batched affine conversion gives the per-point Edwards encoding.
func TestBlindMatchesReference(t *testing.T) {
	k, _ := newSecret(rand.Reader)
	dst := hashDST([32]byte{7})
	for _, n := range []int{1, 2, 3, 17} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = strings.Repeat("u", i+1)
		}
		got := make([]byte, n*pointLen)
		blindIDs(got, dst, k, ids)
		for i, id := range ids {
			want := edwardsOf(t, ristretto255.NewElement().ScalarMult(k, hashToGroup(dst, id))).Bytes()
			if !bytes.Equal(got[i*pointLen:(i+1)*pointLen], want) {
				t.Fatalf("n=%d id %q: %x, want %x", n, id, got[i*pointLen:(i+1)*pointLen], want)
			}
		}
	}
}

// TestDecodePoint: decodePoint accepts exactly the canonical encodings of
// curve points (those that re-encode to themselves), and reblind refuses
// points of small order.
func TestDecodePoint(t *testing.T) {
	k, _ := newSecret(rand.Reader)
	good := make([]byte, pointLen)
	blindIDs(good, hashDST([32]byte{1}), k, []string{"x"})
	checkDecodePoint(t, good)
	for bit := range 256 {
		m := bytes.Clone(good)
		m[bit/8] ^= 1 << (bit % 8)
		checkDecodePoint(t, m)
	}
	for range 500 {
		b := make([]byte, 32)
		rand.Read(b)
		checkDecodePoint(t, b)
	}
	pBytes, _ := hex.DecodeString("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	negZero, _ := hex.DecodeString("0100000000000000000000000000000000000000000000000000000000000080")
	for _, b := range [][]byte{pBytes, negZero, bytes.Repeat([]byte{0xff}, 32)} {
		checkDecodePoint(t, b)
		var p edwards25519.Point
		if err := decodePoint(&p, b); !errors.Is(err, errNonCanonical) {
			t.Fatalf("%x: %v, want non-canonical", b, err)
		}
	}
	// Small order: the identity, the point of order 2, and one of order 8.
	out := make([]byte, DigestLen)
	for _, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
	} {
		b, _ := hex.DecodeString(h)
		if err := reblind(out, k, b); !errors.Is(err, errIdentity) {
			t.Fatalf("%s: %v, want small order refused", h, err)
		}
	}
}

func checkDecodePoint(t testing.TB, b []byte) {
	t.Helper()
	var p edwards25519.Point
	err := decodePoint(&p, b)
	q, libErr := new(edwards25519.Point).SetBytes(b)
	canonical := libErr == nil && bytes.Equal(q.Bytes(), b)
	if (err == nil) != canonical {
		t.Fatalf("%x: decodePoint says %v; library %v, canonical %v", b, err, libErr, canonical)
	}
	if err == nil && p.Equal(q) != 1 {
		t.Fatalf("%x: decodes to another point", b)
	}
}

// TestDigestVector pins the protocol's doubly blinded digest (version
// teeml-psi-v2: hash to group, two exponentiations, digest of the Edwards
// encoding of 64·P) for fixed secrets, so that a change in any step, or in
// a library under it, fails here instead of making two builds silently
// find an empty intersection.
func TestDigestVector(t *testing.T) {
	scalar := func(seed byte) *ristretto255.Scalar {
		s, err := newSecret(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := scalar(1), scalar(2)
	ids := []string{"alice", "bob"}
	pts := make([]byte, len(ids)*pointLen)
	blindIDs(pts, hashDST([32]byte{9}), a, ids)
	out := make([]byte, len(ids)*DigestLen)
	if err := reblind(out, b, pts); err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(out), "3a5c164b1628dec6fdde989dceda36f2049fe09de6a2428e6ab13a384950ee5c"; got != want {
		t.Fatalf("digests %s, want %s", got, want)
	}
	// The same from the library's group operations: 8·(8·(a·b·H(id))).
	for i, id := range ids {
		q := ristretto255.NewElement().ScalarMult(a, hashToGroup(hashDST([32]byte{9}), id))
		q.ScalarMult(b, q)
		p := edwardsOf(t, q)
		want := make([]byte, DigestLen)
		digest(want, p.MultByCofactor(p).Bytes())
		if !bytes.Equal(out[i*DigestLen:(i+1)*DigestLen], want) {
			t.Fatalf("id %q: %x, want %x", id, out[i*DigestLen:(i+1)*DigestLen], want)
		}
	}
}
