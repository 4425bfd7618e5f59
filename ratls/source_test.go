package ratls

import (
	"context"
	"crypto/tls"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func newSource(t *testing.T, iss *countingIssuer, clk *clock, logs *logBuf) *CertSource {
	t.Helper()
	s, err := NewCertSource(context.Background(), iss, SourceOptions{
		Cert: CertOptions{Now: clk.Now, Extensions: TCGOnly}, RetryInterval: time.Minute, Logger: rawLogger(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func waitRenewal(t *testing.T, s *CertSource) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCertSourceRotation(t *testing.T) {
	env := newSimEnv(t)
	iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	logs := &logBuf{}
	s := newSource(t, iss, clk, logs)
	ctx := context.Background()

	first, err := s.Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(40 * time.Minute); !s.RenewAt().Equal(want) {
		t.Fatalf("renew at %s, want %s (2/3 of an hour)", s.RenewAt(), want)
	}
	// Before 2/3: same certificate, no issuance.
	clk.Set(t0.Add(39 * time.Minute))
	if c, _ := s.Certificate(ctx); c != first || iss.n.Load() != 1 {
		t.Fatalf("renewed early (%d issues)", iss.n.Load())
	}
	// At 2/3: the current certificate is served while the renewal runs.
	clk.Set(t0.Add(40 * time.Minute))
	if c, _ := s.Certificate(ctx); c != first {
		t.Fatal("did not serve the current certificate during renewal")
	}
	waitRenewal(t, s)
	second, err := s.Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || iss.n.Load() != 2 || !second.Leaf.NotBefore.Equal(t0.Add(40*time.Minute-ClockSkew)) {
		t.Fatalf("no renewal: %d issues", iss.n.Load())
	}
	if !s.RenewAt().Equal(t0.Add(80 * time.Minute)) {
		t.Fatalf("next renewal at %s", s.RenewAt())
	}

	// The tls.Config hooks serve the same certificate.
	if c, err := s.GetCertificate(&tls.ClientHelloInfo{}); err != nil || c != second {
		t.Fatal("GetCertificate", err)
	}
	if c, err := s.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil || c != second {
		t.Fatal("GetClientCertificate", err)
	}
}

func TestCertSourceRenewalFailure(t *testing.T) {
	env := newSimEnv(t)
	iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	logs := &logBuf{}
	s := newSource(t, iss, clk, logs)
	ctx := context.Background()
	first, _ := s.Certificate(ctx)

	iss.fail.Store(true)
	clk.Set(t0.Add(45 * time.Minute))
	if c, err := s.Certificate(ctx); err != nil || c != first {
		t.Fatal("failing renewal did not keep the current certificate", err)
	}
	waitRenewal(t, s)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "quoting enclave unavailable") {
		t.Fatalf("Err() = %v", err)
	}
	if !strings.Contains(logs.String(), "renewal failed; serving the current certificate") {
		t.Fatalf("renewal failure not logged: %s", logs.String())
	}
	// No retry before RetryInterval…
	clk.Set(t0.Add(45*time.Minute + 30*time.Second))
	if c, _ := s.Certificate(ctx); c != first || iss.n.Load() != 2 {
		t.Fatalf("retried too early: %d issues", iss.n.Load())
	}
	// …then a retry.
	clk.Set(t0.Add(46*time.Minute + time.Second))
	s.Certificate(ctx)
	waitRenewal(t, s)
	if iss.n.Load() != 3 {
		t.Fatalf("%d issues, want 3", iss.n.Load())
	}
	// Expired with a failing issuer: an error, not an expired certificate.
	clk.Set(t0.Add(2 * time.Hour))
	if c, err := s.Certificate(ctx); err == nil || c != nil || !strings.Contains(err.Error(), "renewal: ratls: new certificate") {
		t.Fatalf("expired certificate: %v %v", c, err)
	}
	// Recovery.
	iss.fail.Store(false)
	c, err := s.Certificate(ctx)
	if err != nil || c == first || s.Err() != nil {
		t.Fatal("no recovery:", err)
	}
}

func TestCertSourceContextAndClose(t *testing.T) {
	env := newSimEnv(t)
	before := runtime.NumGoroutine()
	iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	s, err := NewCertSource(context.Background(), iss, SourceOptions{Cert: CertOptions{Now: clk.Now}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// An expired certificate and a hanging issuer: the caller's context
	// bounds the wait.
	iss.block = make(chan struct{})
	clk.Set(t0.Add(2 * time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Certificate(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past the deadline: %v", err)
	}
	// Close cancels the hanging issuance and waits for it.
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := s.Certificate(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("after Close: %v", err)
	}
	testenv.WaitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= before })
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}

	// Issue timeout bounds a renewal even without Close.
	iss2 := &countingIssuer{Issuer: env.issuer(t, mrGood, false), block: make(chan struct{})}
	_, err = NewCertSource(context.Background(), iss2, SourceOptions{IssueTimeout: 20 * time.Millisecond, Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("issue timeout: %v", err)
	}
	if _, err := NewCertSource(context.Background(), nil, SourceOptions{}); err == nil {
		t.Error("nil issuer accepted")
	}
}

// Many concurrent handshakes during a renewal share one issuance.
func TestCertSourceConcurrent(t *testing.T) {
	env := newSimEnv(t)
	iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	s := newSource(t, iss, clk, &logBuf{})
	clk.Set(t0.Add(3 * time.Hour)) // expired: everyone waits for one renewal
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Certificate(context.Background())
			if err == nil && !clk.Now().Before(c.Leaf.NotAfter) {
				err = errors.New("expired certificate served")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := iss.n.Load(); n != 2 {
		t.Fatalf("%d issues, want 2 (initial + one shared renewal)", n)
	}
}

// TestCertSourceHelloWithoutContext: a ClientHelloInfo made outside a
// handshake has no context (the dashboard asks for the certificate it will
// serve that way); with the certificate expired, GetCertificate waits for
// the renewal instead of failing on the nil context.
func TestCertSourceHelloWithoutContext(t *testing.T) {
	env := newSimEnv(t)
	iss := &countingIssuer{Issuer: env.issuer(t, mrGood, false)}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	s := newSource(t, iss, clk, &logBuf{})
	first, err := s.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || first == nil {
		t.Fatalf("current certificate: %v %v", first, err)
	}
	clk.Set(t0.Add(3 * time.Hour)) // expired: the call must wait for a renewal
	c, err := s.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil || c == first || !clk.Now().Before(c.Leaf.NotAfter) {
		t.Fatalf("after expiry: %v %v, want a renewed certificate", c, err)
	}
	if _, err := s.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil {
		t.Fatalf("client certificate without a context: %v", err)
	}
}
