// Package dashboard is teeml's web dashboard: the federation, its
// attestation and its work at a glance (docs/dashboard.md). It renders
// what read-only data sources return — server-side HTML and SVG charts,
// each chart with its table — and pushes live updates with server-sent
// events. It imports no service: compositions (dashboard/wsdash for a
// workspace's files, the services' --ui-addr) feed it.
//
// Access is read-only (GET and HEAD; anything else is 405) and needs
// either a client certificate of the federation (checked by
// Options.ClientVerifier against the federation CA and CRL) or the
// one-time login token, exchanged once for an HttpOnly, Secure,
// SameSite=Strict session cookie.
package dashboard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	// SessionCookie is the session cookie's name.
	SessionCookie = "teeml_dashboard"
	// SessionLifetime bounds a session.
	SessionLifetime = 12 * time.Hour
	// MaxEventClients bounds concurrent server-sent-event streams.
	MaxEventClients = 64
	// heartbeat keeps idle event streams (and proxies) alive.
	heartbeat = 15 * time.Second
)

// Options configures New.
type Options struct {
	// Title names the dashboard (e.g. the workspace).
	Title string

	Federation  FederationSource
	Attestation AttestationSource
	FL          FLSource
	Broker      BrokerSource
	Services    ServiceSource
	VFL         VFLSource

	// ClientVerifier checks a client certificate chain (leaf first) against
	// the federation CA and CRL and returns the member's name; nil refuses
	// every client certificate (token login only).
	ClientVerifier func(chain []*x509.Certificate, now time.Time) (string, error)
	// NoToken disables the one-time login token (client certificates only).
	NoToken bool

	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Dashboard is the HTTP handler of the pages, their assets, the event
// stream and the login.
type Dashboard struct {
	o     Options
	log   *slog.Logger
	token string // "" once used or disabled

	mu       sync.Mutex
	sessions map[string]time.Time // session id → expiry
	version  uint64
	changed  chan struct{} // closed and replaced on every Notify
	clients  int

	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	refusals *prometheus.CounterVec
	streams  prometheus.Gauge
	srcErrs  *prometheus.CounterVec
}

// New returns a dashboard over o's sources with a fresh one-time login
// token (LoginToken) unless o.NoToken.
func New(o Options) (*Dashboard, error) {
	if o.NoToken && o.ClientVerifier == nil {
		return nil, errors.New("dashboard: neither a login token nor a client certificate verifier: nobody could log in")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Title == "" {
		o.Title = "teeml"
	}
	d := &Dashboard{o: o, log: o.Logger, sessions: map[string]time.Time{}, changed: make(chan struct{}), reg: prometheus.NewRegistry()}
	if !o.NoToken {
		t, err := randomString(24)
		if err != nil {
			return nil, err
		}
		d.token = t
	}
	d.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_dashboard_requests_total",
		Help: "Dashboard HTTP requests by page and status code."}, []string{"page", "code"})
	d.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_dashboard_refusals_total",
		Help: "Dashboard requests refused, by reason."}, []string{"reason"})
	d.streams = prometheus.NewGauge(prometheus.GaugeOpts{Name: "teeml_dashboard_event_streams",
		Help: "Open server-sent-event streams."})
	d.srcErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_dashboard_source_errors_total",
		Help: "Data source reads that failed, by source."}, []string{"source"})
	d.reg.MustRegister(d.requests, d.refusals, d.streams, d.srcErrs)
	return d, nil
}

// Registry is the dashboard's own Prometheus registry (serve it with
// internal/promserve).
func (d *Dashboard) Registry() *prometheus.Registry { return d.reg }

// Register adds the dashboard's metrics to r as well (a service's own
// registry, so its /metrics shows them).
func (d *Dashboard) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{d.requests, d.refusals, d.streams, d.srcErrs} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("dashboard: metrics: %w", err)
		}
	}
	return nil
}

// LoginToken is the one-time login token ("" when disabled). Print it
// once at start; LoginURL is the address to open.
func (d *Dashboard) LoginToken() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.token
}

// LoginURL is base + the login path with the token.
func (d *Dashboard) LoginURL(base string) string {
	return strings.TrimSuffix(base, "/") + "/login?token=" + d.LoginToken()
}

// Notify tells open pages that the data changed: each reloads its content
// (not the page) within one round trip.
func (d *Dashboard) Notify() {
	d.mu.Lock()
	d.version++
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

func (d *Dashboard) watch() (uint64, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version, d.changed
}

// statusWriter records the status code for the request counter.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// csp allows this origin's script, style and images only: no inline
// script, no inline style, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	page := pageLabel(r.URL.Path)
	defer func() {
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		d.requests.WithLabelValues(page, fmt.Sprint(code)).Inc()
	}()
	h := sw.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		d.refusals.WithLabelValues("method").Inc()
		http.Error(sw, "dashboard: method "+r.Method+" not allowed: the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/login" {
		d.login(sw, r)
		return
	}
	if code, reason := d.authorize(r); code != 0 {
		d.refusals.WithLabelValues(reasonLabel(code)).Inc()
		d.log.Info("dashboard: request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "code", code, "reason", reason)
		http.Error(sw, "dashboard: "+reason, code)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/static/"):
		d.static(sw, r)
	case r.URL.Path == "/events":
		d.events(sw, r)
	default:
		d.page(sw, r)
	}
}

func pageLabel(p string) string {
	switch {
	case strings.HasPrefix(p, "/static/"):
		return "static"
	case p == "/" || p == "/login" || p == "/events":
		return p
	}
	for _, pg := range pages {
		if p == pg.Path {
			return p
		}
	}
	return "other"
}

func reasonLabel(code int) string {
	if code == http.StatusUnauthorized {
		return "unauthenticated"
	}
	return "forbidden"
}

// authorize returns 0 for an authenticated request, else the status code
// and the reason.
func (d *Dashboard) authorize(r *http.Request) (int, string) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if d.o.ClientVerifier == nil {
			return http.StatusForbidden, "client certificate refused: this dashboard accepts no client certificates"
		}
		name, err := d.o.ClientVerifier(r.TLS.PeerCertificates, d.o.Now())
		if err != nil {
			return http.StatusForbidden, "client certificate refused: " + oneLine(err.Error())
		}
		d.log.Debug("dashboard: client certificate accepted", "member", name, "path", r.URL.Path)
		return 0, ""
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return http.StatusUnauthorized, "not logged in: present a client certificate of the federation or open the login address printed at start"
	}
	d.mu.Lock()
	exp, ok := d.sessions[c.Value]
	if ok && !d.o.Now().Before(exp) {
		delete(d.sessions, c.Value)
		ok = false
	}
	d.mu.Unlock()
	if !ok {
		return http.StatusUnauthorized, "session unknown or expired: log in again"
	}
	return 0, ""
}

// login exchanges the one-time token for a session cookie.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	got := r.URL.Query().Get("token")
	d.mu.Lock()
	ok := d.token != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(d.token)) == 1
	var sid string
	var err error
	if ok {
		d.token = "" // one time
		sid, err = randomString(32)
		if err == nil {
			now := d.o.Now()
			for id, exp := range d.sessions {
				if !now.Before(exp) {
					delete(d.sessions, id)
				}
			}
			d.sessions[sid] = now.Add(SessionLifetime)
		}
	}
	d.mu.Unlock()
	if !ok {
		d.refusals.WithLabelValues("token").Inc()
		d.log.Warn("dashboard: login refused", "remote", r.RemoteAddr)
		http.Error(w, "dashboard: login token invalid or already used", http.StatusForbidden)
		return
	}
	if err != nil {
		http.Error(w, "dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	d.log.Info("dashboard: logged in with the one-time token", "remote", r.RemoteAddr)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: sid, Path: "/", MaxAge: int(SessionLifetime / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// events streams "update" events: one when the stream opens (with the
// current version) and one per Notify.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "text/event-stream")
		return
	}
	d.mu.Lock()
	if d.clients >= MaxEventClients {
		d.mu.Unlock()
		d.refusals.WithLabelValues("streams").Inc()
		http.Error(w, fmt.Sprintf("dashboard: %d event streams open already", MaxEventClients), http.StatusServiceUnavailable)
		return
	}
	d.clients++
	d.mu.Unlock()
	d.streams.Inc()
	defer func() {
		d.mu.Lock()
		d.clients--
		d.mu.Unlock()
		d.streams.Dec()
	}()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(s string) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := fmt.Fprint(w, s); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	v, ch := d.watch()
	if !send(fmt.Sprintf("retry: 1000\nevent: hello\ndata: %d\n\n", v)) {
		return
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ch:
			v, ch = d.watch()
			if !send(fmt.Sprintf("event: update\ndata: %d\n\n", v)) {
				return
			}
		case <-t.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dashboard: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Server is a running dashboard over HTTPS.
type Server struct {
	srv    *http.Server
	lis    net.Listener
	served chan struct{}
	err    error
	once   sync.Once
	// Fingerprint is the SHA-256 of the server certificate (hex), to
	// compare with what the browser shows for a self-signed certificate.
	Fingerprint string
	ratls       bool // served under a party's certificate (GetCertificate)
}

// Describe is the line a service prints when its dashboard starts: the
// address and the certificate to compare with the browser's, and for a
// party's RA-TLS certificate how to check it (role: the party's role, ""
// when the verifier's default applies).
func (s *Server) Describe(role string) string {
	if !s.ratls {
		return fmt.Sprintf("dashboard: %s/ (read-only; server certificate SHA-256 %s)", s.URL(), s.Fingerprint)
	}
	check := "teeml attest verify-server " + s.Addr()
	if role != "" {
		check += " --role " + role
	}
	return fmt.Sprintf("dashboard: %s/ (read-only; RA-TLS certificate SHA-256 %s: check it with %s)", s.URL(), s.Fingerprint, check)
}

// ServeOptions configures Serve.
type ServeOptions struct {
	// Addr to listen on (host:port), unless Listener is set.
	Addr string
	// Listener, when set, is the listening socket to serve on (a caller
	// that checks its address before starting anything else).
	Listener net.Listener
	// GetCertificate, when set, gives the server's certificate at each
	// handshake: the RA-TLS certificate of the party the dashboard runs in
	// (party.ServerTLS), renewed by its source, so that a client can check
	// what code serves the pages (teeml attest verify-server). Only the
	// certificate is taken from the party's channel: the dashboard still
	// requests (not requires) client certificates and checks them per
	// request with its ClientVerifier.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Certificate is a fixed server certificate (an operator's, used when
	// GetCertificate is nil); with neither, a self-signed ECDSA P-256
	// certificate for the listening host, valid 30 days.
	Certificate *tls.Certificate
}

// Serve serves d over HTTPS on o.Addr until ctx ends or Close. Client
// certificates are requested (not required) and checked per request by
// d's ClientVerifier.
func Serve(ctx context.Context, d *Dashboard, o ServeOptions) (*Server, error) {
	lis := o.Listener
	var err error
	if lis == nil {
		if lis, err = Listen(ctx, o.Addr); err != nil {
			return nil, err
		}
	}
	host, _, _ := net.SplitHostPort(lis.Addr().String())
	getCert := o.GetCertificate
	cert := o.Certificate
	switch {
	case getCert != nil:
		// The certificate of the first handshake, for the fingerprint
		// printed at start (a renewed RA-TLS certificate has a new one).
		if cert, err = getCert(&tls.ClientHelloInfo{ServerName: host}); err != nil {
			lis.Close()
			return nil, fmt.Errorf("dashboard: server certificate: %w", err)
		}
	case cert == nil:
		if cert, err = SelfSigned(host, time.Now()); err != nil {
			lis.Close()
			return nil, err
		}
	}
	if cert == nil || len(cert.Certificate) == 0 {
		lis.Close()
		return nil, errors.New("dashboard: server certificate: empty")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("dashboard: server certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	if getCert != nil {
		tc.GetCertificate = getCert
	} else {
		tc.Certificates = []tls.Certificate{*cert}
	}
	s := &Server{lis: lis, served: make(chan struct{}), Fingerprint: Fingerprint(leaf), ratls: getCert != nil}
	reqCtx, cancelReqs := context.WithCancel(ctx)
	s.srv = &http.Server{
		Handler:           d,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second, // the event stream extends its own deadline per write
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		// Requests run under a context that Shutdown cancels: open event
		// streams end at once instead of holding the shutdown.
		BaseContext: func(net.Listener) context.Context { return reqCtx },
		TLSConfig:   tc,
	}
	s.srv.RegisterOnShutdown(cancelReqs)
	go func() {
		defer cancelReqs()
		err := s.srv.ServeTLS(lis, "", "")
		if !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("dashboard: %w", err)
		}
		close(s.served)
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.shutdown()
		case <-s.served:
		}
	}()
	d.log.Info("dashboard: serving", "addr", s.Addr(), "certificate_sha256", s.Fingerprint)
	return s, nil
}

// Listen listens on addr for Serve, with the error Serve would give.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen %s: %w", addr, err)
	}
	return lis, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// URL is https://Addr.
func (s *Server) URL() string { return "https://" + s.Addr() }

func (s *Server) shutdown() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
	})
}

// Close stops the server and returns the error that stopped it early, if
// any.
func (s *Server) Close() error {
	s.shutdown()
	<-s.served
	return s.err
}

// Done is closed when the server stopped.
func (s *Server) Done() <-chan struct{} { return s.served }

// Err is the error that stopped the server (after Done).
func (s *Server) Err() error {
	<-s.served
	return s.err
}

// Fingerprint is the SHA-256 of a certificate's DER (hex).
func Fingerprint(c *x509.Certificate) string {
	fp := sha256.Sum256(c.Raw)
	return hex.EncodeToString(fp[:])
}

// SelfSigned makes a self-signed ECDSA P-256 server certificate for host
// (an IP address or a DNS name; "" or unspecified means localhost and the
// loopback addresses), valid from now for 30 days.
func SelfSigned(host string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dashboard: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("dashboard: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "teeml dashboard"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if host != "" && ip == nil && host != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("dashboard: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("dashboard: certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
