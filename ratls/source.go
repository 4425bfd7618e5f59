package ratls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/teeml/teeml/attest"
)

// DefaultIssueTimeout bounds one certificate issuance (key, evidence,
// signature) made by a CertSource.
const DefaultIssueTimeout = 30 * time.Second

// DefaultRetryInterval is how long a CertSource waits after a failed
// background renewal before trying again.
const DefaultRetryInterval = 10 * time.Second

// SourceOptions configure a CertSource.
type SourceOptions struct {
	// Cert configures each certificate; its Now is also the source's clock.
	Cert CertOptions
	// IssueTimeout bounds each issuance (default DefaultIssueTimeout).
	IssueTimeout time.Duration
	// RetryInterval spaces failed renewals (default DefaultRetryInterval).
	RetryInterval time.Duration
	// Logger receives renewal failures (default slog.Default()).
	Logger *slog.Logger
}

// CertSource hands out the current RA-TLS certificate and re-issues it
// before expiry: once 2/3 of the current certificate's validity has
// passed, the next request starts a renewal in the background and keeps
// being served the current certificate until the new one is ready; only
// when the current certificate has expired (or there is none) do requests
// wait for the renewal, within their context. At most one renewal runs at a
// time, each bounded by IssueTimeout; Close cancels it and waits for it.
// No goroutine runs between renewals.
//
// Its GetCertificate and GetClientCertificate plug into tls.Config.
type CertSource struct {
	issuer attest.Issuer
	opts   SourceOptions

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	cur      *tls.Certificate
	renewAt  time.Time
	inflight *issueCall
	retryAt  time.Time
	lastErr  error
	closed   bool
}

type issueCall struct {
	done chan struct{}
	err  error
}

// NewCertSource issues the first certificate (within ctx) and returns the
// source.
func NewCertSource(ctx context.Context, issuer attest.Issuer, opts SourceOptions) (*CertSource, error) {
	if issuer == nil {
		return nil, errors.New("ratls: certificate source: no evidence issuer")
	}
	if opts.IssueTimeout <= 0 {
		opts.IssueTimeout = DefaultIssueTimeout
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &CertSource{issuer: issuer, opts: opts}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if _, err := s.Certificate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *CertSource) now() time.Time { return s.opts.Cert.now() }

// Certificate returns a certificate valid now, renewing as described on
// CertSource.
func (s *CertSource) Certificate(ctx context.Context) (*tls.Certificate, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("ratls: certificate source: closed")
	}
	now := s.now()
	cur := s.cur
	if cur != nil && now.Before(cur.Leaf.NotAfter) {
		if !now.Before(s.renewAt) && s.inflight == nil && !now.Before(s.retryAt) {
			s.startLocked()
		}
		s.mu.Unlock()
		return cur, nil
	}
	// No valid certificate: wait for a renewal, starting one if needed (a
	// failed attempt's back-off does not apply: there is nothing to serve).
	call := s.inflight
	if call == nil {
		call = s.startLocked()
	}
	s.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("ratls: certificate source: waiting for a certificate: %w", ctx.Err())
	}
	if call.err != nil {
		return nil, call.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil, errors.New("ratls: certificate source: closed")
	}
	return s.cur, nil
}

// startLocked starts a renewal; s.mu must be held.
func (s *CertSource) startLocked() *issueCall {
	call := &issueCall{done: make(chan struct{})}
	s.inflight = call
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.IssueTimeout)
		cert, err := NewCertificate(ctx, s.issuer, s.opts.Cert)
		cancel()
		s.mu.Lock()
		if err != nil {
			call.err = fmt.Errorf("ratls: certificate source: renewal: %w", err)
			s.lastErr = call.err
			s.retryAt = s.now().Add(s.opts.RetryInterval)
			if s.cur != nil && !s.closed {
				s.opts.Logger.Warn("ratls: RA-TLS certificate renewal failed; serving the current certificate",
					"err", call.err.Error(), "expires", s.cur.Leaf.NotAfter)
			}
		} else {
			s.cur = &cert
			s.lastErr = nil
			issued := cert.Leaf.NotBefore.Add(ClockSkew)
			s.renewAt = issued.Add(cert.Leaf.NotAfter.Sub(issued) * 2 / 3)
		}
		s.inflight = nil
		s.mu.Unlock()
		close(call.done)
	}()
	return call
}

// RenewAt is when the current certificate will be renewed (2/3 of its
// validity).
func (s *CertSource) RenewAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewAt
}

// Err is the error of the last renewal, nil if it succeeded.
func (s *CertSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Wait blocks until no renewal is running (or ctx is done); for tests and
// orderly shutdown.
func (s *CertSource) Wait(ctx context.Context) error {
	s.mu.Lock()
	call := s.inflight
	s.mu.Unlock()
	if call == nil {
		return nil
	}
	select {
	case <-call.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close cancels a running renewal and waits for it to end. Later calls of
// Certificate fail.
func (s *CertSource) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// GetCertificate implements tls.Config.GetCertificate. A hello made
// outside a handshake (no context) waits at most the issue timeout.
func (s *CertSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.Certificate(orBackground(hello.Context()))
}

// GetClientCertificate implements tls.Config.GetClientCertificate.
func (s *CertSource) GetClientCertificate(req *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.Certificate(orBackground(req.Context()))
}

// orBackground is ctx, or context.Background for the nil context of a
// ClientHelloInfo or CertificateRequestInfo made outside a handshake
// (Certificate would otherwise fail on it while waiting for a renewal).
// Issuance is bounded by SourceOptions.IssueTimeout either way.
func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// Certificates supplies this side's certificate to TLS handshakes; a
// *CertSource and StaticCertificate implement it.
type Certificates interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// StaticCertificate serves one fixed certificate (no renewal); for tests
// and short-lived processes.
type StaticCertificate struct{ Cert *tls.Certificate }

// GetCertificate implements Certificates.
func (c StaticCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.Cert, nil
}

// GetClientCertificate implements Certificates.
func (c StaticCertificate) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.Cert, nil
}
