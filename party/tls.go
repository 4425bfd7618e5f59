package party

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/ratls"
)

// ServerTLSOptions configure ServerTLS.
type ServerTLSOptions struct {
	// Clients, when set, lets clients authenticate by federation identity
	// (the party needs one): clients are asked for a certificate, and one
	// that is shown must be a member's RA-TLS certificate whose evidence
	// satisfies Clients.Policy for the member's certified role, or the
	// handshake fails; a client showing none is served unverified and
	// authenticates otherwise (an API token). Nil: no client certificate
	// is asked for.
	Clients *Peer
}

// ServerChannel is the RA-TLS side of a server whose clients are not all
// attested: HTTP and gRPC, both presenting the party's RA-TLS certificate
// (renewed in the background until Close).
type ServerChannel struct {
	// HTTP gives the http.Server its TLSConfig and ConnContext; handlers
	// read a verified client with ratls.HTTPPeer.
	HTTP *ratls.HTTPServer
	// GRPC are the gRPC server credentials; handlers read a verified client
	// with ratls.PeerFromContext.
	GRPC credentials.TransportCredentials
	// Close stops certificate renewal.
	Close func()
}

// ServerTLS is the RA-TLS side of a server whose clients authenticate by
// API token, or (o.Clients) by federation identity. Clients verify the
// server's evidence (ClientTLS, or the pin teeml attest verify-server
// prints).
func (p *Party) ServerTLS(ctx context.Context, o ServerTLSOptions, log *slog.Logger) (*ServerChannel, error) {
	if log == nil {
		log = slog.Default()
	}
	tc := ratls.TransportConfig{Mode: ratls.VerifyServer, Logger: log}
	if o.Clients != nil {
		if !p.PKI() {
			return nil, fmt.Errorf("client certificates for %s: the server has no federation identity to verify them against", p.Name)
		}
		if o.Clients.Policy == nil {
			return nil, fmt.Errorf("%w for the clients (role %s)", ErrNoPolicy, o.Clients.Role)
		}
		v, err := ratls.NewVerifier(ratls.Config{Evidence: p.Verifier, Policy: o.Clients.Policy, Identity: p.Federation, Logger: log})
		if err != nil {
			return nil, err
		}
		tc.Mode, tc.Verifier = ratls.VerifyClientIfPresented, v
	}
	src, err := p.certSource(ctx, log)
	if err != nil {
		return nil, err
	}
	tc.Certificates = src
	creds, err := ratls.NewServerCredentials(tc)
	if err != nil {
		src.Close()
		return nil, err
	}
	hs, err := ratls.NewHTTPServer(tc)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &ServerChannel{HTTP: hs, GRPC: creds, Close: src.Close}, nil
}

func (p *Party) certSource(ctx context.Context, log *slog.Logger) (*ratls.CertSource, error) {
	so := ratls.SourceOptions{Logger: log}
	if p.PKI() {
		so.Cert = ratls.CertOptions{Parent: p.Cert, ParentKey: p.Key}
	}
	src, err := ratls.NewCertSource(ctx, p.Issuer, so)
	if err != nil {
		return nil, fmt.Errorf("RA-TLS certificate: %w", err)
	}
	return src, nil
}

// ServerCertificate is the party's RA-TLS server certificate alone, for a
// server that checks its clients itself (the web dashboard: browsers
// present plain federation identity certificates, checked per request):
// a tls.Config GetCertificate, renewed in the background until stop.
func (p *Party) ServerCertificate(ctx context.Context, log *slog.Logger) (get func(*tls.ClientHelloInfo) (*tls.Certificate, error), stop func(), err error) {
	if log == nil {
		log = slog.Default()
	}
	src, err := p.certSource(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	return src.GetCertificate, src.Close, nil
}

// RecheckClient tells whether a client verified at its handshake is still a
// member in good standing under the federation bundle in force now (a
// revocation while it stays connected); nil for a client without a
// federation identity or a party without one.
func (p *Party) RecheckClient(peer *ratls.Peer) error {
	if !p.PKI() || peer == nil || peer.Identity == nil {
		return nil
	}
	return p.Federation.RecheckIdentity(peer.Identity, time.Now())
}

// ClientTLS verifies a server by its RA-TLS evidence against peer's policy
// (attestation only: the client needs no federation identity): a TLS
// configuration for HTTP and gRPC credentials. The connection fails before
// any request is sent when the evidence does not satisfy the policy.
func (p *Party) ClientTLS(peer Peer, log *slog.Logger) (*tls.Config, credentials.TransportCredentials, error) {
	if log == nil {
		log = slog.Default()
	}
	if peer.Policy == nil {
		return nil, nil, fmt.Errorf("%w for role %s", ErrNoPolicy, peer.Role)
	}
	name := peer.Name
	if name == "" {
		name = peer.Role
	}
	v, err := ratls.NewVerifier(ratls.Config{Evidence: p.Verifier, Policy: peer.Policy, Role: peer.Role, PeerName: name, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	creds, err := ratls.NewClientCredentials(ratls.TransportConfig{Verifier: v, Mode: ratls.VerifyServer, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The certificate is checked by the RA-TLS verifier below, not by
		// X.509 path validation (an RA-TLS leaf is self-signed or signed
		// by an identity key); crypto/tls still checks possession of its key.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := v.VerifyPeer(ctx, cs.PeerCertificates, time.Now())
			return err
		},
	}
	return tc, creds, nil
}

// ClientTLSWithIdentity is ClientTLS for a party with a federation
// identity that also presents it: its RA-TLS certificate, issued under the
// identity key (renewed in the background until the returned function is
// called), goes to servers that ask for one (ServerTLSOptions.Clients), so
// that they know the client by its member name. The server is verified as
// by ClientTLS.
func (p *Party) ClientTLSWithIdentity(ctx context.Context, peer Peer, log *slog.Logger) (*tls.Config, func(), error) {
	if !p.PKI() {
		return nil, nil, fmt.Errorf("client %s has no federation identity to present", p.Name)
	}
	if log == nil {
		log = slog.Default()
	}
	tc, _, err := p.ClientTLS(peer, log)
	if err != nil {
		return nil, nil, err
	}
	src, err := ratls.NewCertSource(ctx, p.Issuer, ratls.SourceOptions{Logger: log, Cert: ratls.CertOptions{Parent: p.Cert, ParentKey: p.Key}})
	if err != nil {
		return nil, nil, fmt.Errorf("RA-TLS certificate: %w", err)
	}
	tc.GetClientCertificate = src.GetClientCertificate
	return tc, src.Close, nil
}

// VerifyServer connects to addr (host:port), verifies the RA-TLS
// certificate it presents against peer's policy, and returns the verified
// peer and the certificate's public-key pin in curl's form
// (sha256//<base64 of the SHA-256 of its SubjectPublicKeyInfo>), for
// clients that cannot do RA-TLS themselves.
func (p *Party) VerifyServer(ctx context.Context, addr string, peer Peer, log *slog.Logger) (*ratls.Peer, string, error) {
	if log == nil {
		log = slog.Default()
	}
	if peer.Policy == nil {
		return nil, "", fmt.Errorf("%w for role %s", ErrNoPolicy, peer.Role)
	}
	name := peer.Name
	if name == "" {
		name = addr
	}
	v, err := ratls.NewVerifier(ratls.Config{Evidence: p.Verifier, Policy: peer.Policy, Role: peer.Role, PeerName: name, Logger: log})
	if err != nil {
		return nil, "", err
	}
	d := tls.Dialer{Config: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("connect %s: %w", addr, err)
	}
	defer c.Close()
	chain := c.(*tls.Conn).ConnectionState().PeerCertificates
	vp, err := v.VerifyPeer(ctx, chain, time.Now())
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(chain[0].RawSubjectPublicKeyInfo)
	return vp, "sha256//" + base64.StdEncoding.EncodeToString(sum[:]), nil
}

// ConfigFiles are the files of an attestation-only party given by its
// configuration file alone. Relative paths in it are resolved against the
// workspace: the parent of a party/ directory holding the file (the
// WorkspaceFiles layout), else the file's own directory.
func ConfigFiles(path string) Files {
	dir := filepath.Dir(path)
	if filepath.Base(dir) == ConfigDir {
		dir = filepath.Dir(dir)
	}
	return Files{Dir: dir, Config: path}
}
