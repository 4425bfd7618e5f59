package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/verifier"
)

func TestMain(m *testing.M) {
	// Simulated attestation and accepted-with-warnings decisions log at
	// WARN on every use; keep test output readable.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// mrEnclave is the measurement the test policy accepts.
var mrEnclave = [32]byte{0x5e, 0xed, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}

func hex32(b [32]byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func policyYAML(allowSim bool) string {
	s := "roles:\n"
	for _, r := range []string{"collaborator", "aggregator"} {
		s += "  " + r + ":\n    sgx:\n      - mr_enclave: " + hex32(mrEnclave) + "\n"
		if allowSim {
			s += "    allow_simulation: true\n"
		}
	}
	return s
}

type env struct {
	t      *testing.T
	ca     *CA
	simKey *ecdsa.PrivateKey
	v      attest.Verifier
	pol    *policy.Policy
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ca, err := InitCA(filepath.Join(t.TempDir(), "ca"), InitOptions{Federation: "acme", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	simKey, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.Config{SimulationKeys: []*ecdsa.PublicKey{&simKey.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(policyYAML(true)), "test-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ca: ca, simKey: simKey, v: v, pol: pol}
}

func sgxID(mre [32]byte) sim.Identity { return sim.Identity{TEE: attest.SGX, MREnclave: mre} }

func (e *env) issuer(id sim.Identity) attest.Issuer {
	e.t.Helper()
	iss, err := sim.NewIssuer(e.simKey, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return iss
}

func (e *env) csr(name, role string, iss attest.Issuer) (*ecdsa.PrivateKey, []byte) {
	e.t.Helper()
	key, err := GenerateKey(P256)
	if err != nil {
		e.t.Fatal(err)
	}
	if iss == nil {
		iss = e.issuer(sgxID(mrEnclave))
	}
	csr, err := NewCSR(context.Background(), key, name, role, iss)
	if err != nil {
		e.t.Fatal(err)
	}
	return key, csr
}

func (e *env) certify(name, role string, opts ...CertifyOption) (*Issued, *ecdsa.PrivateKey) {
	e.t.Helper()
	key, csr := e.csr(name, role, nil)
	is, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, t0, opts...)
	if err != nil {
		e.t.Fatalf("certify %s: %v", name, err)
	}
	return is, key
}

func (e *env) federation(at time.Time) *Federation {
	e.t.Helper()
	b, err := e.ca.Bundle(at)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := NewFederation(b, e.ca.Root())
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// leaf makes an RA-TLS-like leaf certificate for a fresh key, signed by the
// identity key under the identity certificate.
func leaf(t *testing.T, idCert *x509.Certificate, idKey *ecdsa.PrivateKey, now time.Time) *x509.Certificate {
	t.Helper()
	key, err := GenerateKey(P256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "ra-tls"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, idCert, &key.PublicKey, idKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantErr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", subs)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not mention %q", msg, s)
		}
	}
}
