package wsdash_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMemberCertificateAndMetrics: over HTTPS, a member's identity
// certificate of the quickstart's federation is a login; the key broker's
// identity works too, no certificate is 401; the dashboard's own metrics
// count the answers.
func TestMemberCertificateAndMetrics(t *testing.T) {
	ws := quickstart(t)
	r := startDashboard(t, ws)
	do := func(cert *tls.Certificate, path string) (int, string) {
		t.Helper()
		tc := &tls.Config{InsecureSkipVerify: true} // the self-signed server certificate; the client side is under test
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := c.Get(r.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, name := range []string{"col-1", "kms-admin"} {
		c, err := tls.LoadX509KeyPair(filepath.Join(ws, "pki", name+".crt"), filepath.Join(ws, "pki", name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if code, body := do(&c, "/federation"); code != 200 || !strings.Contains(body, `data-member="col-2"`) {
			t.Errorf("%s's certificate: %d, want 200 and the member list", name, code)
		}
	}
	if code, _ := do(nil, "/federation"); code != 401 {
		t.Errorf("no certificate: %d, want 401", code)
	}
	resp, err := http.Get("http://" + r.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`teeml_dashboard_requests_total{code="200",page="/federation"} 2`, `teeml_dashboard_refusals_total{reason="unauthenticated"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s:\n%s", want, b)
		}
	}
	if resp, err := http.Get("http://" + r.MetricsAddr() + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	}
}
