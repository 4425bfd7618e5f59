package kms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
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
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/fedtest"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/ratls"
)

// Measurements of the simulated enclaves (internal/fedtest).
var (
	mrGood  = fedtest.MRGood
	mrOther = fedtest.MROther
	mrSign  = fedtest.MRSign
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

type member = fedtest.Member

// env is a federation (internal/fedtest: a real pki CA in a temp dir,
// simulated attestation) with a broker "kms", an admin "admin" (role
// aggregator), collaborators col-1 and col-2, and col-3 whose identity is
// revoked.
type env struct {
	t       testing.TB
	fe      *fedtest.Env
	certPol *policy.Policy // what the CA certifies
	connPol *policy.Policy // what the broker lets connect (wider than key policies)
	cliPol  *policy.Policy // what clients require of the broker
	members map[string]*member
	dir     string
	mu      sync.Mutex
	cliVer  *ratls.Verifier
	anchors map[*store.Store]string // audit anchor per store handle (guarded by mu)
}

func sgxRole(extra string, mrs ...[32]byte) string { return fedtest.SimRole(extra, mrs...) }

func mustPolicy(t testing.TB, y string) *policy.Policy {
	t.Helper()
	return fedtest.MustPolicy(t, y)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	fe := fedtest.New(t, fedtest.Options{
		Members: []fedtest.Party{{Name: "kms", Role: "kms"}, {Name: "admin", Role: "aggregator"},
			{Name: "col-1", Role: "collaborator"}, {Name: "col-2", Role: "collaborator"}, {Name: "col-3", Role: "collaborator"}},
		CertifyAt: time.Now().Add(-time.Minute),
		Revoke:    []string{"col-3"},
	})
	e := &env{t: t, fe: fe, certPol: fe.CertPolicy, members: fe.Members, dir: fe.Dir}
	good := sgxRole("", mrGood)
	// The broker admits both measurements and debug enclaves at the
	// connection: the key's release policy is what refuses them, so the
	// refusal is a key-level decision with a key id in the audit log.
	wide := sgxRole("    allow_debug: true\n", mrGood, mrOther)
	e.connPol = mustPolicy(t, "roles:\n  aggregator:\n"+wide+"  collaborator:\n"+wide)
	e.cliPol = mustPolicy(t, "roles:\n  kms:\n"+good)
	return e
}

// leaf is name's RA-TLS certificate for an enclave measuring mr.
func (e *env) leaf(name string, mr [32]byte, debug bool) *tls.Certificate {
	e.t.Helper()
	return e.fe.Leaf(name, mr, debug)
}

func (e *env) verifier(pol *policy.Policy) *ratls.Verifier {
	e.t.Helper()
	return e.fe.Verifier(pol, quiet())
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
	return e.serveAnchored(st, root, name, true)
}

// serveAnchored is serve with (as `kms serve` always runs) or without an
// audit anchor file, in a temporary directory, one per store handle.
func (e *env) serveAnchored(st *store.Store, root *testRoot, name string, anchored bool) (*Broker, string) {
	e.t.Helper()
	anchor := ""
	if anchored { // one anchor per store handle: a restart on it finds it
		e.mu.Lock()
		if e.anchors == nil {
			e.anchors = map[*store.Store]string{}
		}
		if e.anchors[st] == "" {
			e.anchors[st] = filepath.Join(e.t.TempDir(), name+".anchor")
		}
		anchor = e.anchors[st]
		e.mu.Unlock()
	}
	b, err := NewBroker(context.Background(), BrokerConfig{Name: name, Store: st, Root: root, Admins: []string{"admin"}, Logger: quiet(),
		Federation: e.fe.Fed, AnchorPath: anchor})
	if err != nil {
		e.t.Fatal(err)
	}
	addr, stop := e.serveBroker(b)
	e.t.Cleanup(stop)
	return b, addr
}

// serveBroker serves b on 127.0.0.1:0 until stop (which also closes b) is
// called; stop may be called more than once.
func (e *env) serveBroker(b *Broker) (string, func()) {
	e.t.Helper()
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
	var once sync.Once
	return lis.Addr().String(), func() { once.Do(func() { srv.Stop(); <-done; b.Close() }) }
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
