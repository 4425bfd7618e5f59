package kms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
)

// Measurements of the simulated enclaves.
var (
	mrGood  = [32]byte{0x11, 0x22, 0x33, 0x44, 1}
	mrOther = [32]byte{0x81, 0x5f, 0x00, 0x01, 2}
	mrSign  = [32]byte{0xaa, 0xbb, 0xcc, 0xdd, 3}
)

func quiet() *slog.Logger { return testlog.Discard() }

// testRoot is a root key for tests: AES-256-GCM under a random key held in
// memory (kms/rootkey's real holders are tested there).
type testRoot struct{ a cipher.AEAD }

func newTestRoot(t testing.TB) *testRoot {
	k := make([]byte, 32)
	rand.Read(k)
	b, err := aes.NewCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &testRoot{a: a}
}

func (r *testRoot) Wrap(pt, aad []byte) ([]byte, error) {
	n := make([]byte, r.a.NonceSize())
	rand.Read(n)
	return r.a.Seal(n, n, pt, aad), nil
}

func (r *testRoot) Unwrap(ct, aad []byte) ([]byte, error) {
	if len(ct) < r.a.NonceSize() {
		return nil, errors.New("short")
	}
	return r.a.Open(nil, ct[:r.a.NonceSize()], ct[r.a.NonceSize():], aad)
}
func (r *testRoot) Describe() string { return "test root key (memory)" }
func (r *testRoot) Simulated() bool  { return true }
func (r *testRoot) Close() error     { return nil }

type member struct {
	name, role string
	key        *ecdsa.PrivateKey
	issued     *pki.Issued
}

// env is a federation (real pki CA in a temp dir, simulated attestation)
// with a broker "kms", an admin "admin" (role aggregator), collaborators
// col-1 and col-2, and col-3 whose identity is revoked.
type env struct {
	t       testing.TB
	simKey  *ecdsa.PrivateKey
	ev      attest.Verifier
	certPol *policy.Policy // what the CA certifies
	connPol *policy.Policy // what the broker lets connect (wider than key policies)
	cliPol  *policy.Policy // what clients require of the broker
	fed     *pki.Federation
	members map[string]*member
	dir     string
	mu      sync.Mutex
	cliVer  *ratls.Verifier
}

func sgxRole(extra string, mrs ...[32]byte) string {
	s := "    sgx:\n"
	for _, m := range mrs {
		s += fmt.Sprintf("      - mr_enclave: %s\n        mr_signer: %s\n", hex.EncodeToString(m[:]), hex.EncodeToString(mrSign[:]))
	}
	return s + "    allow_simulation: true\n" + extra
}

func mustPolicy(t testing.TB, y string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(y), "test policy")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newEnv(t testing.TB) *env {
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
	e := &env{t: t, simKey: k, ev: sv, members: map[string]*member{}, dir: t.TempDir()}
	good := sgxRole("", mrGood)
	e.certPol = mustPolicy(t, "roles:\n  kms:\n"+good+"  aggregator:\n"+good+"  collaborator:\n"+good)
	// The broker admits both measurements and debug enclaves at the
	// connection: the key's release policy is what refuses them, so the
	// refusal is a key-level decision with a key id in the audit log.
	wide := sgxRole("    allow_debug: true\n", mrGood, mrOther)
	e.connPol = mustPolicy(t, "roles:\n  aggregator:\n"+wide+"  collaborator:\n"+wide)
	e.cliPol = mustPolicy(t, "roles:\n  kms:\n"+good)
	ca, err := pki.InitCA(filepath.Join(e.dir, "ca"), pki.InitOptions{Federation: "test", Now: now.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ name, role string }{{"kms", "kms"}, {"admin", "aggregator"}, {"col-1", "collaborator"}, {"col-2", "collaborator"}, {"col-3", "collaborator"}} {
		e.members[m.name] = e.certify(ctx, ca, m.name, m.role, now)
	}
	if _, err := ca.Revoke("col-3", "keyCompromise", now.Add(-30*time.Second)); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(e.dir, "federation.bundle")
	if _, err := ca.WriteBundle(bundle, now); err != nil {
		t.Fatal(err)
	}
	if e.fed, err = pki.LoadFederation(bundle, filepath.Join(ca.Dir(), pki.RootCertFile)); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) certify(ctx context.Context, ca *pki.CA, name, role string, now time.Time) *member {
	e.t.Helper()
	key, err := pki.GenerateKey(pki.P256)
	if err != nil {
		e.t.Fatal(err)
	}
	csr, err := pki.NewCSR(ctx, key, name, role, e.issuer(mrGood, false))
	if err != nil {
		e.t.Fatal(err)
	}
	issued, err := ca.Certify(ctx, csr, e.certPol, e.ev, now.Add(-time.Minute))
	if err != nil {
		e.t.Fatal(err)
	}
	return &member{name: name, role: role, key: key, issued: issued}
}

func (e *env) issuer(mr [32]byte, debug bool) attest.Issuer {
	iss, err := sim.NewIssuer(e.simKey, sim.Identity{TEE: attest.SGX, MREnclave: mr, MRSigner: mrSign, Debug: debug})
	if err != nil {
		e.t.Fatal(err)
	}
	iss.Logger = quiet()
	return iss
}

// leaf is name's RA-TLS certificate for an enclave measuring mr.
func (e *env) leaf(name string, mr [32]byte, debug bool) *tls.Certificate {
	e.t.Helper()
	m := e.members[name]
	c, err := ratls.NewCertificate(context.Background(), e.issuer(mr, debug), ratls.CertOptions{Parent: m.issued.Cert, ParentKey: m.key})
	if err != nil {
		e.t.Fatal(err)
	}
	return &c
}

func (e *env) verifier(pol *policy.Policy) *ratls.Verifier {
	e.t.Helper()
	v, err := ratls.NewVerifier(ratls.Config{Evidence: e.ev, Policy: pol, Identity: e.fed, Logger: quiet()})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// sqliteStore opens a fresh SQLite store.
func sqliteStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "kms.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// postgresDSN returns TEEML_TEST_POSTGRES_DSN, skipping the test when it is
// unset (failing under CI=true, where .ci/run provides PostgreSQL).
func postgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("TEEML_TEST_POSTGRES_DSN")
	if dsn == "" {
		testenv.MustRun(t, "TEEML_TEST_POSTGRES_DSN not set: no PostgreSQL to test against (.ci/run starts PostgreSQL 15)")
	}
	return dsn
}

// uniqueSchema is a fresh PostgreSQL schema name per test, so packages and
// tests can run in parallel against one database.
func uniqueSchema() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "kms_test_" + hex.EncodeToString(b)
}

func postgresStore(t testing.TB, schema string) *store.Store {
	t.Helper()
	dsn := postgresDSN(t)
	st, err := store.Open(context.Background(), store.Config{Driver: "postgres", DSN: dsn, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
		st.Close()
	})
	return st
}

// serve starts a broker on st with the kms member's RA-TLS credentials on
// 127.0.0.1:0.
func (e *env) serve(st *store.Store, root *testRoot, name string) (*Broker, string) {
	e.t.Helper()
	b, err := NewBroker(context.Background(), BrokerConfig{Name: name, Store: st, Root: root, Admins: []string{"admin"}, Logger: quiet()})
	if err != nil {
		e.t.Fatal(err)
	}
	creds, err := ratls.NewServerCredentials(ratls.TransportConfig{
		Certificates: ratls.StaticCertificate{Cert: e.leaf("kms", mrGood, false)},
		Verifier:     e.verifier(e.connPol), Logger: quiet(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(auditedCreds{TransportCredentials: creds, b: b}))
	b.Register(srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	e.t.Cleanup(func() { srv.Stop(); <-done; b.Close() })
	return b, lis.Addr().String()
}

// dial connects as member name running an enclave measuring mr.
func (e *env) dial(addr, name string, mr [32]byte, debug bool) kmsv1.KeyBrokerClient {
	e.t.Helper()
	creds, err := ratls.NewClientCredentials(ratls.TransportConfig{
		Certificates: ratls.StaticCertificate{Cert: e.leaf(name, mr, debug)}, Verifier: e.verifier(e.cliPol), Logger: quiet(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return kmsv1.NewKeyBrokerClient(conn)
}

// releaseCol1 lets col-1 (and role leader, which nobody has) running mrGood,
// non-debug, receive the key.
func releaseCol1() string {
	return fmt.Sprintf(`members: [col-1]
roles: [leader]
attestation:
  sgx:
    - mr_enclave: %s
      mr_signer: %s
  allow_debug: false
  allow_simulation: true
`, hex.EncodeToString(mrGood[:]), hex.EncodeToString(mrSign[:]))
}

// dialLeaf connects with an existing RA-TLS certificate and returns a
// close function (for per-call connections in benchmarks).
func (e *env) dialLeaf(addr string, leaf *tls.Certificate) (kmsv1.KeyBrokerClient, func()) {
	e.t.Helper()
	creds, err := ratls.NewClientCredentials(ratls.TransportConfig{
		Certificates: ratls.StaticCertificate{Cert: leaf}, Verifier: e.clientVerifier(), Logger: quiet(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		e.t.Fatal(err)
	}
	return kmsv1.NewKeyBrokerClient(conn), func() { conn.Close() }
}

// clientVerifier is one shared verifier for the broker (its evidence cache
// stays warm across connections).
func (e *env) clientVerifier() *ratls.Verifier {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cliVer == nil {
		e.cliVer = e.verifier(e.cliPol)
	}
	return e.cliVer
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
