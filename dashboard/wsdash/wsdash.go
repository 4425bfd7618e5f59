// Package wsdash is `teeml dashboard`: the dashboard over a workspace's
// files, read-only — the federation and FL runs (dashboard/flsource), VFL
// sessions of a VFL plan directory (dashboard/vflsource) and,
// given a broker configuration, the key broker (dashboard/kmssource) —
// served over HTTPS with its own metrics and health (internal/promserve).
// It composes the sources and starts the dashboard's own party (package
// party, role Role, attestation only) whose RA-TLS certificate the pages
// are served under; it opens no channel to another party.
package wsdash

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/dashboard/flsource"
	"github.com/teeml/teeml/dashboard/kmssource"
	"github.com/teeml/teeml/dashboard/vflsource"
	"github.com/teeml/teeml/internal/promserve"
	"github.com/teeml/teeml/party"
)

// DefaultAddr is where the dashboard listens by default (loopback).
const DefaultAddr = "127.0.0.1:8443"

// Role is the attestation role of a standalone dashboard's party: a
// client checks the server with teeml attest verify-server ADDR --role
// dashboard against a policy for it.
const Role = "dashboard"

// DefaultPoll is how often the workspace's files are checked for changes.
const DefaultPoll = 250 * time.Millisecond

// Options configures Start.
type Options struct {
	// Workspace is the FL workspace to show (required).
	Workspace string
	// PartyConfig is the dashboard's party configuration (attestation
	// only, role Role); default Workspace/party/dashboard.yaml, which
	// simulated workspaces (partysim.Federation) carry.
	PartyConfig string
	// KMSConfig, if set, is a key broker's configuration: its store is
	// read and its audit chain verified (read-only).
	KMSConfig string
	// Addr to listen on (default DefaultAddr).
	Addr string
	// CertFile and KeyFile are an operator's server certificate (PEM),
	// served instead of the party's RA-TLS certificate (a browser that
	// trusts the operator's CA then checks no evidence).
	CertFile, KeyFile string
	// MetricsAddr, if set, serves /metrics, /healthz and /readyz.
	MetricsAddr string
	// NoToken disables the one-time login token: federation client
	// certificates only.
	NoToken bool
	// Poll is the file-change poll interval (default DefaultPoll).
	Poll   time.Duration
	Out    io.Writer
	Logger *slog.Logger
}

// Running is a started dashboard.
type Running struct {
	Dashboard *dashboard.Dashboard
	Server    *dashboard.Server
	metrics   *promserve.Server
	cancel    context.CancelFunc
	watched   chan struct{}
	stopCert  func()
}

// URL is the dashboard's base address.
func (r *Running) URL() string { return r.Server.URL() }

// MetricsAddr is the metrics server's address ("" if none).
func (r *Running) MetricsAddr() string {
	if r.metrics == nil {
		return ""
	}
	return r.metrics.Addr()
}

// Close stops the dashboard and returns the first error that stopped a
// server early.
func (r *Running) Close() error {
	r.cancel()
	<-r.watched
	err := r.Server.Close()
	if r.metrics != nil {
		err = errors.Join(err, r.metrics.Close())
	}
	if r.stopCert != nil {
		r.stopCert()
	}
	return err
}

// Start serves the dashboard of o.Workspace until ctx ends or Close, and
// prints its address, certificate fingerprint and one-time login address.
func Start(ctx context.Context, o Options) (*Running, error) {
	if o.Workspace == "" {
		return nil, errors.New("dashboard: no workspace (-w)")
	}
	if fi, err := os.Stat(o.Workspace); err != nil {
		return nil, fmt.Errorf("dashboard: workspace: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("dashboard: workspace %s: is not a directory", o.Workspace)
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var cert *tls.Certificate
	if o.CertFile != "" || o.KeyFile != "" {
		c, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dashboard: server certificate %s: %w", o.CertFile, err)
		}
		cert = &c
	}
	// The address first: nothing is started (no evidence issued) for a
	// dashboard that cannot listen.
	lis, err := dashboard.Listen(ctx, o.Addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Running, error) {
		lis.Close()
		return nil, err
	}
	cfgPath := o.PartyConfig
	if cfgPath == "" {
		cfgPath = party.ConfigFile(o.Workspace, Role)
	}
	p, err := party.LoadAttested(party.ConfigFiles(cfgPath), Role, o.Logger)
	if err != nil {
		if o.PartyConfig == "" && errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("dashboard: party configuration %s: %w (give --party, an attestation-only configuration for role %s)", cfgPath, err, Role))
		}
		return fail(fmt.Errorf("dashboard: party %s: %w", cfgPath, err))
	}
	p.Announce(o.Out, o.Logger)
	ss := serveSpec{lis: lis, metricsAddr: o.MetricsAddr, cert: cert, poll: o.Poll}
	if cert == nil {
		if ss.getCert, ss.stopCert, err = p.ServerCertificate(ctx, o.Logger); err != nil {
			return fail(fmt.Errorf("dashboard: %w", err))
		}
	}
	fl := flsource.New(o.Workspace)
	vfl := vflsource.New(o.Workspace)
	opts := dashboard.Options{Title: o.Workspace, Federation: fl, Attestation: fl, FL: fl, VFL: vfl,
		ClientVerifier: fl.VerifyClient, NoToken: o.NoToken, Logger: o.Logger}
	var ks *kmssource.Source
	if o.KMSConfig != "" {
		ks = kmssource.New(o.KMSConfig)
		opts.Broker = ks
	}
	d, err := dashboard.New(opts)
	if err != nil {
		ss.stop()
		return fail(err)
	}
	files := func() []string {
		f := append(fl.WatchedFiles(), vfl.WatchedFiles()...)
		if ks != nil {
			f = append(f, ks.WatchedFiles()...)
		}
		return f
	}
	ss.files, ss.role = files, Role
	return serveDashboard(ctx, d, ss, o.Out, o.Logger)
}

// serveSpec is how a dashboard is served: where, under which certificate
// (a party's RA-TLS certificate renewed by getCert, or a fixed one), and
// which files to watch.
type serveSpec struct {
	addr, metricsAddr string
	lis               net.Listener // instead of addr
	getCert           func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	stopCert          func()
	cert              *tls.Certificate
	role              string // the party's role, for the verify-server hint (Server.Describe)
	poll              time.Duration
	files             func() []string
}

func (ss serveSpec) stop() {
	if ss.stopCert != nil {
		ss.stopCert()
	}
}

func serveDashboard(ctx context.Context, d *dashboard.Dashboard, ss serveSpec, out io.Writer, log *slog.Logger) (*Running, error) {
	ctx, cancel := context.WithCancel(ctx)
	srv, err := dashboard.Serve(ctx, d, dashboard.ServeOptions{Addr: ss.addr, Listener: ss.lis, GetCertificate: ss.getCert, Certificate: ss.cert})
	if err != nil {
		cancel()
		ss.stop()
		return nil, err
	}
	r := &Running{Dashboard: d, Server: srv, cancel: cancel, watched: make(chan struct{}), stopCert: ss.stopCert}
	if ss.metricsAddr != "" {
		m, err := promserve.Serve(ctx, ss.metricsAddr, promserve.Options{Gatherer: d.Registry(), Logger: log, Service: "dashboard"})
		if err != nil {
			cancel()
			srv.Close()
			ss.stop()
			return nil, err
		}
		r.metrics = m
	}
	go func() {
		defer close(r.watched)
		dashboard.WatchFiles(ctx, ss.poll, ss.files, d.Notify)
	}()
	fmt.Fprintln(out, srv.Describe(ss.role))
	if tok := d.LoginToken(); tok != "" {
		fmt.Fprintf(out, "dashboard: one-time login: %s\n", d.LoginURL(srv.URL()))
	}
	fmt.Fprintln(out, "dashboard: federation members may instead present their identity certificate as a client certificate")
	if r.metrics != nil {
		fmt.Fprintf(out, "dashboard: metrics and health: http://%s/metrics\n", r.metrics.Addr())
	}
	return r, nil
}

// BrokerOptions configures StartBroker.
type BrokerOptions struct {
	// KMSConfig is the broker's configuration file (required).
	KMSConfig string
	// GetCertificate is the broker party's RA-TLS server certificate
	// (kms.ServeOptions.UI hands it over); nil: a self-signed one.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Addr to listen on (required).
	Addr   string
	Poll   time.Duration
	Out    io.Writer
	Logger *slog.Logger
}

// StartBroker serves the dashboard of a key broker next to it (`teeml kms
// serve --ui-addr`): its keys, release policies and audit log with the
// chain verification, read-only from its store, and its federation
// (members, client certificates) from the files its configuration names.
func StartBroker(ctx context.Context, o BrokerOptions) (*Running, error) {
	if o.KMSConfig == "" || o.Addr == "" {
		return nil, errors.New("dashboard: a key broker configuration and an address are required")
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ks := kmssource.New(o.KMSConfig)
	root, bundle, err := ks.FederationFiles()
	if err != nil {
		return nil, err
	}
	fed := &flsource.Source{Root: root, Bundle: bundle}
	d, err := dashboard.New(dashboard.Options{Title: "key broker · " + o.KMSConfig, Federation: fed, Attestation: fed, Broker: ks,
		ClientVerifier: fed.VerifyClient, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return serveDashboard(ctx, d, serveSpec{addr: o.Addr, getCert: o.GetCertificate, role: "kms", poll: o.Poll,
		files: func() []string { return append(fed.WatchedFiles(), ks.WatchedFiles()...) }}, o.Out, o.Logger)
}

// Run is Start, then waits until ctx ends or a server stops early.
func Run(ctx context.Context, o Options) error {
	r, err := Start(ctx, o)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-r.Server.Done():
	}
	return r.Close()
}
