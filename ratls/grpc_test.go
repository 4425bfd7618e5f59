package ratls

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/teeml/teeml/internal/testenv"
)

// A minimal gRPC service with a raw-bytes codec (no protoc): Who returns
// what the handler sees of the calling peer.

const whoMethod = "/teeml.ratls.test.Who/Who"

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "ratls-test-raw" }

var whoService = grpc.ServiceDesc{
	ServiceName: "teeml.ratls.test.Who",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Who", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		level := "?"
		certs := -1
		if p, ok := peer.FromContext(ctx); ok {
			if ai, ok := p.AuthInfo.(*AuthInfo); ok {
				level = ai.SecurityLevel.String()
				certs = len(ai.State.PeerCertificates)
			}
		}
		out := []byte(fmt.Sprintf("unverified level=%s certs=%d", level, certs))
		if p, ok := PeerFromContext(ctx); ok {
			out = []byte(fmt.Sprintf("name=%s role=%s mr_enclave=%x simulated=%v level=%s", p.Name(), p.Role(), p.Claims.MREnclave, p.Simulated, level))
		}
		return &out, nil
	}}},
}

// serve starts a gRPC server with RA-TLS credentials on 127.0.0.1:0.
func serve(t testing.TB, cfg TransportConfig) string {
	t.Helper()
	creds, err := NewServerCredentials(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds), grpc.ForceServerCodec(rawCodec{}))
	srv.RegisterService(&whoService, struct{}{})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

// who calls Who over a new connection within a deadline; it returns the
// handler's answer and the server peer the client verified.
func who(t testing.TB, addr string, cfg TransportConfig) (string, *AuthInfo, error) {
	t.Helper()
	creds, err := NewClientCredentials(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, out := []byte("who"), []byte(nil)
	var p peer.Peer
	if err := conn.Invoke(ctx, whoMethod, &in, &out, grpc.ForceCodec(rawCodec{}), grpc.Peer(&p)); err != nil {
		return "", nil, err
	}
	ai, _ := p.AuthInfo.(*AuthInfo)
	return string(out), ai, nil
}

// link is the federation used by the gRPC tests: an aggregator server and
// a collaborator client, each with an RA-TLS certificate under its
// identity and a verifier.
type link struct {
	f                  *fixture
	server, client     tls.Certificate
	serverLog, cliLog  *logBuf
	verifier, noSimVer *Verifier
}

func newLink(t testing.TB) *link {
	t.Helper()
	f := newFixture(t)
	return &link{
		f: f, server: f.cert(t, "agg-1", "aggregator", mrGood, false), client: f.cert(t, "col-1", "collaborator", mrGood, false),
		serverLog: &logBuf{}, cliLog: &logBuf{},
		verifier: f.verifier(t), noSimVer: f.verifier(t, func(c *Config) { c.Policy = testPolicy(t, false) }),
	}
}

func (l *link) serverCfg(cert tls.Certificate, v *Verifier) TransportConfig {
	return TransportConfig{Certificates: StaticCertificate{Cert: &cert}, Verifier: v, Logger: rawLogger(l.serverLog)}
}

func (l *link) clientCfg(cert tls.Certificate, v *Verifier) TransportConfig {
	return TransportConfig{Certificates: StaticCertificate{Cert: &cert}, Verifier: v, Logger: rawLogger(l.cliLog)}
}

func TestGRPCAccepted(t *testing.T) {
	l := newLink(t)
	addr := serve(t, l.serverCfg(l.server, l.verifier))
	got, ai, err := who(t, addr, l.clientCfg(l.client, l.verifier))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("name=col-1 role=collaborator mr_enclave=%x simulated=true level=PrivacyAndIntegrity", mrGood)
	if got != want {
		t.Fatalf("handler saw %q, want %q", got, want)
	}
	if ai == nil || ai.Peer == nil || ai.Peer.Name() != "agg-1" || ai.Peer.Role() != "aggregator" || !ai.Peer.Simulated ||
		ai.AuthType() != "ratls" || ai.SecurityLevel != credentials.PrivacyAndIntegrity || ai.State.Version != tls.VersionTLS13 {
		t.Fatalf("client's view of the server: %+v", ai)
	}
	// A second connection with the same certificates: evidence from the
	// cache on both sides.
	if _, ai, err = who(t, addr, l.clientCfg(l.client, l.verifier)); err != nil || !ai.Peer.Cached {
		t.Fatalf("second connection: %v", err)
	}
	if n := l.f.ev.n.Load(); n != 2 {
		t.Fatalf("%d evidence verifications for 2 connections, want 2 (one per certificate)", n)
	}
	if s := l.serverLog.String() + l.cliLog.String(); s != "" {
		t.Fatalf("logged on success: %s", s)
	}
}

// refusal describes a bad peer: make builds the bad certificate for a
// name and role; the verifying side uses noSim when set.
type refusal struct {
	name  string
	make  func(t *testing.T, l *link, name, role string) tls.Certificate
	noSim bool
	check Check
	msg   string // {name} and {role} are the bad peer's
}

func (l *link) leafUnder(t testing.TB, idc *x509.Certificate, idk *ecdsa.PrivateKey, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key := mustKey(t)
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := evidenceExtensions(context.Background(), l.f.env.issuer(t, mrGood, false), spki, BothExtensions)
	if err != nil {
		t.Fatal(err)
	}
	return buildLeaf(t, leafSpec{key: key, exts: exts, parent: idc, parentKey: idk, notBefore: notBefore, notAfter: notAfter})
}

var refusals = []refusal{
	{name: "wrong measurement", check: CheckPolicy, msg: `peer "{name}": role {role}: mr_enclave 815f0001`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			return l.f.cert(t, name, role, mrOther, false)
		}},
	{name: "debug enclave", check: CheckPolicy, msg: `peer "{name}": role {role}: debug enclave refused (allow_debug: false)`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			return l.f.cert(t, name, role, mrGood, true)
		}},
	{name: "simulation not allowed", noSim: true, check: CheckPolicy, msg: `peer "{name}": role {role}: simulated evidence refused (allow_simulation: false)`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			return l.f.cert(t, name, role, mrGood, false)
		}},
	{name: "not a member", check: CheckIdentity, msg: `peer "{name}" (unverified): "{name}" is not in the member list`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			c := l.f.cert(t, name, role, mrGood, false)
			l.f.pki.removeMember(name)
			return c
		}},
	{name: "expired identity", check: CheckIdentity, msg: `peer "{name}" (unverified): identity certificate "{name}": x509: certificate has expired`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			idc, idk := l.f.pki.identity(t, name, role, l.f.now.Add(-48*time.Hour), l.f.now.Add(-time.Hour))
			return l.leafUnder(t, idc, idk, time.Time{}, time.Time{})
		}},
	{name: "revoked identity", check: CheckIdentity, msg: `peer "{name}" (unverified): certificate revoked`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			c := l.f.cert(t, name, role, mrGood, false)
			l.f.pki.revoke(chainOf(t, c)[1])
			return c
		}},
	{name: "key binding", check: CheckBinding, msg: `peer "{name}": evidence binds key`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			good := l.f.cert(t, name, role, mrGood, false)
			idc, idk := l.f.member(t, name, role)
			return buildLeaf(t, leafSpec{exts: evidenceExts(good.Leaf), parent: idc, parentKey: idk})
		}},
	{name: "replayed certificate", check: CheckProofOfPossession, msg: `peer "{name}" (unverified): tls: invalid signature by the`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			captured := l.f.cert(t, name, role, mrGood, false)
			return tls.Certificate{Certificate: captured.Certificate, PrivateKey: mustKey(t)}
		}},
	{name: "expired leaf", check: CheckValidity, msg: `peer "{name}" (unverified): certificate expired at`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			idc, idk := l.f.member(t, name, role)
			return l.leafUnder(t, idc, idk, l.f.now.Add(-2*time.Hour), l.f.now.Add(-time.Hour))
		}},
	{name: "no identity", check: CheckIdentity, msg: `peer: no identity certificate`,
		make: func(t *testing.T, l *link, name, role string) tls.Certificate {
			return newCert(t, l.f.env.issuer(t, mrGood, false), CertOptions{})
		}},
}

// Each refusal, both ways: a bad client refused by the server, and a bad
// server refused by the client. The refusing side's error and log line name
// the check; the refused side's connection fails.
func TestGRPCRefusals(t *testing.T) {
	for _, r := range refusals {
		t.Run(r.name+"/server refuses client", func(t *testing.T) {
			l := newLink(t)
			v := l.verifier
			if r.noSim {
				v = l.noSimVer
			}
			bad := r.make(t, l, "col-2", "collaborator")
			addr := serve(t, l.serverCfg(l.server, v))
			_, _, err := who(t, addr, l.clientCfg(bad, l.verifier))
			if err == nil {
				t.Fatal("bad client accepted")
			}
			msg := strings.NewReplacer("{name}", "col-2", "{role}", "collaborator").Replace(r.msg)
			// Both ends are teeml: the server's reason reaches the refused
			// client through the verdict exchange, not just an alert.
			// (A replayed certificate cannot finish the TLS handshake, which
			// needs the private key: that impostor gets only an alert.)
			quoted := strconv.Quote(msg)
			if r.check == CheckProofOfPossession {
				if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "remote error: tls") {
					t.Errorf("replaying client: %v", err)
				}
			} else if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), quoted[1:len(quoted)-1]) ||
				!strings.Contains(err.Error(), "the server refused this connection") || !strings.Contains(err.Error(), "("+string(CheckRefusedByPeer)+")") {
				t.Errorf("client error %q does not carry the server's reason %q", err, msg)
			}
			logged := waitLog(t, l.serverLog, "("+string(r.check)+")")
			if !strings.Contains(logged, "ratls: server refused connection: "+msg) || !strings.Contains(logged, "check="+string(r.check)) {
				t.Errorf("server log %q does not name %q", logged, msg)
			}
		})
		t.Run(r.name+"/client refuses server", func(t *testing.T) {
			l := newLink(t)
			v := l.verifier
			if r.noSim {
				v = l.noSimVer
			}
			bad := r.make(t, l, "agg-2", "aggregator")
			addr := serve(t, l.serverCfg(bad, l.verifier))
			_, _, err := who(t, addr, l.clientCfg(l.client, v))
			if err == nil {
				t.Fatal("bad server accepted")
			}
			msg := strings.NewReplacer("{name}", "agg-2", "{role}", "aggregator").Replace(r.msg)
			// gRPC quotes the handshake error once (connection error: desc = %q).
			quoted := strconv.Quote(msg)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), quoted[1:len(quoted)-1]) ||
				!strings.Contains(err.Error(), "("+string(r.check)+")") {
				t.Errorf("client error %q does not name %q (%s)", err, msg, r.check)
			}
			if logged := l.cliLog.String(); !strings.Contains(logged, "ratls: client refused connection: "+msg) {
				t.Errorf("client log %q does not name %q", logged, msg)
			}
			if r.check == CheckProofOfPossession {
				if logged := waitLog(t, l.serverLog, "remote error"); !strings.Contains(logged, "(handshake)") {
					t.Errorf("server log %q", logged)
				}
			} else if logged := waitLog(t, l.serverLog, "refused-by-peer"); !strings.Contains(logged, "the client refused this connection: "+msg) {
				t.Errorf("server log %q does not carry the client's reason %q", logged, msg)
			}
		})
	}
}

// waitLog waits for the server's log to contain s (the server logs from
// its own goroutine).
func waitLog(t testing.TB, l *logBuf, s string) string {
	t.Helper()
	testenv.WaitFor(5*time.Second, func() bool { return strings.Contains(l.String(), s) })
	return l.String()
}

func TestGRPCVerifyModes(t *testing.T) {
	t.Run("server only", func(t *testing.T) {
		l := newLink(t)
		addr := serve(t, TransportConfig{Certificates: StaticCertificate{&l.server}, Mode: VerifyServer, Logger: rawLogger(l.serverLog)})
		got, ai, err := who(t, addr, TransportConfig{Verifier: l.verifier, Mode: VerifyServer, Logger: rawLogger(l.cliLog)})
		if err != nil {
			t.Fatal(err)
		}
		if got != "unverified level=PrivacyAndIntegrity certs=0" || ai.Peer == nil || ai.Peer.Name() != "agg-1" {
			t.Fatalf("handler %q, client peer %+v", got, ai)
		}
		// The client still refuses a bad server.
		bad := refusals[0].make(t, l, "agg-2", "aggregator")
		addr = serve(t, TransportConfig{Certificates: StaticCertificate{&bad}, Mode: VerifyServer, Logger: quiet()})
		if _, _, err := who(t, addr, TransportConfig{Verifier: l.verifier, Mode: VerifyServer, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "(policy)") {
			t.Fatalf("bad server: %v", err)
		}
	})
	t.Run("client only", func(t *testing.T) {
		l := newLink(t)
		addr := serve(t, TransportConfig{Certificates: StaticCertificate{&l.server}, Verifier: l.verifier, Mode: VerifyClient, Logger: rawLogger(l.serverLog)})
		got, ai, err := who(t, addr, TransportConfig{Certificates: StaticCertificate{&l.client}, Mode: VerifyClient, Logger: rawLogger(l.cliLog)})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, "name=col-1 role=collaborator") || ai.Peer != nil {
			t.Fatalf("handler %q, client peer %+v", got, ai)
		}
		// The client does not verify the server in this mode.
		bad := refusals[0].make(t, l, "agg-2", "aggregator")
		addr = serve(t, TransportConfig{Certificates: StaticCertificate{&bad}, Verifier: l.verifier, Mode: VerifyClient, Logger: quiet()})
		if _, _, err := who(t, addr, TransportConfig{Certificates: StaticCertificate{&l.client}, Mode: VerifyClient, Logger: quiet()}); err != nil {
			t.Fatalf("client-only mode verified the server: %v", err)
		}
	})
	t.Run("config", func(t *testing.T) {
		l := newLink(t)
		certs := StaticCertificate{&l.server}
		for _, tc := range []struct {
			server bool
			cfg    TransportConfig
			want   string
		}{
			{true, TransportConfig{Verifier: l.verifier}, "server credentials: verify mode two-way needs Certificates"},
			{true, TransportConfig{Certificates: certs}, "server credentials: verify mode two-way needs a Verifier"},
			{true, TransportConfig{Certificates: certs, Mode: VerifyClient}, "needs a Verifier"},
			{false, TransportConfig{Verifier: l.verifier}, "client credentials: verify mode two-way needs Certificates"},
			{false, TransportConfig{Certificates: certs}, "client credentials: verify mode two-way needs a Verifier"},
			{false, TransportConfig{Mode: VerifyServer}, "client credentials: verify mode server needs a Verifier"},
			{false, TransportConfig{Mode: 9}, "unknown verify mode 9"},
		} {
			var err error
			if tc.server {
				_, err = NewServerCredentials(tc.cfg)
			} else {
				_, err = NewClientCredentials(tc.cfg)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want %q", err, tc.want)
			}
		}
		if _, err := NewServerCredentials(TransportConfig{Certificates: certs, Mode: VerifyServer}); err != nil {
			t.Error(err)
		}
		if _, err := NewClientCredentials(TransportConfig{Certificates: certs, Mode: VerifyClient}); err != nil {
			t.Error(err)
		}
	})
}

// A client presenting no certificate to a two-way server is refused.
func TestGRPCClientWithoutCertificate(t *testing.T) {
	l := newLink(t)
	addr := serve(t, l.serverCfg(l.server, l.verifier))
	_, _, err := who(t, addr, TransportConfig{Verifier: l.verifier, Mode: VerifyServer, Logger: quiet()})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("client without certificate: %v", err)
	}
	if logged := waitLog(t, l.serverLog, "refused"); !strings.Contains(logged, "client didn't provide a certificate (handshake)") {
		t.Fatalf("server log %q", logged)
	}
}

// Only TLS 1.3 is spoken.
func TestGRPCTLS12Refused(t *testing.T) {
	l := newLink(t)
	addr := serve(t, l.serverCfg(l.server, l.verifier))
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"}, Certificates: []tls.Certificate{l.client}})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake accepted")
	}
	if logged := waitLog(t, l.serverLog, "(handshake)"); !strings.Contains(logged, "unsupported versions") {
		t.Fatalf("server log %q", logged)
	}
}

// oneServerHandshake runs one ServerHandshake on a loopback listener and
// returns the client's raw connection to it and the server's result.
func oneServerHandshake(t *testing.T, ctx context.Context, srvCreds credentials.TransportCredentials) (net.Conn, <-chan error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	srvErr := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		_, _, err = srvCreds.ServerHandshake(c)
		srvErr <- err
	}()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw, srvErr
}

// The server's own handshake error (not only its log) names the check.
func TestServerHandshakeError(t *testing.T) {
	l := newLink(t)
	srvCreds, err := NewServerCredentials(TransportConfig{Certificates: StaticCertificate{&l.server}, Verifier: l.verifier, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	bad := refusals[6].make(t, l, "col-2", "collaborator") // key binding
	cliCreds, err := NewClientCredentials(TransportConfig{Certificates: StaticCertificate{&bad}, Verifier: l.verifier, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, srvErr := oneServerHandshake(t, ctx, srvCreds)
	_, _, cerr := cliCreds.ClientHandshake(ctx, raw.RemoteAddr().String(), raw)
	if cerr == nil || !strings.Contains(cerr.Error(), "the server refused this connection: peer \"col-2\": evidence binds key") ||
		CheckOf(cerr) != CheckRefusedByPeer {
		t.Errorf("client: %v", cerr)
	}
	err = <-srvErr
	wantErr(t, err, CheckBinding, `ratls: server handshake with 127.0.0.1:`, `peer "col-2": evidence binds key`)
	var e *Error
	if !errors.As(err, &e) || e.Peer != "col-2" {
		t.Fatalf("error %v", err)
	}
	// Credentials plumbing.
	if srvCreds.Info().SecurityProtocol != "ratls" || srvCreds.Clone() == nil || cliCreds.OverrideServerName("x") != nil {
		t.Error("Info/Clone/OverrideServerName")
	}
	if _, _, err := srvCreds.ClientHandshake(ctx, "x", raw); err == nil {
		t.Error("ClientHandshake on server credentials")
	}
}

// A peer that offers only "h2" (another RA-TLS implementation) gets no
// verdict exchange: the refusal is a TLS alert, as before, and the server
// still names the check.
func TestPlainH2PeerGetsAlertNotVerdict(t *testing.T) {
	l := newLink(t)
	srvCreds, err := NewServerCredentials(l.serverCfg(l.server, l.verifier))
	if err != nil {
		t.Fatal(err)
	}
	bad := refusals[6].make(t, l, "col-2", "collaborator") // key binding
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, srvErr := oneServerHandshake(t, ctx, srvCreds)
	conn := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{bad}})
	cerr := conn.HandshakeContext(ctx)
	if cerr == nil {
		if conn.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("negotiated %q with an h2-only client", conn.ConnectionState().NegotiatedProtocol)
		}
		_, cerr = conn.Read(make([]byte, 1))
	}
	if cerr == nil || !strings.Contains(cerr.Error(), "bad certificate") {
		t.Errorf("h2-only client: %v, want a bad-certificate alert", cerr)
	}
	if err := <-srvErr; CheckOf(err) != CheckBinding {
		t.Errorf("server: %v", err)
	}
}
