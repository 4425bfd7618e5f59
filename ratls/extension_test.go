package ratls

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

// Gramine's claims for a key: a1 (map, 1 pair) 6b "pubkey-hash" 58 24 (bstr,
// 36 bytes) 82 (array, 2) 01 (sha-256) 58 20 (bstr, 32) <hash>.
func TestMarshalClaimsMatchesGramineLayout(t *testing.T) {
	spki := []byte("some DER SubjectPublicKeyInfo")
	h := sha256.Sum256(spki)
	want := append([]byte{0xa1, 0x6b}, "pubkey-hash"...)
	want = append(want, 0x58, 0x24, 0x82, 0x01, 0x58, 0x20)
	want = append(want, h[:]...)
	if got := MarshalClaims(spki); !bytes.Equal(got, want) {
		t.Fatalf("claims\n got %x\nwant %x", got, want)
	}
	// The same value through a general CBOR encoder in deterministic
	// (core) mode.
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	entry, err := em.Marshal([]any{uint64(1), h[:]})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := em.Marshal(map[string][]byte{"pubkey-hash": entry})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ref, want) {
		t.Fatalf("deterministic CBOR encoding %x differs from %x", ref, want)
	}
}

func TestMarshalTaggedEvidenceLayout(t *testing.T) {
	quote := bytes.Repeat([]byte{0x5a}, 712)
	claims := MarshalClaims([]byte("k"))
	got, err := MarshalTaggedEvidence(quote, claims)
	if err != nil {
		t.Fatal(err)
	}
	// d9 ea60 = tag 60000; 82 = array(2); 59 02c8 = bstr(712); 58 33 = bstr(51).
	head := []byte{0xd9, 0xea, 0x60, 0x82, 0x59, 0x02, 0xc8}
	if !bytes.HasPrefix(got, head) {
		t.Fatalf("prefix %x, want %x", got[:len(head)], head)
	}
	mid := got[len(head)+len(quote):]
	if !bytes.Equal(mid[:2], []byte{0x58, 0x33}) || !bytes.Equal(mid[2:], claims) {
		t.Fatalf("claims part %x", mid)
	}
	em, _ := cbor.CoreDetEncOptions().EncMode()
	ref, err := em.Marshal(cbor.Tag{Number: TagTEEQuote, Content: [][]byte{quote, claims}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ref, got) {
		t.Fatal("differs from deterministic CBOR encoding")
	}
	te, err := ParseTaggedEvidence(got)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("k"))
	if !bytes.Equal(te.Quote, quote) || !bytes.Equal(te.Claims, claims) || te.PubKeyHashAlg != HashSHA256 ||
		!bytes.Equal(te.PubKeyHash, h[:]) || te.Nonce != nil {
		t.Fatalf("round trip: %+v", te)
	}
	if _, err := MarshalTaggedEvidence(nil, claims); err == nil {
		t.Error("empty quote accepted")
	}
	if _, err := MarshalTaggedEvidence(quote, make([]byte, MaxClaimsSize+1)); err == nil {
		t.Error("oversized claims accepted")
	}
}

// cb encodes v with a deterministic CBOR encoder, for building malformed
// evidence.
func cb(t testing.TB, v any) []byte {
	t.Helper()
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseTaggedEvidenceStrict(t *testing.T) {
	q := bytes.Repeat([]byte{1}, 64)
	h := sha256.Sum256([]byte("k"))
	entry := func(alg any, hash any) []byte { return cb(t, []any{alg, hash}) }
	claimsOf := func(m map[string]any) []byte { return cb(t, m) }
	tagged := func(content any) []byte { return cb(t, cbor.Tag{Number: TagTEEQuote, Content: content}) }
	good := claimsOf(map[string]any{"pubkey-hash": entry(uint64(1), h[:])})

	withNonce := claimsOf(map[string]any{"pubkey-hash": entry(uint64(1), h[:]), "nonce": []byte("n0nce")})
	te, err := ParseTaggedEvidence(tagged([][]byte{q, withNonce}))
	if err != nil || string(te.Nonce) != "n0nce" {
		t.Fatalf("nonce claim: %v %+v", err, te)
	}

	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"not a tag", cb(t, [][]byte{q, good}), "not a CBOR tag"},
		{"wrong tag", cb(t, cbor.Tag{Number: 60001, Content: [][]byte{q, good}}), "CBOR tag 60001, want 60000"},
		{"three items", tagged([][]byte{q, good, q}), "has 3 items, want 2"},
		{"one item", tagged([][]byte{q}), "has 1 items, want 2"},
		{"map content", tagged(map[string][]byte{"q": q}), "tagged content is not an array"},
		{"quote as text", tagged([]any{"quote", good}), "quote is not a byte string"},
		{"quote null", tagged([]any{nil, good}), "quote is not a byte string"},
		{"empty quote", tagged([][]byte{{}, good}), "quote is 0 bytes"},
		{"oversized quote", tagged([][]byte{make([]byte, MaxQuoteSize+1), good}), "quote is 65536 bytes, want 1 to 65535"},
		{"oversized extension", tagged([][]byte{make([]byte, MaxQuoteSize), make([]byte, MaxClaimsSize+10)}), "bytes, at most"},
		{"claims as map", tagged([]any{q, map[string]any{"pubkey-hash": entry(uint64(1), h[:])}}), "claims is not a byte string"},
		{"claims not a map", tagged([][]byte{q, cb(t, []int{1})}), "claims are not a CBOR map"},
		{"claims trailing", tagged([][]byte{q, append(append([]byte{}, good...), 0)}), "extraneous data"},
		{"no pubkey-hash", tagged([][]byte{q, claimsOf(map[string]any{"nonce": []byte("x")})}), `no "pubkey-hash" claim`},
		{"unknown claim", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": entry(uint64(1), h[:]), "x": 1})}), `unknown claim "x"`},
		{"int key", tagged([][]byte{q, cb(t, map[int]int{1: 1})}), "claims:"},
		{"entry not bstr", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": []any{uint64(1), h[:]}})}), "claim pubkey-hash is not a byte string"},
		{"entry 3 items", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": cb(t, []any{1, h[:], 2})})}), "has 3 items"},
		{"alg negative", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": entry(-1, h[:])})}), "not an unsigned integer"},
		{"alg unknown", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": entry(uint64(2), h[:])})}), "hash algorithm 2 not supported"},
		{"hash short", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": entry(uint64(1), h[:31])})}), "hash is 31 bytes, want 32"},
		{"sha384 len", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": entry(uint64(7), h[:])})}), "want 48"},
		{"hash as text", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": entry(uint64(1), "x")})}), "hash is not a byte string"},
		{"empty nonce", tagged([][]byte{q, claimsOf(map[string]any{"pubkey-hash": entry(uint64(1), h[:]), "nonce": []byte{}})}), "claim nonce is 0 bytes"},
		{"trailing", append(tagged([][]byte{q, good}), 0), "extraneous data"},
		{"indefinite array", append(append([]byte{0xd9, 0xea, 0x60, 0x9f}, cb(t, q)...), append(cb(t, good), 0xff)...), "indefinite"},
		{"indefinite bstr", append([]byte{0xd9, 0xea, 0x60, 0x82, 0x5f, 0x41, 1, 0xff}, cb(t, good)...), "indefinite"},
		{"nested tag", tagged([]any{cbor.Tag{Number: 24, Content: q}, good}), "CBOR tag isn't allowed"},
		{"truncated", tagged([][]byte{q, good})[:40], "CBOR"},
		{"duplicate key", tagged([][]byte{q, append([]byte{0xa2}, append(good[1:], good[1:]...)...)}), "duplicate map key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTaggedEvidence(c.in)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "ratls: extension 2.23.133.5.4.9 (TCG tagged evidence): ") {
				t.Errorf("error does not name the extension: %v", err)
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not contain %q", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("multi-line error %q", msg)
			}
		})
	}
}

func TestParseEvidence(t *testing.T) {
	env := newSimEnv(t)
	iss := env.issuer(t, mrGood, false)
	c := newCert(t, iss, CertOptions{})
	ev, err := ParseEvidence(c.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if ev.TCG == nil || ev.Legacy == nil || ev.Format() != FormatTCG || !bytes.Equal(ev.Quote(), ev.TCG.Quote) {
		t.Fatalf("evidence %+v", ev)
	}
	legacyOnly := newCert(t, iss, CertOptions{Extensions: LegacyOnly})
	ev, err = ParseEvidence(legacyOnly.Leaf)
	if err != nil || ev.TCG != nil || ev.Format() != FormatLegacy || !bytes.Equal(ev.Quote(), ev.Legacy) {
		t.Fatalf("legacy only: %v %+v", err, ev)
	}

	none := buildLeaf(t, leafSpec{})
	if _, err := ParseEvidence(none.Leaf); err == nil || !strings.Contains(err.Error(), "neither extension 2.23.133.5.4.9") ||
		!strings.Contains(err.Error(), "1.2.840.113741.1337.6") {
		t.Errorf("no extensions: %v", err)
	}
	bad := buildLeaf(t, leafSpec{exts: []pkix.Extension{{Id: OIDTaggedEvidence, Value: []byte{0xd9, 0xea, 0x60, 0x80}}}})
	if _, err := ParseEvidence(bad.Leaf); err == nil || !strings.Contains(err.Error(), "extension 2.23.133.5.4.9 (TCG tagged evidence)") {
		t.Errorf("bad TCG: %v", err)
	}
	big := buildLeaf(t, leafSpec{exts: []pkix.Extension{{Id: OIDLegacyQuote, Value: make([]byte, MaxQuoteSize+1)}}})
	if _, err := ParseEvidence(big.Leaf); err == nil || !strings.Contains(err.Error(), "extension 1.2.840.113741.1337.6 (Gramine legacy quote): quote is 65536 bytes") {
		t.Errorf("big legacy: %v", err)
	}
	if _, err := ParseEvidence(nil); err == nil {
		t.Error("nil certificate accepted")
	}
}

// The OIDs' DER bytes are those Gramine's ra_tls.h defines and its parser
// searches the extensions for (with memmem), followed by an OCTET STRING
// with a two-byte long-form length (04 82 hi lo), which its
// find_oid_in_cert_extensions requires.
func TestExtensionsAsGramineParsesThem(t *testing.T) {
	env := newSimEnv(t)
	c := newCert(t, env.issuer(t, mrGood, false), CertOptions{})
	for _, tc := range []struct {
		oid []byte
		id  []int
	}{
		{[]byte{0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x8A, 0x39, 0x06}, OIDLegacyQuote},
		{[]byte{0x06, 0x06, 0x67, 0x81, 0x05, 0x05, 0x04, 0x09}, OIDTaggedEvidence},
	} {
		i := bytes.Index(c.Leaf.Raw, tc.oid)
		if i < 0 {
			t.Fatalf("OID bytes %x not in the certificate", tc.oid)
		}
		p := c.Leaf.Raw[i+len(tc.oid):]
		if p[0] != 0x04 || p[1] != 0x82 {
			t.Fatalf("OID %x followed by %x, want 04 82 (non-critical, OCTET STRING, 2-byte length)", tc.oid, p[:2])
		}
		n := int(p[2])<<8 | int(p[3])
		var want []byte
		for _, e := range c.Leaf.Extensions {
			if e.Id.Equal(tc.id) {
				want = e.Value
			}
		}
		if n < 128 || n > 65535 || !bytes.Equal(p[4:4+n], want) {
			t.Fatalf("value of %x: %d bytes", tc.oid, n)
		}
	}
}

// FuzzParseExtension feeds both extension parsers. Whatever parses must
// re-encode to an input that parses to the same values, respect the size
// bounds, and never alias the input.
func FuzzParseExtension(f *testing.F) {
	env := newSimEnv(f)
	c := newCert(f, env.issuer(f, mrGood, false), CertOptions{})
	for _, e := range c.Leaf.Extensions {
		switch {
		case e.Id.Equal(OIDTaggedEvidence):
			f.Add(true, e.Value)
			f.Add(true, e.Value[:len(e.Value)/2])
		case e.Id.Equal(OIDLegacyQuote):
			f.Add(false, e.Value)
		}
	}
	h := sha256.Sum256([]byte("k"))
	q := bytes.Repeat([]byte{7}, 16)
	claims := cb(f, map[string]any{"pubkey-hash": cb(f, []any{uint64(8), bytes.Repeat(h[:], 2)}), "nonce": []byte("n")})
	f.Add(true, cb(f, cbor.Tag{Number: TagTEEQuote, Content: [][]byte{q, claims}}))
	f.Add(true, []byte{0xd9, 0xea, 0x60, 0x82, 0x41, 0x00, 0x41, 0xa0})
	f.Add(true, []byte{0xd9, 0xea, 0x60, 0x9f, 0xff})
	if real := dcaptest.ReadOptional("sgx-dcap/quote.bin"); real != nil {
		f.Add(false, real)
		if v, err := MarshalTaggedEvidence(real, MarshalClaims([]byte("spki"))); err == nil {
			f.Add(true, v)
		}
	}
	f.Fuzz(func(t *testing.T, tcg bool, data []byte) {
		orig := bytes.Clone(data)
		if !tcg {
			q, err := ParseLegacyQuote(data)
			if err != nil {
				if !strings.Contains(err.Error(), "extension 1.2.840.113741.1337.6") {
					t.Fatalf("error does not name the extension: %v", err)
				}
				return
			}
			if len(q) == 0 || len(q) > MaxQuoteSize || !bytes.Equal(q, data) {
				t.Fatalf("legacy quote of %d bytes", len(q))
			}
			if len(q) > 0 {
				q[0] ^= 1
				if !bytes.Equal(data, orig) {
					t.Fatal("result aliases the input")
				}
			}
			return
		}
		te, err := ParseTaggedEvidence(data)
		if err != nil {
			if !strings.Contains(err.Error(), "extension 2.23.133.5.4.9") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error: %q", err)
			}
			return
		}
		if len(te.Quote) == 0 || len(te.Quote) > MaxQuoteSize || len(te.Claims) == 0 || len(te.Claims) > MaxClaimsSize ||
			hashLen(te.PubKeyHashAlg) != len(te.PubKeyHash) || len(te.Nonce) > MaxNonceSize {
			t.Fatalf("bounds violated: %+v", te)
		}
		re, err := MarshalTaggedEvidence(te.Quote, te.Claims)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		te2, err := ParseTaggedEvidence(re)
		if err != nil {
			t.Fatalf("re-encoded evidence does not parse: %v", err)
		}
		if !bytes.Equal(te2.Quote, te.Quote) || !bytes.Equal(te2.Claims, te.Claims) || te2.PubKeyHashAlg != te.PubKeyHashAlg ||
			!bytes.Equal(te2.PubKeyHash, te.PubKeyHash) || !bytes.Equal(te2.Nonce, te.Nonce) {
			t.Fatal("re-encoded evidence parses differently")
		}
		te.Quote[0] ^= 1
		te.Claims[0] ^= 1
		if !bytes.Equal(data, orig) {
			t.Fatal("result aliases the input")
		}
	})
}
