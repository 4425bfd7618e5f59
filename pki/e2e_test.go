package pki_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/verifier"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
)

// TestRATLSLeafUnderIdentityCertificate runs the whole flow: CA init, CSR
// with evidence inside the (simulated) TEE, attested certify, bundle to the
// verifying party, an RA-TLS certificate from package ratls signed by the
// identity key, and ratls's verifier with the Federation as its
// IdentityVerifier. Then revocation reaches the party with a new bundle.
func TestRATLSLeafUnderIdentityCertificate(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now()
	dir := t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.InitOptions{Federation: "acme", Now: now})
	if err != nil {
		t.Fatal(err)
	}

	// The party's TEE (simulated).
	simKey, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id := sim.Identity{TEE: attest.SGX}
	id.MREnclave[0] = 0x42
	iss, err := sim.NewIssuer(simKey, id)
	if err != nil {
		t.Fatal(err)
	}
	iss.Logger = logger
	idKey, err := pki.GenerateKey(pki.P256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(ctx, idKey, "col-1", "collaborator", iss)
	if err != nil {
		t.Fatal(err)
	}

	// The CA and every verifier trust the simulation key and a policy that
	// allows simulation for this measurement.
	ev, err := verifier.New(verifier.Config{SimulationKeys: []*ecdsa.PublicKey{&simKey.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte("roles:\n  collaborator:\n    allow_simulation: true\n    sgx:\n      - mr_enclave: 42"+zeros(62)+"\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Certify(ctx, csr, pol, ev, now)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "federation.bundle")
	if _, err := ca.WriteBundle(bundle, now); err != nil {
		t.Fatal(err)
	}
	fed, err := pki.LoadFederation(bundle, filepath.Join(ca.Dir(), pki.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}

	// The party's RA-TLS certificate, signed by its identity key.
	cert, err := ratls.NewCertificate(ctx, iss, ratls.CertOptions{Parent: issued.Cert, ParentKey: idKey})
	if err != nil {
		t.Fatal(err)
	}
	chain := make([]*x509.Certificate, len(cert.Certificate))
	for i, der := range cert.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	if len(chain) != 2 {
		t.Fatalf("chain of %d certificates", len(chain))
	}
	got, err := fed.VerifyIdentity(chain, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "col-1" || got.Role != "collaborator" || got.Serial != issued.Member.Serial {
		t.Fatalf("identity %+v", got)
	}
	rv, err := ratls.NewVerifier(ratls.Config{Evidence: ev, Policy: pol, Identity: fed, Logger: logger, CacheEntries: -1})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := rv.VerifyPeer(ctx, chain, now)
	if err != nil {
		t.Fatal(err)
	}
	if peer.Name() != "col-1" || peer.Role() != "collaborator" || !peer.Simulated {
		t.Fatalf("peer %+v", peer)
	}

	// Over TLS: the real holder of the leaf key completes the handshake; a
	// replay of the same certificate chain without its private key does not.
	if err := handshake(t, rv, cert, now); err != nil {
		t.Fatalf("handshake with the genuine certificate: %v", err)
	}
	stolen := cert
	if stolen.PrivateKey, err = pki.GenerateKey(pki.P256); err != nil {
		t.Fatal(err)
	}
	err = handshake(t, rv, stolen, now)
	if err == nil || !strings.Contains(err.Error(), "verification") {
		t.Fatalf("handshake with a replayed certificate chain (wrong private key): %v, want a signature verification failure", err)
	}
	t.Logf("replayed chain: %v", err)

	// Revocation reaches the party with the next bundle.
	if _, err := ca.Revoke("col-1", "keyCompromise", now); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteBundle(bundle, now); err != nil {
		t.Fatal(err)
	}
	fed2, err := pki.LoadFederation(bundle, filepath.Join(ca.Dir(), pki.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	rv2, err := ratls.NewVerifier(ratls.Config{Evidence: ev, Policy: pol, Identity: fed2, Logger: logger, CacheEntries: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rv2.VerifyPeer(ctx, chain, now)
	if ratls.CheckOf(err) != ratls.CheckIdentity {
		t.Fatalf("after revocation: %v (check %q), want an identity refusal", err, ratls.CheckOf(err))
	}
	t.Logf("refusal after revocation: %v", err)

	// A self-signed RA-TLS certificate (attestation only, no identity key)
	// is refused in PKI mode.
	self, err := ratls.NewCertificate(ctx, iss, ratls.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(self.Certificate[0])
	if _, err := rv.VerifyPeer(ctx, []*x509.Certificate{leaf}, now); ratls.CheckOf(err) != ratls.CheckIdentity {
		t.Fatalf("self-signed in PKI mode: %v", err)
	}
}

// handshake runs a TLS 1.3 handshake over a pipe: the server presents
// cert, the client verifies it with rv (as ratls's credentials do) and
// relies on crypto/tls for proof of possession of the leaf key.
func handshake(t *testing.T, rv *ratls.Verifier, cert tls.Certificate, now time.Time) error {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	done := make(chan error, 1)
	go func() { done <- srv.Handshake(); s.Close() }()
	cli := tls.Client(c, &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			chain := make([]*x509.Certificate, len(raw))
			for i, der := range raw {
				var err error
				if chain[i], err = x509.ParseCertificate(der); err != nil {
					return err
				}
			}
			_, err := rv.VerifyPeer(context.Background(), chain, now)
			return err
		},
	})
	err := cli.Handshake()
	c.Close()
	<-done
	return err
}

func zeros(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = '0'
	}
	return string(b)
}
