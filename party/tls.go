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

// ServerTLS is the RA-TLS side of a server whose clients are not attested
// (they authenticate otherwise, e.g. by API token): a TLS configuration for
// HTTP and gRPC credentials, both presenting the party's RA-TLS
// certificate (renewed in the background; the returned function stops
// that) and requesting no client certificate. Clients verify the server's
// evidence (ClientTLS, or the pin teeml attest verify-server prints).
func (p *Party) ServerTLS(ctx context.Context, log *slog.Logger) (*tls.Config, credentials.TransportCredentials, func(), error) {
	if log == nil {
		log = slog.Default()
	}
	so := ratls.SourceOptions{Logger: log}
	if p.PKI() {
		so.Cert = ratls.CertOptions{Parent: p.Cert, ParentKey: p.Key}
	}
	src, err := ratls.NewCertSource(ctx, p.Issuer, so)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("RA-TLS certificate: %w", err)
	}
	creds, err := ratls.NewServerCredentials(ratls.TransportConfig{Certificates: src, Mode: ratls.VerifyServer, Logger: log})
	if err != nil {
		src.Close()
		return nil, nil, nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: src.GetCertificate, NextProtos: []string{"http/1.1"}}
	return tc, creds, src.Close, nil
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
