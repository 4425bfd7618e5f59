// Package collateral parses Intel DCAP collateral: the JSON bundle teeml
// stores and ships with evidence (TCB Info, QE Identity, their signatures and
// issuer chains, the PCK CRL with its issuer chain and the Root CA CRL), the
// TCB Info (v3, SGX and TDX) and Enclave/QE Identity (v2) bodies, and keeps a
// local cache directory of collateral keyed by TEE, FMSPC and PCK CA.
//
// The TCB Info and QE Identity bodies are kept as the exact bytes Intel
// signed; they are never re-serialised.
package collateral

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/teeml/teeml/attest/dcap/internal/rawsig"
	"github.com/teeml/teeml/internal/pemcerts"
)

// Collateral is the collateral needed to verify a DCAP quote offline.
type Collateral struct {
	// PCKCRLIssuerChain is the PEM chain (PCK Platform/Processor CA, Root CA)
	// of the PCK CRL issuer.
	PCKCRLIssuerChain string
	// RootCACRL and PCKCRL are DER-encoded CRLs.
	RootCACRL []byte
	PCKCRL    []byte
	// TCBInfoIssuerChain is the PEM chain (TCB Signing, Root CA) that signed
	// TCBInfo.
	TCBInfoIssuerChain string
	// TCBInfo is the exact signed JSON body of the TCB Info.
	TCBInfo []byte
	// TCBInfoSignature is the raw ECDSA P-256 signature (r‖s) over TCBInfo.
	TCBInfoSignature []byte
	// QEIdentityIssuerChain is the PEM chain that signed QEIdentity.
	QEIdentityIssuerChain string
	// QEIdentity is the exact signed JSON body of the QE Identity.
	QEIdentity []byte
	// QEIdentitySignature is the raw ECDSA P-256 signature over QEIdentity.
	QEIdentitySignature []byte
}

// wire is the JSON form documented in shared/testdata/attestation/README.md
// (the format dcap-qvl uses for QuoteCollateralV3).
type wire struct {
	PCKCRLIssuerChain     *string `json:"pck_crl_issuer_chain"`
	RootCACRL             *string `json:"root_ca_crl"`
	PCKCRL                *string `json:"pck_crl"`
	TCBInfoIssuerChain    *string `json:"tcb_info_issuer_chain"`
	TCBInfo               *string `json:"tcb_info"`
	TCBInfoSignature      *string `json:"tcb_info_signature"`
	QEIdentityIssuerChain *string `json:"qe_identity_issuer_chain"`
	QEIdentity            *string `json:"qe_identity"`
	QEIdentitySignature   *string `json:"qe_identity_signature"`
}

// MaxSize bounds the collateral JSON accepted by Parse.
const MaxSize = 8 << 20

// Parse decodes the collateral JSON. All nine fields are required; unknown
// fields (such as dcap-qvl's optional pck_certificate_chain) are ignored.
// Hex fields must be consistently lower or upper case.
func Parse(data []byte) (*Collateral, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("collateral: %d bytes exceeds limit %d", len(data), MaxSize)
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("collateral: json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("collateral: json: trailing data after the object")
	}
	c := &Collateral{}
	var err error
	str := func(name string, p *string) (string, error) {
		if p == nil || *p == "" {
			return "", fmt.Errorf("collateral: field %s missing or empty", name)
		}
		return *p, nil
	}
	hexField := func(name string, p *string) ([]byte, error) {
		s, err := str(name, p)
		if err != nil {
			return nil, err
		}
		b, err := DecodeHex(s)
		if err != nil {
			return nil, fmt.Errorf("collateral: field %s: %w", name, err)
		}
		return b, nil
	}
	if c.PCKCRLIssuerChain, err = str("pck_crl_issuer_chain", w.PCKCRLIssuerChain); err != nil {
		return nil, err
	}
	if c.RootCACRL, err = hexField("root_ca_crl", w.RootCACRL); err != nil {
		return nil, err
	}
	if c.PCKCRL, err = hexField("pck_crl", w.PCKCRL); err != nil {
		return nil, err
	}
	if c.TCBInfoIssuerChain, err = str("tcb_info_issuer_chain", w.TCBInfoIssuerChain); err != nil {
		return nil, err
	}
	s, err := str("tcb_info", w.TCBInfo)
	if err != nil {
		return nil, err
	}
	c.TCBInfo = []byte(s)
	if c.TCBInfoSignature, err = hexField("tcb_info_signature", w.TCBInfoSignature); err != nil {
		return nil, err
	}
	if c.QEIdentityIssuerChain, err = str("qe_identity_issuer_chain", w.QEIdentityIssuerChain); err != nil {
		return nil, err
	}
	if s, err = str("qe_identity", w.QEIdentity); err != nil {
		return nil, err
	}
	c.QEIdentity = []byte(s)
	if c.QEIdentitySignature, err = hexField("qe_identity_signature", w.QEIdentitySignature); err != nil {
		return nil, err
	}
	if len(c.TCBInfoSignature) != rawsig.Size {
		return nil, fmt.Errorf("collateral: field tcb_info_signature: %d bytes, want %d", len(c.TCBInfoSignature), rawsig.Size)
	}
	if len(c.QEIdentitySignature) != rawsig.Size {
		return nil, fmt.Errorf("collateral: field qe_identity_signature: %d bytes, want %d", len(c.QEIdentitySignature), rawsig.Size)
	}
	return c, nil
}

// MarshalJSON encodes the collateral in the JSON form Parse reads (hex in
// lower case).
func (c *Collateral) MarshalJSON() ([]byte, error) {
	p := func(s string) *string { return &s }
	return json.Marshal(&wire{
		PCKCRLIssuerChain:     p(c.PCKCRLIssuerChain),
		RootCACRL:             p(hex.EncodeToString(c.RootCACRL)),
		PCKCRL:                p(hex.EncodeToString(c.PCKCRL)),
		TCBInfoIssuerChain:    p(c.TCBInfoIssuerChain),
		TCBInfo:               p(string(c.TCBInfo)),
		TCBInfoSignature:      p(hex.EncodeToString(c.TCBInfoSignature)),
		QEIdentityIssuerChain: p(c.QEIdentityIssuerChain),
		QEIdentity:            p(string(c.QEIdentity)),
		QEIdentitySignature:   p(hex.EncodeToString(c.QEIdentitySignature)),
	})
}

// Digest is a SHA-256 over all fields (length-prefixed), usable as a cache
// key for anything derived from the collateral.
func (c *Collateral) Digest() [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, f := range [][]byte{
		[]byte(c.PCKCRLIssuerChain), c.RootCACRL, c.PCKCRL,
		[]byte(c.TCBInfoIssuerChain), c.TCBInfo, c.TCBInfoSignature,
		[]byte(c.QEIdentityIssuerChain), c.QEIdentity, c.QEIdentitySignature,
	} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// DecodeHex decodes hex that is either all lower case or all upper case.
// Mixed case is refused so that a flipped case bit in signed or signature
// material is never silently accepted.
func DecodeHex(s string) ([]byte, error) {
	lower, upper := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'f':
			lower = true
		case c >= 'A' && c <= 'F':
			upper = true
		}
	}
	if lower && upper {
		return nil, errors.New("hex mixes lower and upper case")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid hex: %w", err)
	}
	return b, nil
}

// VerifyTCBInfoSignature checks TCBInfoSignature over the exact TCBInfo bytes.
func (c *Collateral) VerifyTCBInfoSignature(pub *ecdsa.PublicKey) error {
	return rawsig.Verify(pub, c.TCBInfo, c.TCBInfoSignature)
}

// VerifyQEIdentitySignature checks QEIdentitySignature over the exact
// QEIdentity bytes.
func (c *Collateral) VerifyQEIdentitySignature(pub *ecdsa.PublicKey) error {
	return rawsig.Verify(pub, c.QEIdentity, c.QEIdentitySignature)
}

// ParseCertChain parses a PEM certificate chain. Explanatory text around
// the blocks is allowed (RFC 7468 section 2, as in Intel's published PEM
// files); a malformed block, a block other than CERTIFICATE, or a chain
// without any certificate is refused (see internal/pemcerts).
func ParseCertChain(s string) ([]*x509.Certificate, error) {
	ders, err := pemcerts.DER([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	certs := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
	}
	return certs, nil
}
