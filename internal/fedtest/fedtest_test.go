package fedtest

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func chain(t *testing.T, e *Env, name string, mr [32]byte) []*x509.Certificate {
	t.Helper()
	leaf := e.Leaf(name, mr, false)
	var out []*x509.Certificate
	for _, der := range leaf.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) < 2 {
		t.Fatalf("leaf chain has %d certificates, want leaf + identity", len(out))
	}
	return out
}

// TestFederation: a member's RA-TLS leaf with the accepted measurement
// verifies with its name and role; another measurement and a revoked
// member are refused.
func TestFederation(t *testing.T) {
	e := New(t, Options{
		Members: []Party{{"agg", "aggregator"}, {"col-1", "collaborator"}, {"col-2", "collaborator"}},
		Revoke:  []string{"col-2"},
	})
	v := e.Verifier(e.CertPolicy, Quiet())
	ctx, now := context.Background(), time.Now()

	p, err := v.VerifyPeer(ctx, chain(t, e, "col-1", MRGood), now)
	if err != nil {
		t.Fatalf("col-1 with MRGood: %v", err)
	}
	if p.Identity == nil || p.Identity.Name != "col-1" || p.Identity.Role != "collaborator" || !p.Simulated {
		t.Fatalf("peer %+v identity %+v", p, p.Identity)
	}
	if _, err := v.VerifyPeer(ctx, chain(t, e, "col-1", MROther), now); err == nil || !strings.Contains(err.Error(), "mr_enclave") {
		t.Errorf("col-1 with MROther: err %v, want a refusal naming mr_enclave", err)
	}
	if _, err := v.VerifyPeer(ctx, chain(t, e, "col-2", MRGood), now); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked col-2: err %v, want a refusal naming the revocation", err)
	}
	if got := len(e.Fed.Members()); got != 3 {
		t.Errorf("bundle has %d members, want 3", got)
	}
}

// TestSimPolicyRoles: a policy from SimPolicy accepts its roles only.
func TestSimPolicyRoles(t *testing.T) {
	e := New(t, Options{Members: []Party{{"agg", "aggregator"}, {"col-1", "collaborator"}}})
	v := e.Verifier(SimPolicy(t, []string{"collaborator"}, "", MRGood), Quiet())
	ctx, now := context.Background(), time.Now()
	if _, err := v.VerifyPeer(ctx, chain(t, e, "col-1", MRGood), now); err != nil {
		t.Fatalf("collaborator: %v", err)
	}
	if _, err := v.VerifyPeer(ctx, chain(t, e, "agg", MRGood), now); err == nil {
		t.Fatal("aggregator accepted by a collaborator-only policy")
	}
}
