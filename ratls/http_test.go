package ratls

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveHTTP runs an HTTPServer on 127.0.0.1:0 whose handler answers the
// verified client's name, or "none".
func serveHTTP(t *testing.T, cfg TransportConfig) string {
	t.Helper()
	h, err := NewHTTPServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: h.TLSConfig(), ConnContext: h.ConnContext, ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := HTTPPeer(r); p != nil {
				io.WriteString(w, p.Name()+" "+p.Role())
				return
			}
			io.WriteString(w, "none")
		})}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(lis, "", "") }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "https://" + lis.Addr().String()
}

func getWith(url string, cert *tls.Certificate) (string, error) {
	tc := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	res, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

// TestHTTPClientIfPresented: over HTTP, a client certificate is optional;
// one that is presented is verified (a federation member is named to the
// handler, a wrong measurement ends the handshake), none means an
// unverified client; in VerifyServer mode none is asked for.
func TestHTTPClientIfPresented(t *testing.T) {
	l := newLink(t)
	url := serveHTTP(t, TransportConfig{Certificates: StaticCertificate{&l.server}, Verifier: l.verifier, Mode: VerifyClientIfPresented, Logger: rawLogger(l.serverLog)})
	if got, err := getWith(url, nil); err != nil || got != "none" {
		t.Errorf("no certificate: %q %v", got, err)
	}
	if got, err := getWith(url, &l.client); err != nil || got != "col-1 collaborator" {
		t.Errorf("member certificate: %q %v", got, err)
	}
	bad := refusals[0].make(t, l, "col-2", "collaborator")
	if got, err := getWith(url, &bad); err == nil {
		t.Errorf("a client with the wrong measurement was served: %q", got)
	}
	if logged := waitLog(t, l.serverLog, "refused"); !strings.Contains(logged, `peer "col-2": role collaborator: mr_enclave`) {
		t.Errorf("server log %q", logged)
	}

	url = serveHTTP(t, TransportConfig{Certificates: StaticCertificate{&l.server}, Mode: VerifyServer, Logger: quiet()})
	if got, err := getWith(url, &l.client); err != nil || got != "none" {
		t.Errorf("server-only mode: %q %v", got, err)
	}
	for _, tc := range []struct {
		cfg  TransportConfig
		want string
	}{
		{TransportConfig{Verifier: l.verifier}, "no Certificates"},
		{TransportConfig{Certificates: StaticCertificate{&l.server}, Mode: VerifyClientIfPresented}, "needs a Verifier"},
		{TransportConfig{Certificates: StaticCertificate{&l.server}, Verifier: l.verifier, Mode: VerifyClient}, "not offered over HTTP"},
	} {
		if _, err := NewHTTPServer(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
}

// TestGRPCClientIfPresented: the same over gRPC credentials.
func TestGRPCClientIfPresented(t *testing.T) {
	l := newLink(t)
	addr := serve(t, TransportConfig{Certificates: StaticCertificate{&l.server}, Verifier: l.verifier, Mode: VerifyClientIfPresented, Logger: rawLogger(l.serverLog)})
	got, _, err := who(t, addr, TransportConfig{Verifier: l.verifier, Mode: VerifyServer, Logger: quiet()})
	if err != nil || !strings.HasPrefix(got, "unverified") || !strings.HasSuffix(got, "certs=0") {
		t.Errorf("no certificate: %q %v", got, err)
	}
	got, _, err = who(t, addr, l.clientCfg(l.client, l.verifier))
	if err != nil || !strings.HasPrefix(got, "name=col-1 role=collaborator") {
		t.Errorf("member certificate: %q %v", got, err)
	}
	bad := refusals[0].make(t, l, "col-2", "collaborator")
	if got, _, err := who(t, addr, TransportConfig{Certificates: StaticCertificate{&bad}, Verifier: l.verifier, Logger: quiet()}); err == nil {
		t.Errorf("a client with the wrong measurement was served: %q", got)
	}
	if _, err := NewClientCredentials(TransportConfig{Certificates: StaticCertificate{&l.client}, Verifier: l.verifier, Mode: VerifyClientIfPresented}); err == nil ||
		!strings.Contains(err.Error(), "is for servers") {
		t.Errorf("client credentials in server-only mode: %v", err)
	}
}
