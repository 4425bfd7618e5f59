// Package party starts a teeml party: it loads what the party proves and
// trusts — its federation identity (certificate and key), the federation
// bundle and pinned root, its evidence issuer and verifier — and builds
// from them the RA-TLS credentials of every channel it opens or serves, the
// one simulation announcement, and the connection to its key broker.
//
// Every service (horizontal FL, vertical FL, the key broker, and every
// later service) starts its parties through this package; none reads
// identity or evidence configuration itself. A party has one of two
// shapes:
//
//   - PKI (Load): a federation member with an identity certificate of a
//     role, issued by the federation CA; peers are verified against the
//     federation bundle, and their role comes from their certificate.
//   - attestation only (LoadAttested): no certificate; the party presents
//     a self-signed RA-TLS certificate carrying its evidence, and peers are
//     verified by their evidence alone, for the role the caller names
//     (vertical FL's two parties).
//
// The flow is one-way: evidence (attest/...) → verification (attest/verifier)
// → policy (attest/policy) → channel (ratls) → party (this package) → the
// service's work. The simulation scheme used by demos and tests lives in
// party/partysim.
package party

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
	"github.com/teeml/teeml/sealed/kmskeys"
)

// Workspace layout: where a federation workspace keeps each member's files.
const (
	PKIDir     = "pki"
	RootFile   = "pki/root.pem"
	BundleFile = "pki/federation.bundle"
	ConfigDir  = "party"
)

// Files names the files a party is loaded from. Relative paths inside the
// party configuration (simulation keys, the key broker's policy) resolve
// against Dir.
type Files struct {
	// Dir is the base directory of the configuration's relative paths.
	Dir string
	// Cert and Key are the identity certificate and its key (PKI only).
	Cert, Key string
	// Root and Bundle are the pinned federation root and the federation
	// bundle (PKI only).
	Root, Bundle string
	// Config is the party configuration file; Inline, when set, is used
	// instead (a configuration embedded in another file).
	Config string
	Inline *Config
}

// WorkspaceFiles returns the files of member name in workspace ws:
//
//	pki/<name>.crt, pki/<name>-key.pem   identity certificate and key (0600)
//	pki/root.pem, pki/federation.bundle  pinned root and federation bundle
//	party/<name>.yaml                    party configuration
func WorkspaceFiles(ws, name string) Files {
	return Files{
		Dir:    ws,
		Cert:   filepath.Join(ws, PKIDir, name+".crt"),
		Key:    filepath.Join(ws, PKIDir, name+"-key.pem"),
		Root:   filepath.Join(ws, filepath.FromSlash(RootFile)),
		Bundle: filepath.Join(ws, filepath.FromSlash(BundleFile)),
		Config: ConfigFile(ws, name),
	}
}

// ConfigFile is the party configuration of member name in directory dir:
// dir/party/<name>.yaml.
func ConfigFile(dir, name string) string { return filepath.Join(dir, ConfigDir, name+".yaml") }

// Party is a loaded party: who it is, what it proves and what it trusts.
type Party struct {
	// Name is the member name (PKI) or the role (attestation only).
	Name string
	// Role is the certified role (PKI) or the role claimed (attestation only).
	Role string
	// Cert, Key and Federation are nil for an attestation-only party.
	// Federation is re-read while the party runs (WatchFederation).
	Cert       *x509.Certificate
	Key        *ecdsa.PrivateKey
	Federation *pki.LiveFederation
	Issuer     attest.Issuer
	Verifier   attest.Verifier
	Config     *Config
	// Dir is the base directory of Config's relative paths.
	Dir string
}

// Load loads federation member name from f. role, when not empty, is the
// role its identity certificate must carry (a pki role); empty accepts the
// certificate's one role.
func Load(f Files, name, role string, log *slog.Logger) (*Party, error) {
	if err := pki.CheckName(name); err != nil {
		return nil, err
	}
	for _, file := range []struct{ what, path string }{{"identity certificate", f.Cert}, {"identity key", f.Key},
		{"federation root", f.Root}, {"federation bundle", f.Bundle}} {
		if file.path == "" {
			return nil, fmt.Errorf("party %s: no %s file given", name, file.what)
		}
	}
	cert, err := pki.LoadCertificate(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("identity certificate: %w", err)
	}
	if cert.Subject.CommonName != name {
		return nil, fmt.Errorf("identity certificate %s names %q, not %q", f.Cert, cert.Subject.CommonName, name)
	}
	ous := cert.Subject.OrganizationalUnit
	if len(ous) != 1 || (role != "" && ous[0] != role) {
		want := role
		if want == "" {
			want = "exactly one"
		}
		return nil, fmt.Errorf("identity certificate %s: role %v, want %s", f.Cert, ous, want)
	}
	key, err := pki.LoadKey(f.Key)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	fed, err := pki.LoadLiveFederation(f.Bundle, f.Root)
	if err != nil {
		return nil, err
	}
	p, err := loadEvidence(f, log)
	if err != nil {
		return nil, err
	}
	p.Name, p.Role, p.Cert, p.Key, p.Federation = name, ous[0], cert, key, fed
	return p, nil
}

// LoadAttested loads an attestation-only party of role: only its
// configuration (f.Config or f.Inline) is read.
func LoadAttested(f Files, role string, log *slog.Logger) (*Party, error) {
	p, err := loadEvidence(f, log)
	if err != nil {
		return nil, err
	}
	p.Name, p.Role = role, role
	return p, nil
}

func loadEvidence(f Files, log *slog.Logger) (*Party, error) {
	if log == nil {
		log = slog.Default()
	}
	c := f.Inline
	if c == nil {
		if f.Config == "" {
			return nil, fmt.Errorf("%w: no party configuration file given", ErrConfig)
		}
		var err error
		if c, err = LoadConfig(f.Config); err != nil {
			return nil, err
		}
	} else if err := c.Normalize(); err != nil {
		return nil, fmt.Errorf("%w: platform %w", ErrConfig, err)
	}
	iss, err := c.Issuer(f.Dir, log)
	if err != nil {
		return nil, err
	}
	ev, err := c.Verifier(f.Dir)
	if err != nil {
		return nil, err
	}
	return &Party{Issuer: iss, Verifier: ev, Config: c, Dir: f.Dir}, nil
}

// PKI reports whether the party has a federation identity.
func (p *Party) PKI() bool { return p.Cert != nil }

// Simulated reports whether the party produces or accepts simulated
// evidence.
func (p *Party) Simulated() bool { return p.Config.Simulated() }

// Peer says whom a channel is with.
type Peer struct {
	// Role is the role peers are held to. With a federation identity the
	// peer's certified role selects its entry of Policy and Role only
	// labels errors; attestation only, peers are evaluated for Role.
	Role string
	// Policy is the attestation policy peers must satisfy.
	Policy *policy.Policy
	// Name names the peer in messages (attestation only; default Role).
	Name string
}

// ErrNoPolicy is returned for a channel whose peer role has no policy.
var ErrNoPolicy = errors.New("no attestation policy")

// Credentials returns RA-TLS transport credentials for a server (server
// true) or client side of a channel with peer, and a function that stops
// certificate renewal. With a federation identity, the party's RA-TLS
// certificates are issued under its identity key and peers are verified
// against the federation; attestation only, the certificate is
// self-signed and peers are verified by evidence and policy alone.
func (p *Party) Credentials(ctx context.Context, peer Peer, server bool, log *slog.Logger) (credentials.TransportCredentials, func(), error) {
	if log == nil {
		log = slog.Default()
	}
	if peer.Policy == nil {
		return nil, nil, fmt.Errorf("%w for role %s", ErrNoPolicy, peer.Role)
	}
	so := ratls.SourceOptions{Logger: log}
	vc := ratls.Config{Evidence: p.Verifier, Policy: peer.Policy, Logger: log}
	if p.PKI() {
		so.Cert = ratls.CertOptions{Parent: p.Cert, ParentKey: p.Key}
		vc.Identity = p.Federation
	} else {
		vc.Role, vc.PeerName = peer.Role, peer.Name
		if vc.PeerName == "" {
			vc.PeerName = peer.Role
		}
	}
	src, err := ratls.NewCertSource(ctx, p.Issuer, so)
	if err != nil {
		return nil, nil, fmt.Errorf("RA-TLS certificate: %w", err)
	}
	v, err := ratls.NewVerifier(vc)
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	tc := ratls.TransportConfig{Certificates: src, Verifier: v, Logger: log}
	var c credentials.TransportCredentials
	if server {
		c, err = ratls.NewServerCredentials(tc)
	} else {
		c, err = ratls.NewClientCredentials(tc)
	}
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return c, src.Close, nil
}

// WatchFederation re-reads the federation bundle (CRL, members) every
// Config.FederationReload (default pki.DefaultReloadInterval) until ctx
// ends or stop is called, so that a revocation takes effect without a
// restart: new handshakes verify against the new bundle, and servers built
// with ServerOptions refuse further calls on connections of a revoked
// member. A bundle that does not verify (signature, pinned root, older CRL)
// is refused with a one-line error and the old one stays in force. It is a
// no-op for an attestation-only party. Every service calls it once at
// start-up.
func (p *Party) WatchFederation(ctx context.Context, log *slog.Logger) (stop func()) {
	if !p.PKI() {
		return func() {}
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Federation.Watch(ctx, p.ReloadInterval(), log)
	}()
	log.Info("watching the federation bundle", "bundle", p.Federation.Path(), "interval", p.ReloadInterval())
	return func() { cancel(); <-done }
}

// ReloadInterval is how often WatchFederation re-reads the bundle:
// Config.FederationReload, at least MinFederationReload (a configuration
// embedded in another file is not checked by ParseConfig), default
// pki.DefaultReloadInterval.
func (p *Party) ReloadInterval() time.Duration {
	if d := p.Config.FederationReload; d > 0 {
		return max(d, MinFederationReload)
	}
	return pki.DefaultReloadInterval
}

// ServerOptions are the gRPC server options every server of the party
// uses besides its credentials: with a federation identity, each call's
// peer identity is rechecked against the bundle in force
// (ratls.RecheckServerOptions), so a member revoked while connected is
// refused at its next call.
func (p *Party) ServerOptions(log *slog.Logger) []grpc.ServerOption {
	if !p.PKI() {
		return nil
	}
	return ratls.RecheckServerOptions(p.Federation, nil, log)
}

// Announce prints (to out) and logs (WARN) the simulation banner when the
// party is simulated or when also names something else simulated (a
// plain-file root key, a local data key file). It reports whether it did.
// Every service calls it once at start-up, before any work.
func (p *Party) Announce(out io.Writer, log *slog.Logger, also ...string) bool {
	return Announce(out, log, p.Config, also...)
}

// Announce is Party.Announce for a configuration that is not (yet) a
// loaded party; c may be nil.
func Announce(out io.Writer, log *slog.Logger, c *Config, also ...string) bool {
	simulated := c != nil && c.Simulated()
	if !simulated && len(also) == 0 {
		return false
	}
	if log == nil {
		log = slog.Default()
	}
	detail := ""
	attrs := []any{}
	if c != nil {
		detail = fmt.Sprintf("platform %s, trusted_sim_keys %q", c.Platform, c.TrustedSimKeys)
		attrs = append(attrs, "platform", c.Platform, "trusted_sim_keys", c.TrustedSimKeys)
	}
	for _, a := range also {
		if detail != "" {
			detail += ", "
		}
		detail += a
	}
	if len(also) > 0 {
		attrs = append(attrs, "also", also)
	}
	log.Warn(sim.Banner, attrs...)
	if out != nil {
		fmt.Fprintf(out, "*** %s (%s) ***\n", sim.Banner, detail)
	}
	return true
}

// SelfClaims issues evidence over a fixed nonce and verifies it with the
// party's own verifier: what a peer would see of this party (for model
// cards and status pages). A platform whose collateral is unreachable
// returns the error instead; the caller decides whether that matters.
func (p *Party) SelfClaims(ctx context.Context, label string) (*attest.Claims, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rd := make([]byte, 64)
	copy(rd, label)
	e, err := p.Issuer.Issue(ctx, rd)
	if err != nil {
		return nil, err
	}
	return p.Verifier.Verify(ctx, e, time.Now())
}

// DialBroker connects to the key broker at addr over mutual RA-TLS: the
// broker must present a federation identity with role kms whose evidence
// satisfies pol's role kms. The party needs a federation identity. The
// returned function closes the connection and stops certificate renewal.
func (p *Party) DialBroker(ctx context.Context, addr string, pol *policy.Policy, log *slog.Logger) (*grpc.ClientConn, func(), error) {
	if !p.PKI() {
		return nil, nil, fmt.Errorf("key broker %s: party %s has no federation identity", addr, p.Name)
	}
	if addr == "" {
		return nil, nil, fmt.Errorf("key broker: no address")
	}
	if pol == nil || pol.Roles["kms"] == nil {
		return nil, nil, fmt.Errorf("key broker %s: the policy has no role kms (what the broker must run)", addr)
	}
	creds, closeCreds, err := p.Credentials(ctx, Peer{Role: "kms", Policy: pol}, false, log)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		closeCreds()
		return nil, nil, fmt.Errorf("key broker %s: %w", addr, err)
	}
	return conn, func() { conn.Close(); closeCreds() }, nil
}

// BrokerPolicy loads the policy of the configuration's kms section.
func (p *Party) BrokerPolicy() (*policy.Policy, error) {
	k := p.Config.KMS
	if k == nil {
		return nil, fmt.Errorf("%w: no kms section", ErrConfig)
	}
	if k.Broker == "" || k.Policy == "" {
		return nil, fmt.Errorf("%w: kms: broker and policy are required", ErrConfig)
	}
	pol, err := policy.Load(resolve(p.Dir, k.Policy))
	if err != nil {
		return nil, fmt.Errorf("%w: kms.policy: %w", ErrConfig, err)
	}
	if _, ok := pol.Roles["kms"]; !ok {
		return nil, fmt.Errorf("%w: kms.policy %s has no role kms (what the broker must run)", ErrConfig, k.Policy)
	}
	return pol, nil
}

// KeySource connects to the key broker of the configuration's kms section
// and returns the data key source it serves, and a close function. ok is
// false, with no error, when the configuration has no kms section.
func (p *Party) KeySource(ctx context.Context, log *slog.Logger) (ks *kmskeys.Source, closeFn func(), ok bool, err error) {
	k := p.Config.KMS
	if k == nil {
		return nil, func() {}, false, nil
	}
	pol, err := p.BrokerPolicy()
	if err != nil {
		return nil, nil, true, err
	}
	conn, closeConn, err := p.DialBroker(ctx, k.Broker, pol, log)
	if err != nil {
		return nil, nil, true, err
	}
	if log == nil {
		log = slog.Default()
	}
	log.Info("data keys from the key broker", "broker", k.Broker, "policy", k.Policy)
	ks = kmskeys.New(kmsv1.NewKeyBrokerClient(conn), k.Broker)
	if k.AttestationResult != "" {
		path := resolve(p.Dir, k.AttestationResult)
		log.Info("sending an attestation result with every data key request", "file", path)
		ks = ks.WithAttestationResult(func() (string, error) { return ReadAttestationResult(path) })
	}
	return ks, closeConn, true, nil
}

// maxAttestationResult bounds an attestation result file (attest/ear's
// token limit).
const maxAttestationResult = 1 << 20

// ReadAttestationResult reads an EAR token file: one JWT (three
// dot-separated parts), surrounding whitespace ignored.
func ReadAttestationResult(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("attestation result: %w", err)
	}
	if len(b) > maxAttestationResult {
		return "", fmt.Errorf("attestation result %s: %d bytes, at most %d", path, len(b), maxAttestationResult)
	}
	tok := strings.TrimSpace(string(b))
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("attestation result %s: not a JWT (three dot-separated parts)", path)
	}
	return tok, nil
}
