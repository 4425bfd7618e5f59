package protocol

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/fedtest"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"

	"github.com/teeml/teeml/internal/testlog"
)

// Measurements of the simulated enclaves (internal/fedtest).
var (
	mrGood  = fedtest.MRGood
	mrOther = fedtest.MROther
)

const (
	planHash  = "91bc0e77c4d1a5f0e3b2a1c09d8e7f6a5b4c3d2e1f00112233445566778899aa"
	otherPlan = "3fa2c4d1aa00bb11cc22dd33ee44ff5566778899aabbccddeeff001122334455"
)

func quiet() *slog.Logger { return testlog.Discard() }

type logBuf = testlog.Buffer

// member is a certified party: its identity key and certificate.
type member = fedtest.Member

// fedEnv is a federation (internal/fedtest: a real pki CA in a temp dir,
// simulated attestation) whose policy allows simulation for mrGood in the
// roles aggregator and collaborator.
type fedEnv struct {
	t       testing.TB
	fe      *fedtest.Env
	pol     *policy.Policy
	members map[string]*member
}

func newFedEnv(t testing.TB, names ...string) *fedEnv {
	t.Helper()
	parties := []fedtest.Party{{Name: "aggregator", Role: "aggregator"}}
	for _, n := range names {
		if n != "aggregator" {
			parties = append(parties, fedtest.Party{Name: n, Role: "collaborator"})
		}
	}
	fe := fedtest.New(t, fedtest.Options{Members: parties})
	return &fedEnv{t: t, fe: fe, pol: fe.CertPolicy, members: fe.Members}
}

// certify has ca (another CA than e's: a non-member) certify name.
func certify(t testing.TB, ctx context.Context, ca *pki.CA, e *fedEnv, name, role string, now time.Time) *member {
	t.Helper()
	return e.fe.Certify(ctx, ca, name, role, now)
}

// leaf makes m's RA-TLS certificate, signed by its identity key, with
// evidence from an enclave measuring mr.
func (e *fedEnv) leaf(m *member, mr [32]byte) *tls.Certificate {
	e.t.Helper()
	return e.fe.LeafOf(m, mr, false)
}

func (e *fedEnv) verifier(log *slog.Logger) *ratls.Verifier {
	e.t.Helper()
	return e.fe.Verifier(e.pol, log)
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
	return e.serveMeasured(lis, m, mrGood, a, log)
}

// serveMeasured serves a on lis as m in an enclave measuring mr.
func (e *fedEnv) serveMeasured(lis net.Listener, m *member, mr [32]byte, a *Aggregator, log *slog.Logger) string {
	e.t.Helper()
	creds, err := ratls.NewServerCredentials(ratls.TransportConfig{
		Certificates: ratls.StaticCertificate{Cert: e.leaf(m, mr)},
		Verifier:     e.verifier(log), Logger: log,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := grpc.NewServer(append(ServerOptions(), grpc.Creds(creds))...)
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
