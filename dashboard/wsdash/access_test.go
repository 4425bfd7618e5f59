package wsdash_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/dashboard/wsdash"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
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

// TestServedUnderItsPartysRATLSCertificate: the standalone dashboard starts
// its own party (party/dashboard.yaml of the workspace, role dashboard)
// and serves its pages under that party's RA-TLS certificate: a client
// checking the server against a policy for the dashboard's measurement
// accepts it and gets the pin of the certificate the pages come with; a
// policy that expects another measurement refuses it; a workspace without
// a dashboard party is refused at start, naming the file.
func TestServedUnderItsPartysRATLSCertificate(t *testing.T) {
	ws := quickstart(t)
	r := startDashboard(t, ws)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := party.LoadAttested(party.ConfigFiles(party.ConfigFile(ws, "col-1")), "collaborator", testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	good, err := policy.Parse(partysim.Policy(wsdash.Role), "dashboard policy")
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(r.URL(), "https://")
	vp, pin, err := client.VerifyServer(ctx, addr, party.Peer{Role: wsdash.Role, Policy: good}, testlog.Discard())
	if err != nil {
		t.Fatalf("the dashboard's RA-TLS certificate against the dashboard policy: %v", err)
	}
	if !vp.Claims.Simulated {
		t.Errorf("claims of a simulated workspace's dashboard: Simulated = false")
	}
	// The pages themselves come under the certificate that was verified.
	var served string
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
			served = "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
			return nil
		}}}}
	resp, err := c.Get(r.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if served != pin {
		t.Errorf("pages served under key %s, verified key %s", served, pin)
	}
	wrong, err := policy.Parse(bytes.Replace(partysim.Policy("collaborator"), []byte("  collaborator:"), []byte("  "+wsdash.Role+":"), 1), "wrong policy")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.VerifyServer(ctx, addr, party.Peer{Role: wsdash.Role, Policy: wrong}, testlog.Discard()); err == nil {
		t.Error("a policy for another measurement accepted the dashboard")
	}

	bare := t.TempDir()
	_, err = wsdash.Start(ctx, wsdash.Options{Workspace: bare, Addr: "127.0.0.1:0", Logger: testlog.Discard()})
	if want := "dashboard: party configuration " + filepath.Join(bare, "party", "dashboard.yaml"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("workspace without a dashboard party: err = %v, want %q", err, want)
	}
}
