package ratls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/teeml/teeml/attest"
)

// DefaultValidity is the lifetime of an RA-TLS certificate when
// CertOptions.Validity is zero.
const DefaultValidity = time.Hour

// ClockSkew is how far in the past NotBefore is set, so peers with slightly
// slow clocks accept a fresh certificate.
const ClockSkew = time.Minute

// ExtensionSet selects the evidence extension(s) a certificate carries.
type ExtensionSet int

const (
	// BothExtensions writes the TCG tagged-evidence and the legacy Gramine
	// extension, each with its own quote, as Gramine does (the default).
	BothExtensions ExtensionSet = iota
	// TCGOnly writes only the TCG DICE tagged-evidence extension.
	TCGOnly
	// LegacyOnly writes only the legacy Gramine extension.
	LegacyOnly
)

func (s ExtensionSet) String() string {
	switch s {
	case BothExtensions:
		return "both"
	case TCGOnly:
		return "tcg"
	case LegacyOnly:
		return "legacy"
	}
	return fmt.Sprintf("ExtensionSet(%d)", int(s))
}

// CertOptions configure NewCertificate.
type CertOptions struct {
	// Validity is the certificate lifetime from now (default
	// DefaultValidity); NotBefore is ClockSkew earlier. With a Parent,
	// NotAfter never exceeds the parent's.
	Validity time.Duration
	// Extensions selects the evidence extension(s) (default both).
	Extensions ExtensionSet
	// Parent and ParentKey, when set (both or neither), make the
	// certificate signed by the holder's long-lived identity key: the chain
	// becomes [RA-TLS leaf, Parent]. Without them the certificate is
	// self-signed (attestation-only mode, as Gramine and CCZoo do).
	Parent    *x509.Certificate
	ParentKey crypto.Signer
	// Subject of the leaf. Default: the parent's subject, or
	// CN=teeml RA-TLS for a self-signed certificate.
	Subject *pkix.Name
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the randomness for the key, serial number and signatures
	// (default crypto/rand).
	Rand io.Reader
}

func (o *CertOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *CertOptions) validity() time.Duration {
	if o.Validity > 0 {
		return o.Validity
	}
	return DefaultValidity
}

func (o *CertOptions) rand() io.Reader {
	if o.Rand != nil {
		return o.Rand
	}
	return rand.Reader
}

// NewCertificate makes an RA-TLS certificate: a fresh ECDSA P-256 key
// generated in this process (inside the TEE), evidence from issuer binding
// that key, and a certificate carrying the evidence, self-signed or signed
// by opts.ParentKey. The result is ready for tls.Config; its Leaf is set.
//
// For the TCG extension the report data is SHA-256 of the claims map whose
// pubkey-hash is SHA-256 of the key's DER SubjectPublicKeyInfo; for the
// legacy extension it is SHA-256 of that SubjectPublicKeyInfo directly.
// Evidence collateral is not embedded (neither does Gramine): verifiers get
// DCAP collateral from their own source.
func NewCertificate(ctx context.Context, issuer attest.Issuer, opts CertOptions) (tls.Certificate, error) {
	if issuer == nil {
		return tls.Certificate{}, errors.New("ratls: new certificate: no evidence issuer")
	}
	if (opts.Parent == nil) != (opts.ParentKey == nil) {
		return tls.Certificate{}, errors.New("ratls: new certificate: Parent and ParentKey must be set together")
	}
	if opts.Extensions < BothExtensions || opts.Extensions > LegacyOnly {
		return tls.Certificate{}, fmt.Errorf("ratls: new certificate: unknown extension set %d", int(opts.Extensions))
	}
	if opts.Parent != nil {
		pub, ok := opts.Parent.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(opts.ParentKey.Public()) {
			return tls.Certificate{}, errors.New("ratls: new certificate: ParentKey does not match the parent certificate's public key")
		}
	}
	now := opts.now()
	notAfter := now.Add(opts.validity())
	if opts.Parent != nil {
		if !now.Before(opts.Parent.NotAfter) {
			return tls.Certificate{}, fmt.Errorf("ratls: new certificate: parent certificate %q expired at %s",
				opts.Parent.Subject.CommonName, opts.Parent.NotAfter.UTC().Format(time.RFC3339))
		}
		if notAfter.After(opts.Parent.NotAfter) {
			notAfter = opts.Parent.NotAfter
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), opts.rand())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ratls: new certificate: key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ratls: new certificate: key: %w", err)
	}
	exts, err := evidenceExtensions(ctx, issuer, spki, opts.Extensions)
	if err != nil {
		return tls.Certificate{}, err
	}

	serial, err := rand.Int(opts.rand(), new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ratls: new certificate: serial: %w", err)
	}
	subject := pkix.Name{CommonName: "teeml RA-TLS"}
	switch {
	case opts.Subject != nil:
		subject = *opts.Subject
	case opts.Parent != nil:
		subject = opts.Parent.Subject
		subject.ExtraNames = nil
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               subject,
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		ExtraExtensions:       exts,
	}
	parent, signer := tmpl, crypto.Signer(key)
	if opts.Parent != nil {
		parent, signer = opts.Parent, opts.ParentKey
	}
	der, err := x509.CreateCertificate(opts.rand(), tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ratls: new certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ratls: new certificate: %w", err)
	}
	chain := [][]byte{der}
	if opts.Parent != nil {
		chain = append(chain, opts.Parent.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// evidenceExtensions asks issuer for the evidence of each selected
// extension, binding spki, in Gramine's order (legacy, then TCG).
func evidenceExtensions(ctx context.Context, issuer attest.Issuer, spki []byte, set ExtensionSet) ([]pkix.Extension, error) {
	var exts []pkix.Extension
	if set == BothExtensions || set == LegacyOnly {
		rd := sha256.Sum256(spki)
		ev, err := issuer.Issue(ctx, rd[:])
		if err != nil {
			return nil, fmt.Errorf("ratls: new certificate: evidence for %s: %w", extName(FormatLegacy), err)
		}
		if _, err := ParseLegacyQuote(ev.Quote); err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: OIDLegacyQuote, Value: ev.Quote})
	}
	if set == BothExtensions || set == TCGOnly {
		claims := MarshalClaims(spki)
		rd := sha256.Sum256(claims)
		ev, err := issuer.Issue(ctx, rd[:])
		if err != nil {
			return nil, fmt.Errorf("ratls: new certificate: evidence for %s: %w", extName(FormatTCG), err)
		}
		v, err := MarshalTaggedEvidence(ev.Quote, claims)
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: OIDTaggedEvidence, Value: v})
	}
	return exts, nil
}
