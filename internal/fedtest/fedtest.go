// Package fedtest is the RA-TLS federation that tests of fl/protocol, kms
// and vfl/psi run against: a real pki CA in a temporary directory, members
// certified from simulated SGX evidence, the signed federation bundle, and
// RA-TLS certificates, verifiers and gRPC credentials for the members.
// It is test support only: nothing but _test.go files imports it.
//
// ratls's own tests cannot use it (pki imports ratls, so package ratls's
// internal tests cannot import pki or this package); they keep a minimal
// identity verifier of their own.
package fedtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
)

// Measurements of the simulated enclaves: MRGood is what the policies
// accept, MROther an enclave they do not, MRSign the signer of both.
var (
	MRGood  = [32]byte{0x11, 0x22, 0x33, 0x44, 1}
	MROther = [32]byte{0x81, 0x5f, 0x00, 0x01, 2}
	MRSign  = [32]byte{0xaa, 0xbb, 0xcc, 0xdd, 3}
)

// Member is a certified party: its identity key and certificate.
type Member struct {
	Name, Role string
	Key        *ecdsa.PrivateKey
	Issued     *pki.Issued
}

// Party names a member to certify and its role.
type Party struct{ Name, Role string }

// Options configure New.
type Options struct {
	// Members are certified in this order (CA serial numbers follow it).
	Members []Party
	// CertPolicy is what the CA certifies against; nil means
	// SimPolicy(the members' roles, "", MRGood).
	CertPolicy *policy.Policy
	// CertifyAt is the time passed to the CA for each certification
	// (default: the time New runs).
	CertifyAt time.Time
	// Revoke are members revoked (keyCompromise, 30 s ago) before the
	// bundle is written.
	Revoke []string
}

// Env is a federation with simulated attestation.
type Env struct {
	t testing.TB
	// SimKey signs the simulated evidence; Evidence verifies it.
	SimKey   *ecdsa.PrivateKey
	Evidence attest.Verifier
	// CertPolicy is what the CA certified against.
	CertPolicy *policy.Policy
	// Fed checks peer identities against the signed bundle.
	Fed     *pki.Federation
	Members map[string]*Member
	// Dir holds the CA and the bundle.
	Dir string
}

// Quiet is a logger that drops everything.
func Quiet() *slog.Logger { return testlog.Discard() }

// New builds the federation: a CA, every member certified from evidence
// measuring MRGood, the revocations, and the bundle.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	k, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sv, err := sim.NewVerifier(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sv.Logger = Quiet()
	e := &Env{t: t, SimKey: k, Evidence: sv, CertPolicy: o.CertPolicy, Members: map[string]*Member{}, Dir: t.TempDir()}
	if e.CertPolicy == nil {
		var roles []string
		for _, m := range o.Members {
			if !slices.Contains(roles, m.Role) {
				roles = append(roles, m.Role)
			}
		}
		e.CertPolicy = SimPolicy(t, roles, "", MRGood)
	}
	at := o.CertifyAt
	if at.IsZero() {
		at = now
	}
	ca, err := pki.InitCA(filepath.Join(e.Dir, "ca"), pki.InitOptions{Federation: "test", Now: now.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range o.Members {
		e.Members[m.Name] = e.Certify(ctx, ca, m.Name, m.Role, at)
	}
	for _, name := range o.Revoke {
		if _, err := ca.Revoke(name, "keyCompromise", now.Add(-30*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	bundle := filepath.Join(e.Dir, "federation.bundle")
	if _, err := ca.WriteBundle(bundle, now); err != nil {
		t.Fatal(err)
	}
	if e.Fed, err = pki.LoadFederation(bundle, filepath.Join(ca.Dir(), pki.RootCertFile)); err != nil {
		t.Fatal(err)
	}
	return e
}

// Certify has ca certify a new member name (a fresh P-256 identity key)
// from evidence measuring MRGood, against e.CertPolicy, at time at. With
// another CA than the federation's it makes a non-member.
func (e *Env) Certify(ctx context.Context, ca *pki.CA, name, role string, at time.Time) *Member {
	e.t.Helper()
	key, err := pki.GenerateKey(pki.P256)
	if err != nil {
		e.t.Fatal(err)
	}
	csr, err := pki.NewCSR(ctx, key, name, role, e.Issuer(MRGood, false))
	if err != nil {
		e.t.Fatal(err)
	}
	issued, err := ca.Certify(ctx, csr, e.CertPolicy, e.Evidence, at)
	if err != nil {
		e.t.Fatal(err)
	}
	return &Member{Name: name, Role: role, Key: key, Issued: issued}
}

// SimRole is the YAML of one policy role accepting SGX enclaves measuring
// mrs (signed by MRSign), simulation allowed, followed by extra (more
// lines of the role, indented four spaces).
func SimRole(extra string, mrs ...[32]byte) string {
	s := "    sgx:\n"
	for _, m := range mrs {
		s += fmt.Sprintf("      - mr_enclave: %s\n        mr_signer: %s\n", hex.EncodeToString(m[:]), hex.EncodeToString(MRSign[:]))
	}
	return s + "    allow_simulation: true\n" + extra
}

// SimPolicy is a policy whose roles each accept SimRole(extra, mrs...).
func SimPolicy(t testing.TB, roles []string, extra string, mrs ...[32]byte) *policy.Policy {
	t.Helper()
	var y strings.Builder
	y.WriteString("roles:\n")
	for _, r := range roles {
		y.WriteString("  " + r + ":\n" + SimRole(extra, mrs...))
	}
	return MustPolicy(t, y.String())
}

// MustPolicy parses a policy's YAML.
func MustPolicy(t testing.TB, y string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(y), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Issuer issues simulated SGX evidence for an enclave measuring mr.
func (e *Env) Issuer(mr [32]byte, debug bool) attest.Issuer {
	iss, err := sim.NewIssuer(e.SimKey, sim.Identity{TEE: attest.SGX, MREnclave: mr, MRSigner: MRSign, Debug: debug})
	if err != nil {
		e.t.Fatal(err)
	}
	iss.Logger = Quiet()
	return iss
}

// Leaf is member name's RA-TLS certificate, signed by its identity key,
// with evidence from an enclave measuring mr.
func (e *Env) Leaf(name string, mr [32]byte, debug bool) *tls.Certificate {
	e.t.Helper()
	m := e.Members[name]
	if m == nil {
		e.t.Fatalf("fedtest: no member %q", name)
	}
	return e.LeafOf(m, mr, debug)
}

// LeafOf is Leaf for a member certified by any CA (see Certify).
func (e *Env) LeafOf(m *Member, mr [32]byte, debug bool) *tls.Certificate {
	e.t.Helper()
	c, err := ratls.NewCertificate(context.Background(), e.Issuer(mr, debug), ratls.CertOptions{Parent: m.Issued.Cert, ParentKey: m.Key})
	if err != nil {
		e.t.Fatal(err)
	}
	return &c
}

// Verifier checks peers against pol and the federation bundle.
func (e *Env) Verifier(pol *policy.Policy, log *slog.Logger) *ratls.Verifier {
	e.t.Helper()
	v, err := ratls.NewVerifier(ratls.Config{Evidence: e.Evidence, Policy: pol, Identity: e.Fed, Logger: log})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// Credentials are member name's gRPC RA-TLS credentials (server or client
// side), its evidence measuring mr, checking peers against pol.
func (e *Env) Credentials(name string, mr [32]byte, pol *policy.Policy, server bool, log *slog.Logger) credentials.TransportCredentials {
	e.t.Helper()
	tc := ratls.TransportConfig{Certificates: ratls.StaticCertificate{Cert: e.Leaf(name, mr, false)}, Verifier: e.Verifier(pol, log), Logger: log}
	var cr credentials.TransportCredentials
	var err error
	if server {
		cr, err = ratls.NewServerCredentials(tc)
	} else {
		cr, err = ratls.NewClientCredentials(tc)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return cr
}
