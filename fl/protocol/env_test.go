package protocol

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"

	"github.com/teeml/teeml/internal/testlog"
)

// Measurements of the simulated enclaves.
var (
	mrGood  = [32]byte{0x11, 0x22, 0x33, 0x44, 1}
	mrOther = [32]byte{0x81, 0x5f, 0x00, 0x01, 2}
	mrSign  = [32]byte{0xaa, 0xbb, 0xcc, 0xdd, 3}
)

const (
	planHash  = "91bc0e77c4d1a5f0e3b2a1c09d8e7f6a5b4c3d2e1f00112233445566778899aa"
	otherPlan = "3fa2c4d1aa00bb11cc22dd33ee44ff5566778899aabbccddeeff001122334455"
)

func quiet() *slog.Logger { return testlog.Discard() }

type logBuf = testlog.Buffer

// member is a certified party: its identity key and certificate.
type member struct {
	name, role string
	key        *ecdsa.PrivateKey
	issued     *pki.Issued
}

// fedEnv is a federation with a real pki CA in a temp dir, simulated
// attestation and a policy allowing simulation for mrGood.
type fedEnv struct {
	t       testing.TB
	simKey  *ecdsa.PrivateKey
	ev      attest.Verifier
	pol     *policy.Policy
	fed     *pki.Federation
	members map[string]*member
}

func newFedEnv(t testing.TB, names ...string) *fedEnv {
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
	sv.Logger = quiet()
	e := &fedEnv{t: t, simKey: k, ev: sv, members: map[string]*member{}}
	y := fmt.Sprintf(`roles:
  aggregator:
    sgx:
      - mr_enclave: %[1]s
        mr_signer: %[2]s
    allow_simulation: true
  collaborator:
    sgx:
      - mr_enclave: %[1]s
        mr_signer: %[2]s
    allow_simulation: true
`, hex.EncodeToString(mrGood[:]), hex.EncodeToString(mrSign[:]))
	if e.pol, err = policy.Parse([]byte(y), "policy.yaml"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.InitOptions{Federation: "test", Now: now.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range append([]string{"aggregator"}, names...) {
		role := "collaborator"
		if n == "aggregator" {
			role = "aggregator"
		}
		e.members[n] = certify(t, ctx, ca, e, n, role, now)
	}
	bundle := filepath.Join(dir, "federation.bundle")
	if _, err := ca.WriteBundle(bundle, now); err != nil {
		t.Fatal(err)
	}
	if e.fed, err = pki.LoadFederation(bundle, filepath.Join(ca.Dir(), pki.RootCertFile)); err != nil {
		t.Fatal(err)
	}
	return e
}

func certify(t testing.TB, ctx context.Context, ca *pki.CA, e *fedEnv, name, role string, now time.Time) *member {
	t.Helper()
	key, err := pki.GenerateKey(pki.P256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(ctx, key, name, role, e.issuer(mrGood))
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Certify(ctx, csr, e.pol, e.ev, now)
	if err != nil {
		t.Fatal(err)
	}
	return &member{name: name, role: role, key: key, issued: issued}
}

func (e *fedEnv) issuer(mr [32]byte) attest.Issuer {
	iss, err := sim.NewIssuer(e.simKey, sim.Identity{TEE: attest.SGX, MREnclave: mr, MRSigner: mrSign})
	if err != nil {
		e.t.Fatal(err)
	}
	iss.Logger = quiet()
	return iss
}

// leaf makes m's RA-TLS certificate, signed by its identity key, with
// evidence from an enclave measuring mr.
func (e *fedEnv) leaf(m *member, mr [32]byte) *tls.Certificate {
	e.t.Helper()
	c, err := ratls.NewCertificate(context.Background(), e.issuer(mr), ratls.CertOptions{Parent: m.issued.Cert, ParentKey: m.key})
	if err != nil {
		e.t.Fatal(err)
	}
	return &c
}

func (e *fedEnv) verifier(log *slog.Logger) *ratls.Verifier {
	e.t.Helper()
	v, err := ratls.NewVerifier(ratls.Config{Evidence: e.ev, Policy: e.pol, Identity: e.fed, Logger: log})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// serve starts a gRPC server with the aggregator's RA-TLS credentials on
// 127.0.0.1:0 and registers a on it.
func (e *fedEnv) serve(a *Aggregator, log *slog.Logger) string {
	e.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	return e.serveOn(lis, a, log)
}

// serveAs serves a on 127.0.0.1:0 with the RA-TLS credentials of member name.
func (e *fedEnv) serveAs(name string, a *Aggregator, log *slog.Logger) string {
	e.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	return e.serveWith(lis, e.members[name], a, log)
}

// serveOn serves a on lis with the aggregator's RA-TLS credentials.
func (e *fedEnv) serveOn(lis net.Listener, a *Aggregator, log *slog.Logger) string {
	e.t.Helper()
	return e.serveWith(lis, e.members["aggregator"], a, log)
}

func (e *fedEnv) serveWith(lis net.Listener, m *member, a *Aggregator, log *slog.Logger) string {
	e.t.Helper()
	creds, err := ratls.NewServerCredentials(ratls.TransportConfig{
		Certificates: ratls.StaticCertificate{Cert: e.leaf(m, mrGood)},
		Verifier:     e.verifier(log), Logger: log,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	a.Register(srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	e.t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

// dial connects as cert's holder.
func (e *fedEnv) dial(addr string, cert *tls.Certificate, log *slog.Logger) *grpc.ClientConn {
	e.t.Helper()
	creds, err := ratls.NewClientCredentials(ratls.TransportConfig{
		Certificates: ratls.StaticCertificate{Cert: cert}, Verifier: e.verifier(log), Logger: log,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func oneLine(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	if strings.Contains(s, "\n") {
		t.Errorf("%s is not one line: %q", what, s)
	}
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s %q does not contain %q", what, s, p)
		}
	}
}
