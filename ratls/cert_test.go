package ratls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/sim"
)

// countingIssuer counts Issue calls and can fail or block.
type countingIssuer struct {
	attest.Issuer
	n     atomic.Int64
	fail  atomic.Bool
	block chan struct{} // when non-nil, Issue waits for it or ctx
}

func (c *countingIssuer) Issue(ctx context.Context, rd []byte) (*attest.Evidence, error) {
	c.n.Add(1)
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.fail.Load() {
		return nil, errors.New("quoting enclave unavailable")
	}
	return c.Issuer.Issue(ctx, rd)
}

func reportDataOf(t *testing.T, quote []byte) []byte {
	t.Helper()
	q, err := sim.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	return q.ReportData[:]
}

func TestNewCertificateSelfSigned(t *testing.T) {
	env := newSimEnv(t)
	iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := newCert(t, iss, CertOptions{Now: func() time.Time { return now }})
	leaf := c.Leaf
	if len(c.Certificate) != 1 || !bytes.Equal(c.Certificate[0], leaf.Raw) {
		t.Fatal("chain is not [leaf]")
	}
	k, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() || !k.PublicKey.Equal(leaf.PublicKey) {
		t.Fatal("private key is not the leaf's P-256 key")
	}
	if !leaf.NotBefore.Equal(now.Add(-ClockSkew)) || !leaf.NotAfter.Equal(now.Add(DefaultValidity)) {
		t.Fatalf("validity %s .. %s", leaf.NotBefore, leaf.NotAfter)
	}
	if leaf.IsCA || leaf.Subject.CommonName != "teeml RA-TLS" || !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		t.Fatalf("leaf %v", leaf.Subject)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Fatal(err)
	}
	if n := iss.n.Load(); n != 2 {
		t.Fatalf("%d Issue calls, want 2 (one quote per extension)", n)
	}
	// Extensions in Gramine's order, non-critical, each binding the key.
	var ids []string
	for _, e := range leaf.Extensions {
		if e.Id.Equal(OIDLegacyQuote) || e.Id.Equal(OIDTaggedEvidence) {
			ids = append(ids, e.Id.String())
			if e.Critical {
				t.Errorf("%s is critical", e.Id)
			}
		}
	}
	if strings.Join(ids, " ") != "1.2.840.113741.1337.6 2.23.133.5.4.9" {
		t.Fatalf("extensions %v", ids)
	}
	ev, err := ParseEvidence(leaf)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	want := make([]byte, 64)
	copy(want, spki[:])
	if !bytes.Equal(reportDataOf(t, ev.Legacy), want) {
		t.Error("legacy report data is not SHA-256(SPKI) zero padded")
	}
	ch := sha256.Sum256(ev.TCG.Claims)
	copy(want, ch[:])
	if !bytes.Equal(reportDataOf(t, ev.TCG.Quote), want) || !bytes.Equal(ev.TCG.PubKeyHash, spki[:]) || ev.TCG.PubKeyHashAlg != HashSHA256 {
		t.Error("TCG evidence does not bind the key")
	}
	if !bytes.Equal(ev.TCG.Claims, MarshalClaims(leaf.RawSubjectPublicKeyInfo)) {
		t.Error("claims differ from MarshalClaims")
	}

	// Two certificates never share a key or serial.
	c2 := newCert(t, iss, CertOptions{})
	if c2.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 || bytes.Equal(c2.Leaf.RawSubjectPublicKeyInfo, leaf.RawSubjectPublicKeyInfo) {
		t.Error("key or serial reused")
	}
}

func TestNewCertificateExtensionSets(t *testing.T) {
	env := newSimEnv(t)
	for _, tc := range []struct {
		set   ExtensionSet
		oids  []string
		calls int64
	}{
		{TCGOnly, []string{"2.23.133.5.4.9"}, 1},
		{LegacyOnly, []string{"1.2.840.113741.1337.6"}, 1},
	} {
		iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
		c := newCert(t, iss, CertOptions{Extensions: tc.set, Validity: 10 * time.Minute})
		var got []string
		for _, e := range evidenceExts(c.Leaf) {
			got = append(got, e.Id.String())
		}
		if strings.Join(got, " ") != strings.Join(tc.oids, " ") || iss.n.Load() != tc.calls {
			t.Errorf("%v: extensions %v, %d Issue calls", tc.set, got, iss.n.Load())
		}
		if d := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); d != 10*time.Minute+ClockSkew {
			t.Errorf("%v: validity %v", tc.set, d)
		}
	}
	if _, err := NewCertificate(context.Background(), env.issuer(t, mrGood, false), CertOptions{Extensions: 7}); err == nil {
		t.Error("unknown extension set accepted")
	}
}

func TestNewCertificateWithParent(t *testing.T) {
	env := newSimEnv(t)
	pki := newTestPKI(t)
	now := time.Now()
	idc, idk := pki.identity(t, "col-1", "collaborator", now.Add(-time.Hour), now.Add(30*time.Minute))
	c := newCert(t, env.issuer(t, mrGood, false), CertOptions{Parent: idc, ParentKey: idk})
	if len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[1], idc.Raw) {
		t.Fatal("chain is not [leaf, identity]")
	}
	if err := idc.CheckSignature(c.Leaf.SignatureAlgorithm, c.Leaf.RawTBSCertificate, c.Leaf.Signature); err != nil {
		t.Fatal("leaf not signed by the identity key:", err)
	}
	if !bytes.Equal(c.Leaf.RawIssuer, idc.RawSubject) || c.Leaf.Subject.CommonName != "col-1" {
		t.Fatalf("issuer/subject %v / %v", c.Leaf.Issuer, c.Leaf.Subject)
	}
	if !c.Leaf.NotAfter.Equal(idc.NotAfter) {
		t.Errorf("NotAfter %s not clamped to the identity's %s", c.Leaf.NotAfter, idc.NotAfter)
	}
	if c.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(idk.Public()) {
		t.Error("leaf reuses the identity key")
	}
	sub := &pkix.Name{CommonName: "explicit"}
	if c := newCert(t, env.issuer(t, mrGood, false), CertOptions{Parent: idc, ParentKey: idk, Subject: sub}); c.Leaf.Subject.CommonName != "explicit" {
		t.Error("Subject ignored")
	}

	iss := env.issuer(t, mrGood, false)
	expired, expiredKey := pki.identity(t, "col-2", "collaborator", now.Add(-2*time.Hour), now.Add(-time.Hour))
	for _, tc := range []struct {
		opts CertOptions
		want string
	}{
		{CertOptions{Parent: idc}, "Parent and ParentKey must be set together"},
		{CertOptions{ParentKey: idk}, "Parent and ParentKey must be set together"},
		{CertOptions{Parent: idc, ParentKey: mustKey(t)}, "ParentKey does not match"},
		{CertOptions{Parent: expired, ParentKey: expiredKey}, `parent certificate "col-2" expired`},
	} {
		if _, err := NewCertificate(context.Background(), iss, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
}

func TestNewCertificateIssuerErrors(t *testing.T) {
	env := newSimEnv(t)
	if _, err := NewCertificate(context.Background(), nil, CertOptions{}); err == nil {
		t.Error("nil issuer accepted")
	}
	iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
	iss.fail.Store(true)
	_, err := NewCertificate(context.Background(), iss, CertOptions{})
	if err == nil || err.Error() != "ratls: new certificate: evidence for extension 1.2.840.113741.1337.6 (Gramine legacy quote): quoting enclave unavailable" {
		t.Errorf("issuer failure: %v", err)
	}
	_, err = NewCertificate(context.Background(), iss, CertOptions{Extensions: TCGOnly})
	if err == nil || !strings.Contains(err.Error(), "evidence for extension 2.23.133.5.4.9 (TCG tagged evidence): quoting enclave unavailable") {
		t.Errorf("issuer failure: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewCertificate(ctx, env.issuer(t, mrGood, false), CertOptions{}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("cancelled context: %v", err)
	}
}
