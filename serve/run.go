package serve

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/dashboard/pkisource"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/promserve"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/sealed"
)

// Role is the federation and policy role of an inference server.
const Role = "serving"

// RunOptions configure Run.
type RunOptions struct {
	Repository string // serving YAML
	// Workspace and Name locate the server's party files (party.WorkspaceFiles:
	// a PKI identity when pki/<name>.crt exists, else attestation only);
	// PartyConfig, when set, is an attestation-only party configuration
	// file used instead.
	Workspace, Name, PartyConfig string
	HTTPListen                   string // REST over RA-TLS ("" : none)
	GRPCListen                   string // gRPC over RA-TLS ("" : none)
	// MetricsListen serves /metrics, /healthz, /readyz (plain HTTP; ""
	// none).
	MetricsListen string
	// UIAddr, if set, serves the web dashboard of this server (HTTPS,
	// read-only: request counts, rates, refusals, latency per model;
	// docs/dashboard.md).
	UIAddr    string
	Tokens    string // tokens file (TokensFile format)
	Anonymous bool
	// ClientPolicy, when set, lets federation members authenticate by
	// mutual RA-TLS (the server needs a federation identity): an
	// attest/policy file with an entry per client role. A member's
	// certificate must satisfy it; the caller is the member's name (for
	// access lists); clients without a certificate still use tokens.
	ClientPolicy string
	// Drain bounds the graceful shutdown (default 30 s).
	Drain time.Duration
	Out   io.Writer
	Log   *slog.Logger
	// Ready, when set, gets the listening addresses.
	Ready func(httpAddr, grpcAddr string)
}

// ServingPrefix starts the line Run prints once it serves.
const ServingPrefix = "serve: serving "

// Run loads the party and the models (sealed ones through the party's key
// broker, after its own attestation) and serves until ctx ends, then
// drains: it stops accepting, answers what was accepted, and returns.
func Run(ctx context.Context, o RunOptions) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Drain == 0 {
		o.Drain = 30 * time.Second
	}
	if o.HTTPListen == "" && o.GRPCListen == "" {
		return errors.New("serve: give an HTTP or a gRPC address to listen on")
	}
	p, ks, closeParty, err := StartParty(ctx, o.Workspace, o.Name, o.PartyConfig, o.Out, o.Log)
	if err != nil {
		return err
	}
	defer closeParty()
	repo, err := LoadRepository(o.Repository)
	if err != nil {
		return err
	}
	var tokens map[string]string
	if o.Tokens != "" {
		if tokens, err = LoadTokens(o.Tokens); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	var tlsOpts party.ServerTLSOptions
	if o.ClientPolicy != "" {
		pol, err := policy.Load(o.ClientPolicy)
		if err != nil {
			return fmt.Errorf("serve: client policy: %w", err)
		}
		tlsOpts.Clients = &party.Peer{Role: "client", Policy: pol}
	}
	ch, err := p.ServerTLS(ctx, tlsOpts, o.Log)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ch.Close()
	s, err := New(ctx, Options{Repo: repo, Keys: ks, Tokens: tokens, Anonymous: o.Anonymous, Log: o.Log, Registerer: reg,
		Members: tlsOpts.Clients != nil, Recheck: p.RecheckClient})
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	if o.MetricsListen != "" {
		ms, err := promserve.Serve(ctx, o.MetricsListen, promserve.Options{Gatherer: reg, Logger: o.Log, Service: "serve",
			Ready: func() error {
				if !s.Ready() {
					return errors.New("not ready")
				}
				return nil
			}})
		if err != nil {
			return err
		}
		defer ms.Close()
	}
	if o.UIAddr != "" {
		stop, err := serveDashboard(ctx, o, p, reg)
		if err != nil {
			return err
		}
		defer stop()
	}
	errc := make(chan error, 2)
	var httpAddr, grpcAddr string
	var hs *http.Server
	if o.HTTPListen != "" {
		lis, err := net.Listen("tcp", o.HTTPListen)
		if err != nil {
			return fmt.Errorf("serve: listen %s: %w", o.HTTPListen, err)
		}
		httpAddr = lis.Addr().String()
		hs = &http.Server{Handler: s.Handler(), TLSConfig: ch.HTTP.TLSConfig(), ConnContext: ch.HTTP.ConnContext, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn)}
		go func() { errc <- hs.ServeTLS(lis, "", "") }()
	}
	var gs *grpc.Server
	if o.GRPCListen != "" {
		lis, err := net.Listen("tcp", o.GRPCListen)
		if err != nil {
			return fmt.Errorf("serve: listen %s: %w", o.GRPCListen, err)
		}
		grpcAddr = lis.Addr().String()
		gs = grpc.NewServer(append(p.ServerOptions(o.Log),
			grpc.Creds(ch.GRPC), grpc.MaxRecvMsgSize(int(s.o.MaxBody)), grpc.MaxConcurrentStreams(1024))...)
		s.RegisterGRPC(gs)
		go func() { errc <- gs.Serve(lis) }()
	}
	fmt.Fprintf(o.Out, "%sREST https://%s, gRPC %s, models %v\n", ServingPrefix, httpAddr, grpcAddr, s.Names())
	if o.Ready != nil {
		o.Ready(httpAddr, grpcAddr)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	o.Log.Info("serve: draining")
	s.ready.Store(false)
	dctx, cancel := context.WithTimeout(context.Background(), o.Drain)
	defer cancel()
	var errs []error
	if hs != nil {
		errs = append(errs, hs.Shutdown(dctx))
	}
	if gs != nil {
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-dctx.Done():
			gs.Stop()
		}
	}
	errs = append(errs, s.Close(dctx))
	return errors.Join(errs...)
}

// StartParty loads an inference server's party — member name of workspace
// ws (a PKI identity when pki/<name>.crt exists, else attestation only), or
// the attestation-only configuration partyConfig — announces a simulation,
// watches the federation bundle, and connects to its key broker (sealed
// models; nil key source without one). close releases all of it. Queue
// mode starts its party the same way.
func StartParty(ctx context.Context, ws, name, partyConfig string, out io.Writer, log *slog.Logger) (p *party.Party, ks sealed.KeySource, close func(), err error) {
	switch {
	case partyConfig != "":
		p, err = party.LoadAttested(party.ConfigFiles(partyConfig), Role, log)
	case ws != "" && name != "":
		f := party.WorkspaceFiles(ws, name)
		if _, serr := os.Stat(f.Cert); serr == nil {
			p, err = party.Load(f, name, Role, log)
		} else {
			p, err = party.LoadAttested(f, Role, log)
		}
	default:
		return nil, nil, nil, errors.New("serve: give the server's party (--workspace and --name, or --party)")
	}
	if err != nil {
		return nil, nil, nil, err
	}
	p.Announce(out, log)
	stopWatch := p.WatchFederation(ctx, log)
	closers := []func(){stopWatch}
	close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if p.PKI() {
		src, closeKS, ok, err := p.KeySource(ctx, log)
		if err != nil {
			close()
			return nil, nil, nil, err
		}
		if closeKS != nil {
			closers = append(closers, closeKS)
		}
		if ok {
			ks = src
		}
	}
	return p, ks, close, nil
}

// TokensFile is the API tokens file: names and the SHA-256 (hex) of each
// token; the tokens themselves are shown once, when made.
//
//	tokens:
//	  analyst: 9f86d081…
type TokensFile struct {
	Tokens map[string]string `yaml:"tokens"`
}

// LoadTokens reads a tokens file and returns hash → name.
func LoadTokens(path string) (map[string]string, error) {
	b, err := yamlx.ReadFile(path, "tokens file", 0)
	if err != nil {
		return nil, err
	}
	var tf TokensFile
	if _, err := yamlx.Decode(b, path, "tokens file", 0, &tf); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, h := range tf.Tokens {
		if err := pki.CheckName(name); err != nil {
			return nil, fmt.Errorf("tokens %s: %w", path, err)
		}
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("tokens %s: %s: want the token's SHA-256 in hex", path, name)
		}
		out[h] = name
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tokens %s: no tokens", path)
	}
	return out, nil
}

// NewToken makes a token for name, adds its hash to the tokens file
// (created if missing; written atomically) and returns the token.
func NewToken(path, name string) (string, error) {
	if err := pki.CheckName(name); err != nil {
		return "", err
	}
	var tf TokensFile
	if b, err := yamlx.ReadFile(path, "tokens file", 0); err == nil {
		if _, err := yamlx.Decode(b, path, "tokens file", 0, &tf); err != nil {
			return "", err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("tokens: %w", err)
	}
	if tf.Tokens == nil {
		tf.Tokens = map[string]string{}
	}
	if _, dup := tf.Tokens[name]; dup {
		return "", fmt.Errorf("tokens %s: %s already has a token", path, name)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := "tm_" + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(tok))
	tf.Tokens[name] = hex.EncodeToString(sum[:])
	b, err := yaml.Marshal(&tf)
	if err != nil {
		return "", err
	}
	if err := atomicfile.WriteBytes(path, append([]byte("# API tokens of teeml serve: names and SHA-256 of each token.\n"), b...), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}

// serveDashboard serves the dashboard of this server on o.UIAddr: its
// Prometheus registry's request counts (pushed to open pages when they
// change) and, for a PKI party, its federation (members, client
// certificates).
// serveDashboard serves the server's dashboard under the serving party's
// RA-TLS certificate (a client checks it with teeml attest verify-server).
func serveDashboard(ctx context.Context, o RunOptions, p *party.Party, reg *prometheus.Registry) (func(), error) {
	src := &dashboard.PromSource{Service: "inference", Gatherer: reg, Since: time.Now(), Requests: "teeml_serve_requests_total",
		Latency: "teeml_serve_request_seconds", Refusals: "teeml_serve_refusals_total", OKOutcome: statusNames[StatusOK],
		ErrorOutcome: statusNames[StatusInternal]}
	opts := dashboard.Options{Title: "inference server", Services: src, Logger: o.Log}
	if p.PKI() {
		f := party.WorkspaceFiles(o.Workspace, o.Name)
		fed := &pkisource.Source{Root: f.Root, Bundle: f.Bundle}
		opts.Federation, opts.ClientVerifier = fed, fed.VerifyClient
	}
	d, err := dashboard.New(opts)
	if err != nil {
		return nil, err
	}
	if err := d.Register(reg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	getCert, stopCert, err := p.ServerCertificate(ctx, o.Log)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	srv, err := dashboard.Serve(ctx, d, dashboard.ServeOptions{Addr: o.UIAddr, GetCertificate: getCert})
	if err != nil {
		cancel()
		stopCert()
		return nil, err
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		dashboard.WatchValue(ctx, 500*time.Millisecond, func() string {
			t, err := src.Total()
			if err != nil {
				return err.Error()
			}
			return strconv.FormatFloat(t, 'f', -1, 64)
		}, d.Notify)
	}()
	fmt.Fprintln(o.Out, srv.Describe(""))
	fmt.Fprintf(o.Out, "dashboard: one-time login: %s\n", d.LoginURL(srv.URL()))
	return func() {
		cancel()
		<-watched
		srv.Close()
		stopCert()
	}, nil
}
