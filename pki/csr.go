package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/teeml/teeml/attest"
)

// OIDEvidence identifies the CSR extension (requested through the PKCS #9
// extensionRequest attribute) that carries the TEE evidence of the identity
// key: the TCG DICE tcg-dice-conceptual-message-wrapper extension
// (2.23.133.5.4.9, TCG DICE Attestation Architecture; the OID RA-TLS's TCG
// extension uses too), whose value is a conceptual message wrapper
// (draft-ietf-rats-msg-wrap) CBOR record [CMWType, TeemlEvidence DER]. The
// CA never copies it into a certificate. See docs/trust-model.md for why.
var OIDEvidence = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 9}

// OIDEvidenceV1 is the extension teeml wrote before: the bare TeemlEvidence
// DER under the provisional, unregistered arc 1.3.6.1.4.1.99999.1.1. CSRs
// carrying it are still parsed (made by an older teeml pki csr); new CSRs
// never use it.
var OIDEvidenceV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}

// evidenceVersion is the only evidence extension version.
const evidenceVersion = 1

// maxEvidence bounds each of the quote and the collateral in a CSR (DCAP
// collateral with its certificate chains and CRLs is tens of kilobytes).
const maxEvidence = 1 << 20

// evidenceExt is the DER value of the evidence extension:
//
//	TeemlEvidence ::= SEQUENCE {
//	    version    INTEGER (1),
//	    tee        UTF8String,    -- "sgx", "tdx" or "sev-snp"
//	    simulated  BOOLEAN,       -- true for attest/sim evidence
//	    quote      OCTET STRING,  -- raw quote / attestation report
//	    collateral OCTET STRING   -- platform collateral, may be empty
//	}
//
// The report data inside the quote is SHA-256(DER SubjectPublicKeyInfo of
// the CSR key), zero padded to 64 bytes (Gramine's legacy RA-TLS binding).
// tee and simulated are declarations only: the verifier detects both from
// the quote and refuses a mismatch.
type evidenceExt struct {
	Version    int
	TEE        string `asn1:"utf8"`
	Simulated  bool
	Quote      []byte
	Collateral []byte
}

func marshalEvidence(ev *attest.Evidence) ([]byte, error) {
	if ev == nil || len(ev.Quote) == 0 {
		return nil, errors.New("issuer returned no evidence")
	}
	if len(ev.Quote) > maxEvidence || len(ev.Collateral) > maxEvidence {
		return nil, fmt.Errorf("evidence too large (quote %d, collateral %d bytes; at most %d each)", len(ev.Quote), len(ev.Collateral), maxEvidence)
	}
	return asn1.Marshal(evidenceExt{Version: evidenceVersion, TEE: string(ev.TEE), Simulated: ev.Simulated,
		Quote: ev.Quote, Collateral: ev.Collateral})
}

// parseEvidenceExtension decodes the value of extension OIDEvidence (a
// CMW of type CMWType), or of OIDEvidenceV1 (bare DER) when v1.
func parseEvidenceExtension(value []byte, v1 bool) (*attest.Evidence, error) {
	if v1 {
		return parseEvidence(value)
	}
	typ, der, err := parseCMW(value)
	if err != nil {
		return nil, fmt.Errorf("evidence extension %s: %w", OIDEvidence, err)
	}
	if typ != CMWType {
		return nil, fmt.Errorf("evidence extension %s: CMW type %q, want %q", OIDEvidence, typ, CMWType)
	}
	return parseEvidence(der)
}

func parseEvidence(der []byte) (*attest.Evidence, error) {
	var e evidenceExt
	rest, err := asn1.Unmarshal(der, &e)
	if err != nil {
		return nil, fmt.Errorf("evidence extension: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("evidence extension: %d bytes after the value", len(rest))
	}
	if e.Version != evidenceVersion {
		return nil, fmt.Errorf("evidence extension: version %d, want %d", e.Version, evidenceVersion)
	}
	switch attest.TEE(e.TEE) {
	case attest.SGX, attest.TDX, attest.SNP:
	default:
		return nil, fmt.Errorf("evidence extension: unknown TEE %q", e.TEE)
	}
	if len(e.Quote) == 0 {
		return nil, errors.New("evidence extension: empty quote")
	}
	if len(e.Quote) > maxEvidence || len(e.Collateral) > maxEvidence {
		return nil, fmt.Errorf("evidence extension: too large (quote %d, collateral %d bytes)", len(e.Quote), len(e.Collateral))
	}
	ev := &attest.Evidence{TEE: attest.TEE(e.TEE), Simulated: e.Simulated, Quote: e.Quote}
	if len(e.Collateral) > 0 {
		ev.Collateral = e.Collateral
	}
	return ev, nil
}

// NewCSR makes a PEM certificate signing request for identity key key (ECDSA
// P-256 or P-384, held in the TEE) naming member name in role, with evidence
// from issuer binding the key: the issuer is asked to bind
// SHA-256(DER SubjectPublicKeyInfo) as report data.
func NewCSR(ctx context.Context, key crypto.Signer, name, role string, issuer attest.Issuer) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("pki: csr: %w", err)
	}
	if err := CheckRole(role); err != nil {
		return nil, fmt.Errorf("pki: csr %q: %w", name, err)
	}
	if key == nil || issuer == nil {
		return nil, fmt.Errorf("pki: csr %q: no identity key or no evidence issuer", name)
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || checkCurve(pub) != nil {
		return nil, fmt.Errorf("pki: csr %q: identity key is %T, want ECDSA P-256 or P-384", name, key.Public())
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: csr %q: %w", name, err)
	}
	h := KeyHash(spki)
	ev, err := issuer.Issue(ctx, h[:])
	if err != nil {
		return nil, fmt.Errorf("pki: csr %q: evidence: %w", name, err)
	}
	ext, err := marshalEvidence(ev)
	if err != nil {
		return nil, fmt.Errorf("pki: csr %q: %w", name, err)
	}
	ext = marshalCMW(CMWType, ext)
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: name, OrganizationalUnit: []string{role}},
		ExtraExtensions: []pkix.Extension{{Id: OIDEvidence, Value: ext}},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("pki: csr %q: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// CSR is a parsed, signature-checked identity certificate request. Its
// evidence is NOT verified: that is CA.Certify's job.
type CSR struct {
	Name     string
	Role     string
	Key      *ecdsa.PublicKey
	SPKI     []byte   // DER SubjectPublicKeyInfo
	KeyHash  [32]byte // SHA-256(SPKI): the report data the evidence must bind
	Evidence *attest.Evidence
	Request  *x509.CertificateRequest
}

// ParseCSR decodes a PEM "CERTIFICATE REQUEST" made by NewCSR: exactly one
// CN (the member name) and one OU (a known role) and nothing else in the
// subject, an ECDSA P-256/P-384 key, one well-formed evidence extension, and
// a valid self-signature.
func ParseCSR(pemBytes []byte) (*CSR, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("pki: csr: no PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("pki: csr: PEM block %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("pki: csr: data after the PEM block")
	}
	return parseCSRDER(block.Bytes)
}

func parseCSRDER(der []byte) (*CSR, error) {
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("pki: csr: %w", err)
	}
	subj := req.Subject
	name := subj.CommonName
	if len(subj.Names) != 2 || len(subj.OrganizationalUnit) != 1 || name == "" {
		return nil, fmt.Errorf("pki: csr: subject %q: want exactly CN=<name> and OU=<role>", subj.String())
	}
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("pki: csr: %w", err)
	}
	role := subj.OrganizationalUnit[0]
	if err := CheckRole(role); err != nil {
		return nil, fmt.Errorf("pki: csr %q: %w", name, err)
	}
	pub, ok := req.PublicKey.(*ecdsa.PublicKey)
	if !ok || checkCurve(pub) != nil {
		return nil, fmt.Errorf("pki: csr %q: key is %T, want ECDSA P-256 or P-384", name, req.PublicKey)
	}
	var ev *attest.Evidence
	for _, e := range req.Extensions {
		v1 := e.Id.Equal(OIDEvidenceV1)
		if !v1 && !e.Id.Equal(OIDEvidence) {
			continue
		}
		if ev != nil {
			return nil, fmt.Errorf("pki: csr %q: evidence extension appears twice (%s, %s)", name, OIDEvidence, OIDEvidenceV1)
		}
		if ev, err = parseEvidenceExtension(e.Value, v1); err != nil {
			return nil, fmt.Errorf("pki: csr %q: %w", name, err)
		}
	}
	if ev == nil {
		return nil, fmt.Errorf("pki: csr %q: no TEE evidence (extension %s); make the CSR with teeml pki csr inside the TEE", name, OIDEvidence)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: csr %q: bad signature: %w", name, err)
	}
	return &CSR{Name: name, Role: role, Key: pub, SPKI: req.RawSubjectPublicKeyInfo,
		KeyHash: KeyHash(req.RawSubjectPublicKeyInfo), Evidence: ev, Request: req}, nil
}
