// Package pkisource feeds the dashboard's federation page and checks
// its client certificates from a federation's files, read-only: the
// bundle (root, signing CA, CRL, members; signature checked) against the
// pinned root. Re-read on every call, so a revocation the CA publishes
// takes effect at once. It imports pki only: any service can mount it.
package pkisource

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/pki"
)

// Source reads the pinned root Root and the federation bundle Bundle.
type Source struct {
	Root, Bundle string
}

var _ dashboard.FederationSource = (*Source)(nil)

// WatchedFiles is the bundle (a new one is published on every change).
func (s *Source) WatchedFiles() []string { return []string{s.Bundle} }

// Load reads the federation: the bundle checked against the pinned root,
// and its parsed parts.
func (s *Source) Load() (*pki.Federation, *pki.Bundle, error) {
	rootPath, bundlePath := s.Root, s.Bundle
	root, err := pki.LoadCertificate(rootPath)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(bundlePath)
	if err != nil {
		return nil, nil, fmt.Errorf("pkisource: federation bundle: %w", err)
	}
	f, err := pki.NewFederation(b, root)
	if err != nil {
		return nil, nil, fmt.Errorf("pkisource: %s: %w", bundlePath, err)
	}
	pb, err := pki.ParseBundle(b)
	if err != nil {
		return nil, nil, fmt.Errorf("pkisource: %s: %w", bundlePath, err)
	}
	return f, pb, nil
}

// Federation implements dashboard.FederationSource.
func (s *Source) Federation(ctx context.Context) (*dashboard.Federation, error) {
	f, _, err := s.Load()
	if err != nil {
		return nil, err
	}
	out := &dashboard.Federation{Name: f.Name(), CRLNextUpdate: f.CRLNextUpdate()}
	for _, m := range f.Members() {
		dm := dashboard.Member{Name: m.Name, Role: m.Role, Serial: m.Serial, Status: string(m.Status),
			CertifiedAt: m.CertifiedAt, NotAfter: m.NotAfter, RevocationReason: m.RevocationReason,
			Platform: m.Evidence.TEE, Measurement: m.Evidence.Measurement, TCBStatus: m.Evidence.TCBStatus,
			Debug: m.Evidence.Debug, Simulated: m.Evidence.Simulated, Policy: m.Evidence.Policy}
		if m.RevokedAt != nil {
			dm.RevokedAt = *m.RevokedAt
		}
		out.Members = append(out.Members, dm)
	}
	return out, nil
}

// VerifyClient checks a browser's client certificate: chain[0] must be an
// identity certificate of this federation (signed by its signing CA under
// the pinned root, valid at now), not revoked by a current CRL, and active
// in the member list. It returns the member's name.
func (s *Source) VerifyClient(chain []*x509.Certificate, now time.Time) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("no client certificate")
	}
	f, b, err := s.Load()
	if err != nil {
		return "", err
	}
	leaf := chain[0]
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(f.Root())
	inter.AddCert(b.SigningCA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("%q is not a certificate of federation %s: %w", leaf.Subject.CommonName, f.Name(), err)
	}
	if !now.Before(b.CRL.NextUpdate) {
		return "", fmt.Errorf("federation %s: the CRL expired at %s: refusing every identity until a fresh bundle is loaded", f.Name(), b.CRL.NextUpdate.UTC().Format(time.RFC3339))
	}
	serial := leaf.SerialNumber.Text(16)
	for _, e := range b.CRL.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return "", fmt.Errorf("%q (serial %s) is revoked", leaf.Subject.CommonName, serial)
		}
	}
	for _, m := range f.Members() {
		if m.Serial == serial && m.Status == pki.Active && m.Name == leaf.Subject.CommonName {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("%q (serial %s) is not an active member of federation %s", leaf.Subject.CommonName, serial, f.Name())
}
