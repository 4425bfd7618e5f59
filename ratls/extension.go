package ratls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Certificate extensions carrying evidence, as Gramine writes them
// (tools/sgx/ra-tls/ra_tls.h, ra_tls_attest.c).
var (
	// OIDTaggedEvidence is the TCG DICE "tagged evidence" extension
	// (2.23.133.5.4.9), Gramine's standard RA-TLS format since v1.8.
	OIDTaggedEvidence = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 9}
	// OIDLegacyQuote is Gramine's original non-standard "SGX quote"
	// extension (1.2.840.113741.1337.6): the raw quote as the extension
	// value.
	OIDLegacyQuote = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 6}
)

const (
	// TagTEEQuote is the CBOR tag of tagged evidence holding a TEE quote
	// (IANA CBOR tags registry, 60000).
	TagTEEQuote = 60000

	// ClaimPubKeyHash and ClaimNonce are the claim names of tagged evidence.
	ClaimPubKeyHash = "pubkey-hash"
	ClaimNonce      = "nonce"

	// Hash algorithm IDs of the IANA named information hash algorithm
	// registry, as used in the pubkey-hash claim.
	HashSHA256 = 1
	HashSHA384 = 7
	HashSHA512 = 8

	// MaxQuoteSize bounds the quote in either extension. Gramine's own parser
	// accepts 128..65535 bytes.
	MaxQuoteSize = 65535
	// MaxClaimsSize bounds the serialized claims map.
	MaxClaimsSize = 1024
	// MaxNonceSize bounds the optional nonce claim.
	MaxNonceSize = 256
	// maxTaggedSize bounds the whole tagged-evidence extension value: tag,
	// array and two byte string heads around the quote and the claims.
	maxTaggedSize = MaxQuoteSize + MaxClaimsSize + 16
)

// Format names the extension evidence came from.
type Format string

const (
	FormatTCG    Format = "tcg-dice-tagged-evidence"
	FormatLegacy Format = "gramine-legacy-quote"
)

func (f Format) oid() asn1.ObjectIdentifier {
	if f == FormatLegacy {
		return OIDLegacyQuote
	}
	return OIDTaggedEvidence
}

// extName names an extension in error messages.
func extName(f Format) string {
	if f == FormatLegacy {
		return "extension " + OIDLegacyQuote.String() + " (Gramine legacy quote)"
	}
	return "extension " + OIDTaggedEvidence.String() + " (TCG tagged evidence)"
}

// TaggedEvidence is the content of the TCG DICE tagged-evidence extension:
//
//	#6.60000([ quote: bstr, claims: bstr .cbor { "pubkey-hash": bstr .cbor [alg, hash], ? "nonce": bstr } ])
//
// The quote's report data is SHA-256(Claims), zero padded to 64 bytes, and
// the pubkey-hash claim is the hash of the certificate's DER
// SubjectPublicKeyInfo.
type TaggedEvidence struct {
	Quote []byte
	// Claims are the serialized claims exactly as carried (and hashed into
	// the quote's report data).
	Claims []byte
	// PubKeyHashAlg is the IANA named-information hash algorithm ID of
	// PubKeyHash (HashSHA256, HashSHA384 or HashSHA512).
	PubKeyHashAlg uint64
	PubKeyHash    []byte
	// Nonce is the optional nonce claim (nil when absent).
	Nonce []byte
}

// Evidence is what a certificate's RA-TLS extensions carry. At least one of
// TCG and Legacy is set; Gramine writes both, each with its own quote.
type Evidence struct {
	TCG *TaggedEvidence
	// Legacy is the raw quote of the legacy extension; its report data
	// starts with SHA-256 of the certificate's DER SubjectPublicKeyInfo.
	Legacy []byte
}

// Format is the format whose quote is verified: TCG when present (as
// Gramine prefers it), else legacy.
func (e *Evidence) Format() Format {
	if e.TCG != nil {
		return FormatTCG
	}
	return FormatLegacy
}

// Quote is the quote that is verified (see Format).
func (e *Evidence) Quote() []byte {
	if e.TCG != nil {
		return e.TCG.Quote
	}
	return e.Legacy
}

// ParseEvidence reads the RA-TLS extensions of cert. Each extension present
// must decode strictly; a certificate with neither is an error.
func ParseEvidence(cert *x509.Certificate) (*Evidence, error) {
	if cert == nil {
		return nil, errors.New("ratls: no certificate")
	}
	ev := &Evidence{}
	for _, ext := range cert.Extensions {
		switch {
		case ext.Id.Equal(OIDTaggedEvidence):
			te, err := ParseTaggedEvidence(ext.Value)
			if err != nil {
				return nil, err
			}
			ev.TCG = te
		case ext.Id.Equal(OIDLegacyQuote):
			q, err := ParseLegacyQuote(ext.Value)
			if err != nil {
				return nil, err
			}
			ev.Legacy = q
		}
	}
	if ev.TCG == nil && ev.Legacy == nil {
		return nil, fmt.Errorf("ratls: certificate has neither %s nor %s", extName(FormatTCG), extName(FormatLegacy))
	}
	return ev, nil
}

// ParseLegacyQuote checks the value of the legacy extension: the raw quote,
// 1 to MaxQuoteSize bytes. The quote itself is parsed by its verifier.
func ParseLegacyQuote(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("ratls: %s: empty quote", extName(FormatLegacy))
	}
	if len(b) > MaxQuoteSize {
		return nil, fmt.Errorf("ratls: %s: quote is %d bytes, at most %d allowed", extName(FormatLegacy), len(b), MaxQuoteSize)
	}
	return append([]byte(nil), b...), nil
}

// Decoding modes. Indefinite lengths, duplicate map keys, invalid UTF-8 and
// (below the outer tag) any CBOR tag are refused; Unmarshal refuses
// trailing bytes.
var (
	outerMode = mustDecMode(cbor.DecOptions{
		IndefLength: cbor.IndefLengthForbidden, DupMapKey: cbor.DupMapKeyEnforcedAPF,
		UTF8: cbor.UTF8RejectInvalid, MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16,
	})
	strictMode = mustDecMode(cbor.DecOptions{
		IndefLength: cbor.IndefLengthForbidden, DupMapKey: cbor.DupMapKeyEnforcedAPF,
		UTF8: cbor.UTF8RejectInvalid, MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16,
		TagsMd: cbor.TagsForbidden,
	})
)

func mustDecMode(o cbor.DecOptions) cbor.DecMode {
	m, err := o.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

// bstr decodes raw as a definite byte string; anything else (text, null,
// undefined, an array…) is a shape error.
func bstr(raw cbor.RawMessage, what string) ([]byte, error) {
	if len(raw) == 0 || raw[0]>>5 != 2 {
		return nil, fmt.Errorf("%s is not a byte string", what)
	}
	var b []byte
	if err := strictMode.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// array decodes raw as a definite array of exactly n items.
func array(raw []byte, n int, what string) ([]cbor.RawMessage, error) {
	if len(raw) == 0 || raw[0]>>5 != 4 {
		return nil, fmt.Errorf("%s is not an array", what)
	}
	var items []cbor.RawMessage
	if err := strictMode.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(items) != n {
		return nil, fmt.Errorf("%s has %d items, want %d", what, len(items), n)
	}
	return items, nil
}

// ParseTaggedEvidence decodes the value of the TCG tagged-evidence
// extension strictly: exactly tag 60000 over a two-item array of byte
// strings, a claims map with text keys holding a pubkey-hash claim (and
// optionally a nonce, nothing else), a hash entry of exactly [uint, bstr]
// with a known algorithm and its digest length.
func ParseTaggedEvidence(b []byte) (*TaggedEvidence, error) {
	te, err := parseTagged(b)
	if err != nil {
		return nil, fmt.Errorf("ratls: %s: %w", extName(FormatTCG), err)
	}
	return te, nil
}

func parseTagged(b []byte) (*TaggedEvidence, error) {
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	if len(b) > maxTaggedSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(b), maxTaggedSize)
	}
	if b[0]>>5 != 6 {
		return nil, errors.New("not a CBOR tag")
	}
	var tag cbor.RawTag
	if err := outerMode.Unmarshal(b, &tag); err != nil {
		return nil, fmt.Errorf("CBOR: %w", err)
	}
	if tag.Number != TagTEEQuote {
		return nil, fmt.Errorf("CBOR tag %d, want %d", tag.Number, TagTEEQuote)
	}
	items, err := array(tag.Content, 2, "tagged content")
	if err != nil {
		return nil, err
	}
	te := &TaggedEvidence{}
	if te.Quote, err = bstr(items[0], "quote"); err != nil {
		return nil, err
	}
	if len(te.Quote) == 0 || len(te.Quote) > MaxQuoteSize {
		return nil, fmt.Errorf("quote is %d bytes, want 1 to %d", len(te.Quote), MaxQuoteSize)
	}
	if te.Claims, err = bstr(items[1], "claims"); err != nil {
		return nil, err
	}
	if len(te.Claims) == 0 || len(te.Claims) > MaxClaimsSize {
		return nil, fmt.Errorf("claims are %d bytes, want 1 to %d", len(te.Claims), MaxClaimsSize)
	}
	if err := parseClaims(te); err != nil {
		return nil, err
	}
	return te, nil
}

func parseClaims(te *TaggedEvidence) error {
	if te.Claims[0]>>5 != 5 {
		return errors.New("claims are not a CBOR map")
	}
	var m map[string]cbor.RawMessage
	if err := strictMode.Unmarshal(te.Claims, &m); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	for k := range m {
		if k != ClaimPubKeyHash && k != ClaimNonce {
			return fmt.Errorf("claims: unknown claim %q", k)
		}
	}
	raw, ok := m[ClaimPubKeyHash]
	if !ok {
		return fmt.Errorf("claims: no %q claim", ClaimPubKeyHash)
	}
	entry, err := bstr(raw, "claim "+ClaimPubKeyHash)
	if err != nil {
		return err
	}
	items, err := array(entry, 2, "claim "+ClaimPubKeyHash)
	if err != nil {
		return err
	}
	if len(items[0]) == 0 || items[0][0]>>5 != 0 {
		return fmt.Errorf("claim %s: hash algorithm is not an unsigned integer", ClaimPubKeyHash)
	}
	if err := strictMode.Unmarshal(items[0], &te.PubKeyHashAlg); err != nil {
		return fmt.Errorf("claim %s: hash algorithm: %w", ClaimPubKeyHash, err)
	}
	want := hashLen(te.PubKeyHashAlg)
	if want == 0 {
		return fmt.Errorf("claim %s: hash algorithm %d not supported (want 1 sha-256, 7 sha-384 or 8 sha-512)", ClaimPubKeyHash, te.PubKeyHashAlg)
	}
	if te.PubKeyHash, err = bstr(items[1], "claim "+ClaimPubKeyHash+" hash"); err != nil {
		return err
	}
	if len(te.PubKeyHash) != want {
		return fmt.Errorf("claim %s: hash is %d bytes, want %d for algorithm %d", ClaimPubKeyHash, len(te.PubKeyHash), want, te.PubKeyHashAlg)
	}
	if raw, ok := m[ClaimNonce]; ok {
		if te.Nonce, err = bstr(raw, "claim "+ClaimNonce); err != nil {
			return err
		}
		if len(te.Nonce) == 0 || len(te.Nonce) > MaxNonceSize {
			return fmt.Errorf("claim %s is %d bytes, want 1 to %d", ClaimNonce, len(te.Nonce), MaxNonceSize)
		}
	}
	return nil
}

func hashLen(alg uint64) int {
	switch alg {
	case HashSHA256:
		return 32
	case HashSHA384:
		return 48
	case HashSHA512:
		return 64
	}
	return 0
}

// CBOR encoding. Heads use the shortest form, as libcbor (Gramine) and RFC
// 8949 deterministic encoding do, so the claims bytes — which are hashed
// into the quote — come out byte for byte as Gramine's.

func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendBstr(b, v []byte) []byte { return append(appendHead(b, 2, uint64(len(v))), v...) }

// MarshalClaims returns the serialized claims map binding spkiDER (a DER
// SubjectPublicKeyInfo), as Gramine builds it:
//
//	{ "pubkey-hash": bstr(serialize([1, bstr(SHA-256(spkiDER))])) }
func MarshalClaims(spkiDER []byte) []byte {
	h := sha256.Sum256(spkiDER)
	entry := appendHead(nil, 4, 2)
	entry = appendHead(entry, 0, HashSHA256)
	entry = appendBstr(entry, h[:])
	b := appendHead(nil, 5, 1)
	b = appendHead(b, 3, uint64(len(ClaimPubKeyHash)))
	b = append(b, ClaimPubKeyHash...)
	return appendBstr(b, entry)
}

// MarshalTaggedEvidence returns the value of the TCG tagged-evidence
// extension: tag 60000 over [bstr quote, bstr claims].
func MarshalTaggedEvidence(quote, claims []byte) ([]byte, error) {
	if len(quote) == 0 || len(quote) > MaxQuoteSize {
		return nil, fmt.Errorf("ratls: %s: quote is %d bytes, want 1 to %d", extName(FormatTCG), len(quote), MaxQuoteSize)
	}
	if len(claims) == 0 || len(claims) > MaxClaimsSize {
		return nil, fmt.Errorf("ratls: %s: claims are %d bytes, want 1 to %d", extName(FormatTCG), len(claims), MaxClaimsSize)
	}
	b := appendHead(make([]byte, 0, len(quote)+len(claims)+16), 6, TagTEEQuote)
	b = appendHead(b, 4, 2)
	b = appendBstr(b, quote)
	return appendBstr(b, claims), nil
}
