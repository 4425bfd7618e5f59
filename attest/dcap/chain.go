package dcap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

func cn(c *x509.Certificate) string { return c.Subject.CommonName }

// checkIssued checks that parent issued child: the names chain, parent is a
// CA allowed to sign certificates, and parent's key verifies child's
// signature.
func checkIssued(child, parent *x509.Certificate) error {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return fmt.Errorf("issuer of %q is not %q", cn(child), cn(parent))
	}
	if !parent.BasicConstraintsValid || !parent.IsCA {
		return fmt.Errorf("%q is not a CA certificate", cn(parent))
	}
	if err := child.CheckSignatureFrom(parent); err != nil {
		return fmt.Errorf("signature of %q by %q: %w", cn(child), cn(parent), err)
	}
	return nil
}

func (v *Verifier) checkRoot(c *x509.Certificate) error {
	if !bytes.Equal(c.Raw, v.root.Raw) {
		return fmt.Errorf("%w (got %q)", ErrUntrustedRoot, cn(c))
	}
	return nil
}

// checkLeaf checks that c is an end-entity certificate with a P-256 key and
// returns the key.
func checkLeaf(c *x509.Certificate) (*ecdsa.PublicKey, error) {
	if c.BasicConstraintsValid && c.IsCA {
		return nil, fmt.Errorf("%q is a CA certificate, want an end-entity certificate", cn(c))
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%q does not have an ECDSA P-256 key", cn(c))
	}
	return pub, nil
}

func checkCertTime(c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) {
		return fmt.Errorf("certificate %q %w: notBefore %s is after %s",
			cn(c), ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: certificate %q notAfter %s is before %s",
			ErrCertificateExpired, cn(c), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkCertsTime(certs []*x509.Certificate, now time.Time, until *time.Time) error {
	for _, c := range certs {
		if err := checkCertTime(c, now); err != nil {
			return err
		}
		minTime(until, c.NotAfter)
	}
	return nil
}

// checkWindow checks issue ≤ now ≤ next for collateral (CRLs, TCB Info, QE
// Identity).
func checkWindow(what string, issue, next, now time.Time) error {
	if now.Before(issue) {
		return fmt.Errorf("%s %w: issued %s, after %s", what, ErrNotYetValid,
			issue.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(next) {
		return fmt.Errorf("%w: %s nextUpdate %s is before %s", ErrCollateralExpired, what,
			next.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func minTime(dst *time.Time, t time.Time) {
	if dst.IsZero() || t.Before(*dst) {
		*dst = t
	}
}

// verifiedCRL is a CRL whose signature has been checked.
type verifiedCRL struct {
	rl      *x509.RevocationList
	revoked map[string]struct{}
}

func serialKey(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// newVerifiedCRL parses der and checks that issuer signed it.
func newVerifiedCRL(der []byte, issuer *x509.Certificate) (*verifiedCRL, error) {
	// The parsed CRL aliases its input and is cached: own the bytes.
	rl, err := x509.ParseRevocationList(bytes.Clone(der))
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("CRL issuer is not %q", cn(issuer))
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("signature by %q: %w", cn(issuer), err)
	}
	if rl.NextUpdate.IsZero() {
		return nil, fmt.Errorf("CRL has no nextUpdate")
	}
	c := &verifiedCRL{rl: rl, revoked: make(map[string]struct{}, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			c.revoked[e.SerialNumber.Text(16)] = struct{}{}
		}
	}
	return c, nil
}

func (c *verifiedCRL) checkTime(what string, now time.Time, until *time.Time) error {
	if err := checkWindow(what, c.rl.ThisUpdate, c.rl.NextUpdate, now); err != nil {
		return err
	}
	minTime(until, c.rl.NextUpdate)
	return nil
}

// checkNotRevoked fails if cert, which must have been issued by the CRL's
// issuer, is listed.
func (c *verifiedCRL) checkNotRevoked(cert *x509.Certificate) error {
	if !bytes.Equal(cert.RawIssuer, c.rl.RawIssuer) {
		return fmt.Errorf("CRL issuer does not match the issuer of %q", cn(cert))
	}
	if _, ok := c.revoked[serialKey(cert)]; ok {
		return fmt.Errorf("%w: %q serial %s", ErrRevoked, cn(cert), serialKey(cert))
	}
	return nil
}

// caType returns "processor" or "platform" for the PCK CA names.
func caType(c *x509.Certificate) (string, error) {
	switch name := cn(c); {
	case strings.Contains(name, "PCK Processor CA"):
		return "processor", nil
	case strings.Contains(name, "PCK Platform CA"):
		return "platform", nil
	default:
		return "", fmt.Errorf("%q is not an Intel SGX PCK Processor or Platform CA", name)
	}
}
