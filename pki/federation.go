package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/teeml/teeml/ratls"
)

// IdentityError is VerifyIdentity's refusal, one line:
//
//	peer "col-3": certificate revoked
//
// Peer is the name the identity certificate claims (empty when there is
// none); it is only verified when the refusal came after the chain check.
type IdentityError struct {
	Peer   string
	Reason string
}

func (e *IdentityError) Error() string {
	if e.Peer == "" {
		return "peer identity: " + e.Reason
	}
	return fmt.Sprintf("peer %q: %s", e.Peer, e.Reason)
}

// Federation is a party's view of the federation, loaded from a bundle and
// checked against a pinned root. It implements ratls.IdentityVerifier and is
// immutable: load a new one to take a new bundle (fresh CRL, new members).
// It is safe for concurrent use.
type Federation struct {
	name     string
	root     *x509.Certificate
	signing  *x509.Certificate
	roots    *x509.CertPool
	inter    *x509.CertPool
	crl      *x509.RevocationList
	revoked  map[string]bool
	bySerial map[string]Member
	members  []Member
}

var _ ratls.IdentityVerifier = (*Federation)(nil)

// NewFederation parses bundle (see ParseBundle) and accepts it only if its
// root is byte-for-byte the pinned root.
func NewFederation(bundle []byte, root *x509.Certificate) (*Federation, error) {
	if root == nil {
		return nil, errors.New("pki: federation: no pinned root certificate")
	}
	b, err := ParseBundle(bundle)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b.Root.Raw, root.Raw) {
		return nil, fmt.Errorf("pki: federation: bundle root %s is not the pinned root %s", Fingerprint(b.Root), Fingerprint(root))
	}
	f := &Federation{
		name: b.Members.Federation, root: b.Root, signing: b.SigningCA, crl: b.CRL,
		roots: x509.NewCertPool(), inter: x509.NewCertPool(),
		revoked: map[string]bool{}, bySerial: map[string]Member{}, members: b.Members.Members,
	}
	f.roots.AddCert(b.Root)
	f.inter.AddCert(b.SigningCA)
	for _, e := range b.CRL.RevokedCertificateEntries {
		f.revoked[formatSerial(e.SerialNumber)] = true
	}
	for _, m := range b.Members.Members {
		f.bySerial[m.Serial] = m
	}
	return f, nil
}

// LoadFederation reads a federation bundle and the pinned root certificate
// (a PEM file, normally a trusted file of the enclave manifest; see
// docs/trust-model.md) and calls NewFederation.
func LoadFederation(bundlePath, rootPath string) (*Federation, error) {
	f, _, _, err := loadFederationFiles(bundlePath, rootPath)
	return f, err
}

// loadFederationFiles reads and checks a bundle against the pinned root and
// also returns the root and the bundle's bytes (for LiveFederation).
func loadFederationFiles(bundlePath, rootPath string) (*Federation, *x509.Certificate, []byte, error) {
	if rootPath == "" {
		return nil, nil, nil, errors.New("pki: federation: no pinned root certificate file")
	}
	root, err := LoadCertificate(rootPath)
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := os.ReadFile(bundlePath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: federation bundle: %w", err)
	}
	f, err := NewFederation(b, root)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (%s)", err, bundlePath)
	}
	return f, root, b, nil
}

// Name is the federation name.
func (f *Federation) Name() string { return f.name }

// Root is the pinned root.
func (f *Federation) Root() *x509.Certificate { return f.root }

// Members returns a copy of the member list.
func (f *Federation) Members() []Member { return append([]Member(nil), f.members...) }

// CRLNextUpdate is when the bundle's CRL expires; after it every identity
// is refused until a fresh bundle is loaded.
func (f *Federation) CRLNextUpdate() time.Time { return f.crl.NextUpdate }

// VerifyIdentity implements ratls.IdentityVerifier. chain[0] is the peer's
// RA-TLS leaf, chain[1] its identity certificate; anything the peer sent
// above that is ignored (the signing CA comes from the bundle). At now it
// checks, in order: the identity certificate's form and validity period, its
// chain through the bundle's signing CA to the pinned root, that the leaf is
// signed by the identity key (and is itself a currently valid non-CA
// certificate), that the CRL is current, that the serial is not revoked, and
// that the member list has this certificate active under this name and role.
func (f *Federation) VerifyIdentity(chain []*x509.Certificate, now time.Time) (*ratls.Identity, error) {
	if len(chain) < 2 || chain[0] == nil || chain[1] == nil {
		return nil, &IdentityError{Reason: fmt.Sprintf("presented %d certificates, want the RA-TLS certificate and its identity certificate", len(chain))}
	}
	leaf, id := chain[0], chain[1]
	name := id.Subject.CommonName
	fail := func(format string, args ...any) error {
		return &IdentityError{Peer: name, Reason: fmt.Sprintf(format, args...)}
	}
	if err := CheckName(name); err != nil {
		return nil, &IdentityError{Reason: "identity certificate: " + err.Error()}
	}
	if len(id.Subject.OrganizationalUnit) != 1 || CheckRole(id.Subject.OrganizationalUnit[0]) != nil {
		return nil, fail("identity certificate has no single known role (OU %q)", id.Subject.OrganizationalUnit)
	}
	role := id.Subject.OrganizationalUnit[0]
	if now.After(id.NotAfter) {
		return nil, fail("identity certificate expired at %s", id.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(id.NotBefore) {
		return nil, fail("identity certificate not valid before %s", id.NotBefore.UTC().Format(time.RFC3339))
	}
	if !id.BasicConstraintsValid || !id.IsCA || id.MaxPathLen != 0 {
		return nil, fail("not an identity certificate (want CA with path length 0)")
	}
	if _, err := id.Verify(x509.VerifyOptions{Roots: f.roots, Intermediates: f.inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fail("identity certificate does not chain to federation %q's root: %v", f.name, err)
	}
	if err := id.CheckSignatureFrom(f.signing); err != nil {
		return nil, fail("identity certificate is not issued by federation %q's signing CA", f.name)
	}
	if err := leaf.CheckSignatureFrom(id); err != nil {
		return nil, fail("RA-TLS certificate is not signed by the identity key: %v", err)
	}
	if leaf.IsCA {
		return nil, fail("RA-TLS certificate is a CA certificate")
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return nil, fail("RA-TLS certificate not valid at %s (valid %s to %s)", now.UTC().Format(time.RFC3339),
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.After(f.crl.NextUpdate) {
		return nil, fail("federation CRL expired at %s: no current revocation data, refusing (install a fresh federation bundle)",
			f.crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	if now.Before(f.crl.ThisUpdate) {
		return nil, fail("federation CRL not valid before %s", f.crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	serial := formatSerial(id.SerialNumber)
	if f.revoked[serial] {
		return nil, fail("certificate revoked")
	}
	m, ok := f.bySerial[serial]
	if ok && m.Status == Revoked {
		return nil, fail("certificate revoked")
	}
	if !ok || m.Name != name || m.Role != role || m.Status != Active {
		return nil, fail("not a federation member for role %s", role)
	}
	return &ratls.Identity{Name: name, Role: role, Serial: serial, NotAfter: id.NotAfter, KeyHash: KeyHash(id.RawSubjectPublicKeyInfo)}, nil
}
