package ratls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// VerifyMode says which side of a connection is attested, as CCZoo's gRPC
// RA-TLS verify_option does. Both ends of a connection must use the same
// mode.
type VerifyMode int

const (
	// VerifyTwoWay: each side verifies the other (mutual RA-TLS; the
	// default, CCZoo GRPC_RA_TLS_TWO_WAY_VERIFICATION).
	VerifyTwoWay VerifyMode = iota
	// VerifyServer: only the server is attested: the client verifies it and
	// presents no certificate (CCZoo GRPC_RA_TLS_SERVER_VERIFICATION).
	VerifyServer
	// VerifyClient: only the client is attested: the server verifies it and
	// the client does not verify the server (CCZoo
	// GRPC_RA_TLS_CLIENT_VERIFICATION).
	VerifyClient
	// VerifyClientIfPresented (server side only): the server presents its
	// certificate and asks for the client's; a client that presents one is
	// verified like VerifyTwoWay (and refused at the handshake when it
	// fails), a client that presents none is let through unverified (its
	// AuthInfo has no Peer) to authenticate otherwise, e.g. by API token.
	// Clients use VerifyTwoWay (with an identity) or VerifyServer.
	VerifyClientIfPresented
)

func (m VerifyMode) String() string {
	switch m {
	case VerifyTwoWay:
		return "two-way"
	case VerifyServer:
		return "server"
	case VerifyClient:
		return "client"
	case VerifyClientIfPresented:
		return "client-if-presented"
	}
	return fmt.Sprintf("VerifyMode(%d)", int(m))
}

// DefaultHandshakeTimeout bounds a server-side handshake, including the
// peer's verification.
const DefaultHandshakeTimeout = 30 * time.Second

// TransportConfig configures RA-TLS gRPC credentials.
type TransportConfig struct {
	// Certificates supplies this side's RA-TLS certificate: always needed by
	// a server, by a client unless Mode is VerifyServer.
	Certificates Certificates
	// Verifier verifies the other side: needed by a server unless Mode is
	// VerifyServer, by a client unless Mode is VerifyClient.
	Verifier *Verifier
	Mode     VerifyMode
	// HandshakeTimeout bounds server handshakes (default
	// DefaultHandshakeTimeout); client handshakes use the dial context.
	HandshakeTimeout time.Duration
	// Now is the verification clock (default time.Now).
	Now func() time.Time
	// Logger receives one line per refused or failed handshake (default
	// slog.Default()).
	Logger *slog.Logger
}

// AuthInfo is the credentials.AuthInfo of an RA-TLS connection.
type AuthInfo struct {
	credentials.CommonAuthInfo
	// Peer is the verified peer; nil when this side does not verify the
	// other (VerifyServer on the server, VerifyClient on the client).
	Peer  *Peer
	State tls.ConnectionState
}

// AuthType implements credentials.AuthInfo.
func (*AuthInfo) AuthType() string { return "ratls" }

// PeerFromContext returns the verified RA-TLS peer of the connection a gRPC
// call arrived on, in a server handler or interceptor. (A client gets the
// server's Peer from the *AuthInfo of the grpc.Peer call option.)
func PeerFromContext(ctx context.Context) (*Peer, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p == nil {
		return nil, false
	}
	ai, ok := p.AuthInfo.(*AuthInfo)
	if !ok || ai.Peer == nil {
		return nil, false
	}
	return ai.Peer, true
}

type side int

const (
	serverSide side = iota
	clientSide
)

func (s side) String() string {
	if s == serverSide {
		return "server"
	}
	return "client"
}

type transport struct {
	cfg        TransportConfig
	side       side
	verify     bool
	present    bool
	optional   bool // the client's certificate may be absent (VerifyClientIfPresented)
	base       *tls.Config
	serverName string
}

// NewServerCredentials returns gRPC server credentials doing RA-TLS over TLS
// 1.3 only.
func NewServerCredentials(cfg TransportConfig) (credentials.TransportCredentials, error) {
	return newTransport(cfg, serverSide)
}

// NewClientCredentials returns gRPC client credentials doing RA-TLS over TLS
// 1.3 only.
func NewClientCredentials(cfg TransportConfig) (credentials.TransportCredentials, error) {
	return newTransport(cfg, clientSide)
}

func newTransport(cfg TransportConfig, s side) (*transport, error) {
	if cfg.Mode < VerifyTwoWay || cfg.Mode > VerifyClientIfPresented {
		return nil, fmt.Errorf("ratls: %s credentials: unknown verify mode %d", s, int(cfg.Mode))
	}
	if cfg.Mode == VerifyClientIfPresented && s != serverSide {
		return nil, fmt.Errorf("ratls: client credentials: verify mode %s is for servers (clients use two-way or server)", cfg.Mode)
	}
	t := &transport{cfg: cfg, side: s}
	if s == serverSide {
		t.verify, t.present = cfg.Mode != VerifyServer, true
		t.optional = cfg.Mode == VerifyClientIfPresented
	} else {
		t.verify, t.present = cfg.Mode != VerifyClient, cfg.Mode != VerifyServer
	}
	if t.verify && cfg.Verifier == nil {
		return nil, fmt.Errorf("ratls: %s credentials: verify mode %s needs a Verifier", s, cfg.Mode)
	}
	if t.present && cfg.Certificates == nil {
		return nil, fmt.Errorf("ratls: %s credentials: verify mode %s needs Certificates", s, cfg.Mode)
	}
	if t.cfg.HandshakeTimeout <= 0 {
		t.cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if t.cfg.Now == nil {
		t.cfg.Now = time.Now
	}
	if t.cfg.Logger == nil {
		t.cfg.Logger = slog.Default()
	}
	// Certificates are verified by the Verifier, not by crypto/tls's X.509
	// path validation (RA-TLS leaves are self-signed or signed by an
	// identity key); crypto/tls still checks the peer's CertificateVerify,
	// i.e. possession of the leaf's private key. Resumption is off: every
	// connection presents and verifies a certificate.
	b := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		NextProtos:             []string{alpnVerdict, alpnH2},
		SessionTicketsDisabled: true,
		InsecureSkipVerify:     true,
	}
	if s == serverSide {
		b.GetCertificate = cfg.Certificates.GetCertificate
		switch {
		case t.optional:
			b.ClientAuth = tls.RequestClientCert
		case t.verify:
			b.ClientAuth = tls.RequireAnyClientCert
		}
	} else if t.present {
		b.GetClientCertificate = cfg.Certificates.GetClientCertificate
	}
	t.base = b
	return t, nil
}

// handshakeConfig clones the base configuration for one handshake, with a
// VerifyConnection that verifies the peer within ctx and stores it.
// With the verdict protocol negotiated, a refusal is kept in *refusal and
// sent to the peer after the handshake (see verdict.go).
func (t *transport) handshakeConfig(ctx context.Context, out **Peer, refusal *error) *tls.Config {
	c := t.base.Clone()
	if !t.verify {
		return c
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if t.optional && len(cs.PeerCertificates) == 0 {
			return nil // no certificate: unverified, authenticated otherwise
		}
		p, err := t.cfg.Verifier.VerifyPeer(ctx, cs.PeerCertificates, t.cfg.Now())
		if err != nil {
			if cs.NegotiatedProtocol == alpnVerdict {
				*refusal = err
				return nil
			}
			return err
		}
		*out = p
		return nil
	}
	return c
}

// handshakeError turns a failed handshake into a one-line error naming the
// check, and logs it.
func (t *transport) handshakeError(err error, remote string, verified *Peer) error {
	var e *Error
	if !errors.As(err, &e) {
		msg := err.Error()
		check := CheckHandshake
		switch {
		case strings.Contains(msg, "invalid signature by the"):
			// crypto/tls's CertificateVerify check: the certificate was
			// presented by someone without its private key.
			check = CheckProofOfPossession
		case strings.Contains(msg, "remote error: tls: bad certificate"):
			msg += " (the peer refused our certificate)"
		}
		e = &Error{Check: check, Msg: msg, Err: err}
		if verified != nil {
			e.Claimed = verified.Name()
		}
	}
	t.cfg.Logger.Warn("ratls: "+t.side.String()+" refused connection: "+e.Error(),
		"side", t.side.String(), "remote", remote, "check", string(e.Check))
	return fmt.Errorf("ratls: %s handshake with %s: %w", t.side, remote, e)
}

func (t *transport) finish(conn *tls.Conn, remote string, verified *Peer) (net.Conn, credentials.AuthInfo, error) {
	st := conn.ConnectionState()
	if st.Version != tls.VersionTLS13 || (st.NegotiatedProtocol != alpnH2 && st.NegotiatedProtocol != alpnVerdict) {
		conn.Close()
		err := &Error{Check: CheckHandshake, Msg: fmt.Sprintf("negotiated TLS version %#x protocol %q, want TLS 1.3 with h2", st.Version, st.NegotiatedProtocol)}
		return nil, nil, t.handshakeError(err, remote, nil)
	}
	if t.verify && verified == nil && !(t.optional && len(st.PeerCertificates) == 0) {
		conn.Close()
		err := &Error{Check: CheckChain, Msg: "handshake completed without peer verification"}
		return nil, nil, t.handshakeError(err, remote, nil)
	}
	return conn, &AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		Peer:           verified,
		State:          st,
	}, nil
}

// verdicts runs the verdict exchange when the peer negotiated it; otherwise
// a refusal has already failed the handshake.
func (t *transport) verdicts(ctx context.Context, conn *tls.Conn, refusal error, verified *Peer) error {
	if conn.ConnectionState().NegotiatedProtocol != alpnVerdict {
		return refusal
	}
	other := "server"
	if t.side == serverSide {
		other = "client"
	}
	err := exchangeVerdicts(ctx, conn, refusal, other)
	var e *Error
	if refusal == nil && verified != nil && errors.As(err, &e) && e.Peer == "" {
		e.Peer = verified.Name() // we verified who is refusing us
	}
	return err
}

// ClientHandshake implements credentials.TransportCredentials.
func (t *transport) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if t.side != clientSide {
		return nil, nil, errors.New("ratls: ClientHandshake on server credentials")
	}
	remote := authority
	var verified *Peer
	var refusal error
	cfg := t.handshakeConfig(ctx, &verified, &refusal)
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority
	}
	if t.serverName != "" {
		host = t.serverName
	}
	cfg.ServerName = host
	conn := tls.Client(rawConn, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, t.handshakeError(err, remote, verified)
	}
	if err := t.verdicts(ctx, conn, refusal, verified); err != nil {
		conn.Close()
		return nil, nil, t.handshakeError(err, remote, verified)
	}
	return t.finish(conn, remote, verified)
}

// ServerHandshake implements credentials.TransportCredentials.
func (t *transport) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if t.side != serverSide {
		return nil, nil, errors.New("ratls: ServerHandshake on client credentials")
	}
	remote := rawConn.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.HandshakeTimeout)
	defer cancel()
	var verified *Peer
	var refusal error
	conn := tls.Server(rawConn, t.handshakeConfig(ctx, &verified, &refusal))
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, t.handshakeError(err, remote, verified)
	}
	if err := t.verdicts(ctx, conn, refusal, verified); err != nil {
		conn.Close()
		return nil, nil, t.handshakeError(err, remote, verified)
	}
	return t.finish(conn, remote, verified)
}

// Info implements credentials.TransportCredentials.
func (t *transport) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "ratls", SecurityVersion: "1.3", ServerName: t.serverName}
}

// Clone implements credentials.TransportCredentials.
func (t *transport) Clone() credentials.TransportCredentials {
	c := *t
	c.base = t.base.Clone()
	return &c
}

// OverrideServerName implements credentials.TransportCredentials (the TLS
// server name is informational: RA-TLS does not verify host names).
func (t *transport) OverrideServerName(name string) error {
	t.serverName = name
	return nil
}
