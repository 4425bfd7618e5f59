package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVerifyIdentityGoodChain(t *testing.T) {
	e := newEnv(t)
	is, key := e.certify("col-1", "collaborator")
	f := e.federation(t0)
	now := t0.Add(time.Hour)
	id, err := f.VerifyIdentity([]*x509.Certificate{leaf(t, is.Cert, key, now), is.Cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "col-1" || id.Role != "collaborator" || id.Serial != is.Member.Serial || !id.NotAfter.Equal(is.Cert.NotAfter) {
		t.Fatalf("identity %+v", id)
	}
	// What the peer sends above the identity certificate is ignored.
	other := newEnv(t)
	if _, err := f.VerifyIdentity([]*x509.Certificate{leaf(t, is.Cert, key, now), is.Cert, other.ca.SigningCA()}, now); err != nil {
		t.Fatal(err)
	}
	if f.Name() != "acme" || len(f.Members()) != 1 || !f.Root().Equal(e.ca.Root()) {
		t.Fatalf("federation %s %v", f.Name(), f.Members())
	}
}

func TestVerifyIdentityRefusals(t *testing.T) {
	e := newEnv(t)
	col1, key1 := e.certify("col-1", "collaborator", Validity(2*time.Hour))
	col2, key2 := e.certify("col-2", "collaborator")
	col3, key3 := e.certify("col-3", "collaborator")
	// col-9 is certified after the bundle was made: valid chain, not a
	// member as far as this bundle knows.
	if _, err := e.ca.Revoke("col-3", "keyCompromise", t0); err != nil {
		t.Fatal(err)
	}
	f := e.federation(t0)
	col9, key9 := e.certify("col-9", "collaborator")

	// col-2's certificate re-issued with another role by the signing CA
	// (e.g. a mistake, or members.yaml disagreeing with the certificate).
	wrongRole := e.reissue(t, col2.Cert, "aggregator")

	// A chain from a different CA with the same names.
	other := newEnv(t)
	foreign, foreignKey := other.certify("col-2", "collaborator")

	// A parent claiming col-2's name but holding col-1's key: the leaf names
	// col-2 as issuer and is signed by a key that is not col-2's.
	impostorCert := *col2.Cert
	impostorCert.PublicKey = &key1.PublicKey
	impostor := &impostorCert

	now := t0.Add(time.Hour)
	cases := []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
		want  []string
	}{
		{"revoked", []*x509.Certificate{leaf(t, col3.Cert, key3, now), col3.Cert}, now, []string{`peer "col-3": certificate revoked`}},
		{"non-member", []*x509.Certificate{leaf(t, col9.Cert, key9, now), col9.Cert}, now, []string{`peer "col-9": not a federation member for role collaborator`}},
		{"wrong role", []*x509.Certificate{leaf(t, wrongRole, key2, now), wrongRole}, now, []string{`peer "col-2": not a federation member for role aggregator`}},
		{"expired identity", []*x509.Certificate{leaf(t, col1.Cert, key1, t0.Add(3*time.Hour)), col1.Cert}, t0.Add(3 * time.Hour), []string{`peer "col-1": identity certificate expired`}},
		{"expired CRL", []*x509.Certificate{leaf(t, col2.Cert, key2, t0.Add(8*24*time.Hour)), col2.Cert}, t0.Add(8 * 24 * time.Hour), []string{`peer "col-2": federation CRL expired at 2026-03-09T10:00:00Z`, "refusing"}},
		{"other CA", []*x509.Certificate{leaf(t, foreign.Cert, foreignKey, now), foreign.Cert}, now, []string{`peer "col-2": identity certificate does not chain to federation "acme"'s root`}},
		{"leaf not signed by identity key", []*x509.Certificate{leaf(t, impostor, key1, now), col2.Cert}, now, []string{`peer "col-2": RA-TLS certificate is not signed by the identity key`}},
		{"leaf expired", []*x509.Certificate{leaf(t, col2.Cert, key2, t0.Add(-24*time.Hour)), col2.Cert}, now, []string{`peer "col-2": RA-TLS certificate not valid`}},
		{"identity as leaf", []*x509.Certificate{col2.Cert, col2.Cert}, now, []string{`peer "col-2": RA-TLS certificate is not signed by the identity key`}},
		{"short chain", []*x509.Certificate{col2.Cert}, now, []string{"presented 1 certificates"}},
		{"nil", []*x509.Certificate{nil, col2.Cert}, now, []string{"presented 2 certificates"}},
		{"signing CA as identity", []*x509.Certificate{col2.Cert, e.ca.SigningCA()}, now, []string{"member name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := f.VerifyIdentity(c.chain, c.at)
			if id != nil {
				t.Errorf("identity %+v returned with error %v", id, err)
			}
			wantErr(t, err, c.want...)
		})
	}
	// The message is exactly the documented one line, and typed.
	_, err := f.VerifyIdentity([]*x509.Certificate{leaf(t, col3.Cert, key3, now), col3.Cert}, now)
	var ie *IdentityError
	if err == nil || err.Error() != `peer "col-3": certificate revoked` || !errors.As(err, &ie) || ie.Peer != "col-3" {
		t.Fatalf("revoked: %v", err)
	}
	// Control: the same federation accepts col-2 at now, so each refusal
	// above is due to what the case changed.
	if _, err := f.VerifyIdentity([]*x509.Certificate{leaf(t, col2.Cert, key2, now), col2.Cert}, now); err != nil {
		t.Fatal(err)
	}
	// A fresh bundle knows col-9.
	if _, err := e.federation(now).VerifyIdentity([]*x509.Certificate{leaf(t, col9.Cert, key9, now), col9.Cert}, now); err != nil {
		t.Fatal(err)
	}
}

// reissue signs a copy of cert with another role using the CA's signing
// key directly, bypassing Certify and members.yaml.
func (e *env) reissue(t *testing.T, cert *x509.Certificate, role string) *x509.Certificate {
	t.Helper()
	tmpl := *cert
	tmpl.Subject = pkix.Name{CommonName: cert.Subject.CommonName, OrganizationalUnit: []string{role}, Organization: cert.Subject.Organization}
	tmpl.ExtraExtensions, tmpl.RawSubject = nil, nil
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, e.ca.SigningCA(), cert.PublicKey, e.ca.signingKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFederationPinsRootAndChecksBundle(t *testing.T) {
	e := newEnv(t)
	e.certify("col-1", "collaborator")
	b, err := e.ca.Bundle(t0)
	if err != nil {
		t.Fatal(err)
	}
	other := newEnv(t)
	_, err = NewFederation(b, other.ca.Root())
	wantErr(t, err, "bundle root "+Fingerprint(e.ca.Root()), "is not the pinned root "+Fingerprint(other.ca.Root()))
	_, err = NewFederation(b, nil)
	wantErr(t, err, "no pinned root")

	// Tampering with the members list breaks the signature.
	tampered := bytes.Replace(b, []byte("-----BEGIN TEEML FEDERATION MEMBERS-----\n"), []byte("-----BEGIN TEEML FEDERATION MEMBERS-----\nIyBl"), 1)
	_, err = NewFederation(tampered, e.ca.Root())
	wantErr(t, err, "pki: bundle")
	for name, mutate := range map[string]func([]byte) []byte{
		"trailing":  func(b []byte) []byte { return append(append([]byte{}, b...), "junk"...) },
		"truncated": func(b []byte) []byte { return b[:bytes.LastIndex(b, []byte("-----BEGIN"))] },
		"comment":   func(b []byte) []byte { return append([]byte("hello\n"), b...) },
		"empty":     func([]byte) []byte { return nil },
	} {
		_, err := NewFederation(mutate(b), e.ca.Root())
		if err == nil || !strings.HasPrefix(err.Error(), "pki: bundle: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Re-signing the members list with a different key: the signature check
	// names the signing CA.
	blocks := splitPEM(t, b)
	blocks[4].Bytes[len(blocks[4].Bytes)-1] ^= 1
	_, err = NewFederation(joinPEM(t, blocks), e.ca.Root())
	wantErr(t, err, "bad signature by the signing CA")

	// Files: bundle plus pinned root.
	dir := t.TempDir()
	bp := filepath.Join(dir, "federation.bundle")
	if _, err := e.ca.WriteBundle(dir, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFederation(bp, filepath.Join(e.ca.Dir(), RootCertFile)); err != nil {
		t.Fatal(err)
	}
	_, err = LoadFederation(bp, "")
	wantErr(t, err, "no pinned root")
	// The pinned root file may carry explanatory text around its block
	// (RFC 7468 section 2, e.g. `openssl x509 -text` output), but only one
	// certificate, and no malformed block.
	rootPEM, err := os.ReadFile(filepath.Join(e.ca.Dir(), RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		file string
		want string
	}{
		"text around":      {"Certificate:\n    Data:\n        Version: 3 (0x2)\n" + string(rootPEM) + "trailing note\n", ""},
		"two certificates": {string(rootPEM) + string(rootPEM), "2 PEM certificates, want exactly one"},
		"malformed block":  {"note\n" + strings.Replace(string(rootPEM), "\n", "\n!", 2), "PEM block 1 (line 2): malformed"},
	} {
		rp := filepath.Join(dir, "root-"+strings.ReplaceAll(name, " ", "-")+".pem")
		if err := os.WriteFile(rp, []byte(tc.file), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFederation(bp, rp)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		wantErr(t, err, rp, tc.want)
	}
	_, err = LoadFederation(bp, filepath.Join(other.ca.Dir(), RootCertFile))
	wantErr(t, err, "not the pinned root", bp)
	_, err = LoadFederation(filepath.Join(dir, "missing"), filepath.Join(e.ca.Dir(), RootCertFile))
	wantErr(t, err, "missing")
	if err := os.WriteFile(filepath.Join(dir, "r.pem"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadFederation(bp, filepath.Join(dir, "r.pem"))
	wantErr(t, err, "r.pem", "no PEM certificate found")
}

func TestBundleRefusesMembersCRLDisagreement(t *testing.T) {
	e := newEnv(t)
	e.certify("col-1", "collaborator")
	if _, err := e.ca.Revoke("col-1", "", t0); err != nil {
		t.Fatal(err)
	}
	b, err := e.ca.Bundle(t0)
	if err != nil {
		t.Fatal(err)
	}
	// A members list saying active for a serial the CRL revokes, properly
	// signed: refused as inconsistent.
	blocks := splitPEM(t, b)
	m, err := ParseMembers(blocks[3].Bytes, "")
	if err != nil {
		t.Fatal(err)
	}
	m.Members[0].Status, m.Members[0].RevokedAt, m.Members[0].RevocationReason = Active, nil, ""
	blocks[3].Bytes, _ = m.Marshal()
	_, err = NewFederation(e.resign(t, blocks), e.ca.Root())
	wantErr(t, err, `member "col-1"`, "is active in the members list but in the CRL")
}

func TestVerifyIdentityConcurrent(t *testing.T) {
	e := newEnv(t)
	is, key := e.certify("col-1", "collaborator")
	f := e.federation(t0)
	now := t0.Add(time.Minute)
	chain := []*x509.Certificate{leaf(t, is.Cert, key, now), is.Cert}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, err := f.VerifyIdentity(chain, now); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestVerifyIdentityCRLAloneRevokes: a serial the CRL lists is refused as
// revoked even when the member list does not mention it at all.
func TestVerifyIdentityCRLAloneRevokes(t *testing.T) {
	e := newEnv(t)
	is, key := e.certify("col-3", "collaborator")
	if _, err := e.ca.Revoke("col-3", "", t0); err != nil {
		t.Fatal(err)
	}
	b, err := e.ca.Bundle(t0)
	if err != nil {
		t.Fatal(err)
	}
	blocks := splitPEM(t, b)
	m, err := ParseMembers(blocks[3].Bytes, "")
	if err != nil {
		t.Fatal(err)
	}
	m.Members = nil
	blocks[3].Bytes, _ = m.Marshal()
	f, err := NewFederation(e.resign(t, blocks), e.ca.Root())
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	_, err = f.VerifyIdentity([]*x509.Certificate{leaf(t, is.Cert, key, now), is.Cert}, now)
	if err == nil || err.Error() != `peer "col-3": certificate revoked` {
		t.Fatalf("got %v", err)
	}
}
