package dashboard_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/internal/testlog"
)

type fakeFL struct {
	mu   sync.Mutex
	runs []dashboard.FLRun
}

func (f *fakeFL) FLRuns(context.Context) ([]dashboard.FLRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs, nil
}

type failingFed struct{}

func (failingFed) Federation(context.Context) (*dashboard.Federation, error) {
	return nil, errors.New("pki: bundle: signature does not verify")
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func serve(t *testing.T, o dashboard.Options) (*dashboard.Dashboard, *dashboard.Server) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testlog.Discard()
	}
	d, err := dashboard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := dashboard.Serve(ctx, d, dashboard.ServeOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return d, s
}

// client trusts the server's self-signed certificate by its fingerprint
// only, keeps cookies, does not follow redirects, and presents cert if set.
func client(t *testing.T, s *dashboard.Server, cert *tls.Certificate) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	tc := &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		if got := dashboard.Fingerprint(cs.PeerCertificates[0]); got != s.Fingerprint {
			return errors.New("server certificate " + got + ", want " + s.Fingerprint)
		}
		return nil
	}}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, method, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestAccess: nothing without a login; the token works once and gives an
// HttpOnly, Secure, SameSite=Strict session that expires; every method but
// GET and HEAD is 405; the security headers are on every answer.
func TestAccess(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	d, s := serve(t, dashboard.Options{FL: &fakeFL{}, Now: clk.now})
	c := client(t, s, nil)
	for _, p := range append(dashboard.Pages(), "/events", "/static/app.js") {
		resp, body := get(t, c, "GET", s.URL()+p)
		if resp.StatusCode != 401 || !strings.Contains(body, "not logged in") {
			t.Errorf("GET %s without login: %d %q, want 401", p, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, c, "GET", s.URL()+"/login?token=x"+d.LoginToken()); resp.StatusCode != 403 {
		t.Errorf("wrong token: %d, want 403", resp.StatusCode)
	}
	login := d.LoginURL(s.URL())
	resp, _ := get(t, c, "GET", login)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == dashboard.SessionCookie {
			sc = k
		}
	}
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" {
		t.Fatalf("session cookie %+v, want HttpOnly, Secure, SameSite=Strict, Path=/", sc)
	}
	if d.LoginToken() != "" {
		t.Error("the token is still valid after its use")
	}
	if resp, _ := get(t, client(t, s, nil), "GET", login); resp.StatusCode != 403 {
		t.Errorf("second use of the token: %d, want 403", resp.StatusCode)
	}
	for _, p := range dashboard.Pages() {
		resp, body := get(t, c, "GET", s.URL()+p)
		if resp.StatusCode != 200 || !strings.Contains(body, `<main id="content"`) {
			t.Errorf("GET %s logged in: %d", p, resp.StatusCode)
		}
		h := resp.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", p, h)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, " onclick=") {
			t.Errorf("%s: inline script or style", p)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		resp, _ := get(t, c, m, s.URL()+"/fl")
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /fl: %d Allow %q, want 405 GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	for _, p := range []string{"/fl", "/events"} { // HEAD of the event stream answers, it does not stream
		if resp, _ := get(t, c, "HEAD", s.URL()+p); resp.StatusCode != 200 {
			t.Errorf("HEAD %s: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, c, "GET", s.URL()+"/static/templates.html"); resp.StatusCode != 404 {
		t.Errorf("templates served as a static file: %d", resp.StatusCode)
	}
	clk.add(dashboard.SessionLifetime)
	if resp, body := get(t, c, "GET", s.URL()+"/fl"); resp.StatusCode != 401 || !strings.Contains(body, "expired") {
		t.Errorf("after the session's lifetime: %d %q, want 401", resp.StatusCode, body)
	}
}

// TestClientCertificate: a certificate the verifier accepts logs in
// without a token; one it refuses is 403 with its reason; with no
// verifier every certificate is refused.
func TestClientCertificate(t *testing.T) {
	member, err := dashboard.SelfSigned("localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := dashboard.SelfSigned("localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	verify := func(chain []*x509.Certificate, _ time.Time) (string, error) {
		if chain[0].Equal(member.Leaf) {
			return "col-1", nil
		}
		return "", errors.New("not a certificate of federation q")
	}
	_, s := serve(t, dashboard.Options{FL: &fakeFL{}, ClientVerifier: verify, NoToken: true})
	if resp, _ := get(t, client(t, s, member), "GET", s.URL()+"/fl"); resp.StatusCode != 200 {
		t.Errorf("member certificate: %d, want 200", resp.StatusCode)
	}
	if resp, body := get(t, client(t, s, other), "GET", s.URL()+"/fl"); resp.StatusCode != 403 || !strings.Contains(body, "not a certificate of federation q") {
		t.Errorf("foreign certificate: %d %q, want 403 with the reason", resp.StatusCode, body)
	}
	if resp, _ := get(t, client(t, s, nil), "GET", s.URL()+"/login?token="); resp.StatusCode != 403 {
		t.Errorf("login without a token configured: %d, want 403", resp.StatusCode)
	}
	_, s2 := serve(t, dashboard.Options{FL: &fakeFL{}})
	if resp, _ := get(t, client(t, s2, member), "GET", s2.URL()+"/fl"); resp.StatusCode != 403 {
		t.Errorf("certificate without a verifier: %d, want 403", resp.StatusCode)
	}
	if _, err := dashboard.New(dashboard.Options{NoToken: true}); err == nil {
		t.Error("a dashboard nobody can log in to was accepted")
	}
}

// TestEventsAndSourceErrors: the event stream says hello, then update on
// every Notify, and the page re-read shows the new round; a failing source
// is a red line on its page, not a failed page.
func TestEventsAndSourceErrors(t *testing.T) {
	fl := &fakeFL{}
	d, s := serve(t, dashboard.Options{FL: fl, Federation: failingFed{}})
	c := client(t, s, nil)
	if resp, _ := get(t, c, "GET", d.LoginURL(s.URL())); resp.StatusCode != 303 {
		t.Fatal("login failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: content type %q", ct)
	}
	events := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- e
			}
		}
		close(events)
	}()
	next := func() string {
		select {
		case e := <-events:
			return e
		case <-ctx.Done():
			t.Fatal("no event")
		}
		return ""
	}
	if e := next(); e != "hello" {
		t.Fatalf("first event %q, want hello", e)
	}
	fl.mu.Lock()
	fl.runs = []dashboard.FLRun{{Name: "r1", Rounds: []dashboard.Round{{Round: 1, Seconds: 1.5, Participants: []string{"a"},
		Accepted: []string{"a"}, Metrics: map[string]float64{"val_accuracy": 0.875}}}}}
	fl.mu.Unlock()
	d.Notify()
	if e := next(); e != "update" {
		t.Fatalf("event after Notify %q, want update", e)
	}
	_, body := get(t, c, "GET", s.URL()+"/fl?partial=1")
	if !strings.Contains(body, `data-metric="val_accuracy">0.8750<`) || strings.Contains(body, "<html") {
		t.Errorf("partial /fl after the update lacks the round or is a whole page:\n%s", body)
	}
	_, body = get(t, c, "GET", s.URL()+"/federation")
	if !strings.Contains(body, `class="error">federation: pki: bundle: signature does not verify<`) {
		t.Errorf("federation page does not show its source's error:\n%s", body)
	}
}

func TestScale(t *testing.T) {
	for _, c := range []struct {
		in     []float64
		lo, hi float64
	}{{[]float64{0, 1}, -0.05, 1.05}, {[]float64{2, 2}, 1.5, 2.5}, {nil, 0, 1}} {
		lo, hi := dashboard.Scale(c.in)
		if abs(lo-c.lo) > 1e-12 || abs(hi-c.hi) > 1e-12 {
			t.Errorf("Scale(%v) = %v, %v, want %v, %v", c.in, lo, hi, c.lo, c.hi)
		}
	}
	if y := dashboard.Y(1.05, -0.05, 1.05); abs(y-16) > 1e-9 {
		t.Errorf("top of the scale at y=%v, want the plot's top 16", y)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestCloseEndsOpenStreams: Close does not wait for an open event stream
// (a browser left open must not hold a service's shutdown).
func TestCloseEndsOpenStreams(t *testing.T) {
	d, err := dashboard.New(dashboard.Options{FL: &fakeFL{}, Logger: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := dashboard.Serve(context.Background(), d, dashboard.ServeOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, s, nil)
	if resp, _ := get(t, c, "GET", d.LoginURL(s.URL())); resp.StatusCode != 303 {
		t.Fatal("login failed")
	}
	resp, err := c.Get(s.URL() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %v with an event stream open", el)
	}
}

// TestServeUnderGetCertificate: with GetCertificate the pages are served
// under the certificate it gives (a party's RA-TLS certificate), the
// start line says how to check it, and a failing GetCertificate is an error
// at start, not at the first handshake.
func TestServeUnderGetCertificate(t *testing.T) {
	d, err := dashboard.New(dashboard.Options{FL: &fakeFL{}, Logger: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := dashboard.SelfSigned("127.0.0.1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	s, err := dashboard.Serve(ctx, d, dashboard.ServeOptions{Addr: "127.0.0.1:0",
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { calls.Add(1); return cert, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	if s.Fingerprint != dashboard.Fingerprint(leaf) {
		t.Errorf("fingerprint %s, want the GetCertificate certificate's", s.Fingerprint)
	}
	if got := s.Describe("aggregator"); !strings.Contains(got, "RA-TLS certificate SHA-256 "+s.Fingerprint) ||
		!strings.Contains(got, "teeml attest verify-server "+s.Addr()+" --role aggregator") {
		t.Errorf("Describe: %q", got)
	}
	var served []byte
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error { served = cs.PeerCertificates[0].Raw; return nil }}}}
	resp, err := c.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if string(served) != string(leaf.Raw) || calls.Load() < 2 {
		t.Errorf("handshake served another certificate (GetCertificate called %d times)", calls.Load())
	}
	_, plain := serve(t, dashboard.Options{FL: &fakeFL{}})
	if got := plain.Describe("x"); strings.Contains(got, "RA-TLS") || !strings.Contains(got, "server certificate SHA-256 "+plain.Fingerprint) {
		t.Errorf("Describe of a self-signed dashboard: %q", got)
	}
	if _, err := dashboard.Serve(ctx, d, dashboard.ServeOptions{Addr: "127.0.0.1:0",
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("no evidence") }}); err == nil ||
		!strings.Contains(err.Error(), "dashboard: server certificate: no evidence") {
		t.Errorf("failing GetCertificate: %v", err)
	}
}
