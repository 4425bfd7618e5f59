package kms

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"gopkg.in/yaml.v3"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest/ear"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/promserve"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
)

// Config is a broker's (`teeml kms serve --config`) or a client's (`teeml
// kms key …`) configuration file. Relative paths are relative to the file.
//
//	name: kms                          # this party's federation member name
//	replica: a                         # server, optional: names this replica in audit entries
//	listen: 127.0.0.1:7443             # server: address to serve on
//	metrics_listen: 127.0.0.1:9464     # server, optional: Prometheus /metrics
//	broker: 127.0.0.1:7443             # client: the broker's address
//	identity: {cert: pki/kms.crt, key: pki/kms-key.pem}
//	federation: {root: pki/root.pem, bundle: pki/federation.bundle}
//	policy: policies/clients.yaml      # attest/policy: server — which evidence each
//	                                   # caller role may connect with; client — role kms:
//	                                   # what the broker must run
//	platform: {platform: sim, sim: {key: …, mr_enclave: …}, trusted_sim_keys: …}
//	                                   # evidence platform (party.Config)
//	store: {driver: sqlite, path: kms.db}   # or {driver: postgres, dsn: …, schema: …}
//	root_key: file:root.key            # server: see OpenRootKey (file: is simulation)
//	admins: [admin]                    # server: members allowed admin operations
//	audit_anchor: audit.anchor         # server, optional: the audit anchor file, outside
//	                                   # the store (default audit.anchor, or
//	                                   # audit-REPLICA.anchor for a named replica, in the
//	                                   # SQLite store's directory or next to this file)
//	ear_verifiers: verifiers.pem       # server, optional: trusted EAR verifier keys
//	                                   # (PEM PUBLIC KEY, P-256; see AcceptEAR)
type Config struct {
	Name          string `yaml:"name,omitempty"`
	Replica       string `yaml:"replica,omitempty"`
	Listen        string `yaml:"listen,omitempty"`
	MetricsListen string `yaml:"metrics_listen,omitempty"`
	Broker        string `yaml:"broker,omitempty"`
	Identity      struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"identity"`
	Federation struct {
		Root   string `yaml:"root"`
		Bundle string `yaml:"bundle"`
	} `yaml:"federation"`
	Policy   string       `yaml:"policy,omitempty"`
	Platform party.Config `yaml:"platform"`
	Store    store.Config `yaml:"store"`
	RootKey  string       `yaml:"root_key,omitempty"`
	Admins   []string     `yaml:"admins,omitempty"`
	// AuditAnchor is the broker's audit anchor file (see AnchorPath).
	AuditAnchor string `yaml:"audit_anchor,omitempty"`
	// EARVerifiers is a PEM file of the public keys (PUBLIC KEY, ECDSA
	// P-256) of the verifiers whose attestation results the broker accepts
	// for keys whose release policy says accept_ear (server, optional).
	EARVerifiers string `yaml:"ear_verifiers,omitempty"`
	dir          string
}

// LoadConfig reads a configuration file strictly (unknown keys refused).
func LoadConfig(path string) (*Config, error) {
	b, err := yamlx.ReadFile(path, "kms config", 0)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("kms config %s: %s", path, oneLine(err.Error()))
	}
	if err := pki.CheckName(c.Name); err != nil {
		return nil, fmt.Errorf("kms config %s: name: %w", path, err)
	}
	if c.Platform.KMS != nil {
		return nil, fmt.Errorf("kms config %s: platform.kms: a key broker section belongs in a federation party configuration, not here", path)
	}
	if err := c.Platform.Normalize(); err != nil {
		return nil, fmt.Errorf("kms config %s: platform: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	c.EARVerifiers = c.path(c.EARVerifiers)
	if c.Store.Driver == "sqlite" {
		c.Store.Path = c.path(c.Store.Path)
	}
	if p, ok := strings.CutPrefix(c.RootKey, "file:"); ok && p != "" {
		c.RootKey = "file:" + c.path(p)
	}
	return &c, nil
}

func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// AnchorPath is the broker's audit anchor file: audit_anchor, by default
// audit.anchor (audit-REPLICA.anchor for a named replica: each replica
// anchors what it committed) in the SQLite store's directory, or next to
// the configuration for PostgreSQL.
func (c *Config) AnchorPath() string {
	if c.AuditAnchor != "" {
		return c.path(c.AuditAnchor)
	}
	name := "audit.anchor"
	if c.Replica != "" {
		name = "audit-" + c.Replica + ".anchor"
	}
	if c.Store.Driver == "sqlite" && c.Store.Path != "" {
		return filepath.Join(filepath.Dir(c.Store.Path), name)
	}
	return c.path(name)
}

// Dir is the directory relative paths resolve against.
func (c *Config) Dir() string { return c.dir }

// loaded is the configured member, loaded through package party, and the
// policy its peers are held to.
type loaded struct {
	*party.Party
	pol *policy.Policy
}

func (c *Config) load(role string, log *slog.Logger) (*loaded, error) {
	for _, key := range []struct{ name, value string }{{"identity.cert", c.Identity.Cert}, {"identity.key", c.Identity.Key},
		{"federation.root", c.Federation.Root}, {"federation.bundle", c.Federation.Bundle}, {"policy", c.Policy}} {
		if key.value == "" {
			return nil, fmt.Errorf("kms config: %s is not set", key.name)
		}
	}
	p, err := party.Load(c.Files(), c.Name, role, log)
	if err != nil {
		return nil, err
	}
	pol, err := policy.Load(c.path(c.Policy))
	if err != nil {
		return nil, err
	}
	return &loaded{Party: p, pol: pol}, nil
}

// Files are the party files the configuration names.
func (c *Config) Files() party.Files {
	return party.Files{Dir: c.dir, Cert: c.path(c.Identity.Cert), Key: c.path(c.Identity.Key),
		Root: c.path(c.Federation.Root), Bundle: c.path(c.Federation.Bundle), Inline: &c.Platform}
}

// auditedCreds records refused RA-TLS handshakes in the audit log.
type auditedCreds struct {
	credentials.TransportCredentials
	b *Broker
}

func (a auditedCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := a.TransportCredentials.ServerHandshake(c)
	if err != nil {
		// Plain TLS failures (a port scanner, a client hanging up) are
		// logged by ratls but not audited: there is no decision to record.
		if chk := ratls.CheckOf(err); chk != "" && chk != ratls.CheckHandshake {
			a.b.RecordConnectionRefusal(c.RemoteAddr().String(), err)
		}
	}
	return conn, ai, err
}

func (a auditedCreds) Clone() credentials.TransportCredentials {
	return auditedCreds{TransportCredentials: a.TransportCredentials.Clone(), b: a.b}
}

// ServeOptions configures Serve.
type ServeOptions struct {
	// Out receives the banner and the "serving on" line.
	Out    io.Writer
	Logger *slog.Logger
	// RootKeyOpener opens Config.RootKey (default OpenRootKey).
	RootKeyOpener func(spec string) (rootkey.Wrapper, error)
	// Ready, when set, is called with the listening address.
	Ready func(addr string)
	// AdoptHead accepts a missing audit anchor on a store that already has
	// entries (see BrokerConfig.AdoptHead).
	AdoptHead bool
	// UI, when set, is started once the broker's party is loaded, with the
	// party's RA-TLS server certificate (the read-only web dashboard of
	// `teeml kms serve --ui-addr`, which the broker does not link); its
	// stop runs when Serve returns.
	UI func(ctx context.Context, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (stop func(), err error)
}

// ServingPrefix starts the line Serve prints once it accepts connections.
const ServingPrefix = "kms: serving on "

// Serve runs the broker until ctx ends, then stops gracefully.
func Serve(ctx context.Context, c *Config, o ServeOptions) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.RootKeyOpener == nil {
		o.RootKeyOpener = OpenRootKey
	}
	if c.Listen == "" {
		return errors.New("kms config: listen is not set")
	}
	if c.RootKey == "" {
		return errors.New("kms config: root_key is not set")
	}
	var earKeys []*ecdsa.PublicKey
	if c.EARVerifiers != "" {
		var err error
		if earKeys, err = ear.LoadPublicKeys(c.EARVerifiers); err != nil {
			return fmt.Errorf("kms config: ear_verifiers: %w", err)
		}
		log.Info("kms: accepting attestation results (EAR) from trusted verifiers", "keys", len(earKeys), "file", c.EARVerifiers)
	}
	p, err := c.load("kms", log)
	if err != nil {
		return err
	}
	root, err := o.RootKeyOpener(c.RootKey)
	if err != nil {
		return err
	}
	defer root.Close()
	var also []string
	if root.Simulated() {
		also = append(also, "root key "+root.Describe())
	}
	p.Announce(o.Out, log, also...)
	defer p.WatchFederation(ctx, log)()
	if o.UI != nil {
		getCert, stopCert, err := p.ServerCertificate(ctx, log)
		if err != nil {
			return fmt.Errorf("kms: dashboard: %w", err)
		}
		defer stopCert()
		stopUI, err := o.UI(ctx, getCert)
		if err != nil {
			return err
		}
		defer stopUI()
	}
	log.Info("kms: root key", "root_key", root.Describe())
	st, err := store.Open(ctx, c.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info("kms: store", "store", c.Store.Describe())
	reg := prometheus.NewRegistry()
	brokerName := c.Name
	if c.Replica != "" {
		brokerName += "/" + c.Replica
	}
	bc := BrokerConfig{Name: brokerName, Store: st, Root: root, Admins: c.Admins, Logger: log, Registerer: reg,
		AnchorPath: c.AnchorPath(), AdoptHead: o.AdoptHead}
	if p.Federation != nil {
		bc.Federation = p.Federation
	}
	bc.EARVerifiers = earKeys
	b, err := NewBroker(ctx, bc)
	if err != nil {
		return err
	}
	defer b.Close()
	creds, closeSrc, err := p.Credentials(ctx, party.Peer{Role: "caller", Policy: p.pol}, true, log)
	if err != nil {
		return err
	}
	defer closeSrc()
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("kms: listen %s: %w", c.Listen, err)
	}
	srv := grpc.NewServer(append(p.ServerOptions(log),
		grpc.Creds(auditedCreds{TransportCredentials: creds, b: b}), grpc.MaxConcurrentStreams(1024))...)
	b.Register(srv)
	var metricsSrv *promserve.Server
	if c.MetricsListen != "" {
		metricsSrv, err = promserve.Serve(ctx, c.MetricsListen, promserve.Options{Gatherer: reg, Logger: log, Service: "kms"})
		if err != nil {
			lis.Close()
			return fmt.Errorf("kms: %w", err)
		}
		log.Info("kms: metrics", "addr", metricsSrv.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	addr := lis.Addr().String()
	fmt.Fprintln(o.Out, ServingPrefix+addr)
	log.Info("kms: serving", "addr", addr, "name", c.Name, "admins", c.Admins)
	if o.Ready != nil {
		o.Ready(addr)
	}
	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("kms: shutting down")
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			srv.Stop()
		}
		err = nil
	}
	if metricsSrv != nil {
		if merr := metricsSrv.Close(); merr != nil && err == nil {
			err = merr
		}
	}
	return err
}

// Client is a connection to a broker.
type Client struct {
	kmsv1.KeyBrokerClient
	conn  *grpc.ClientConn
	close func()
	// Simulated is true when this client's evidence or trust is simulated.
	Simulated bool
}

// Dial connects to c.Broker over mutual RA-TLS; the broker must present a
// federation identity with role kms whose evidence satisfies the policy's
// role kms.
func Dial(ctx context.Context, c *Config, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.Default()
	}
	if c.Broker == "" {
		return nil, errors.New("kms config: broker is not set")
	}
	p, err := c.load("", log)
	if err != nil {
		return nil, err
	}
	if _, ok := p.pol.Roles["kms"]; !ok {
		return nil, fmt.Errorf("kms config: policy %s has no role kms (what the broker must run)", c.Policy)
	}
	conn, closeConn, err := p.DialBroker(ctx, c.Broker, p.pol, log)
	if err != nil {
		return nil, err
	}
	return &Client{KeyBrokerClient: kmsv1.NewKeyBrokerClient(conn), conn: conn, close: closeConn, Simulated: c.Platform.Simulated()}, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	err := c.conn.Close()
	c.close()
	return err
}
