package queue

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testPKI writes a CA and a leaf signed by it (server: IP SAN 127.0.0.1;
// client: client auth) as PEM files in dir.
type testPKI struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newTestPKI(t *testing.T, dir, name string) *testPKI {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	f := filepath.Join(dir, name+"-ca.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return &testPKI{ca: ca, caKey: k, caFile: f}
}

func (p *testPKI) leaf(t *testing.T, dir, name string, server bool) (certFile, keyFile string, c tls.Certificate) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	cp, kp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
	os.WriteFile(certFile, cp, 0o644)
	os.WriteFile(keyFile, kp, 0o600)
	c, err = tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c
}

// TestExternalNATSOverTLS: queue mode reaches an external NATS server (a
// real nats-server, in process, on loopback) that requires TLS and a client
// certificate: with the CA and the client certificate it connects and sets
// up its streams; without the client certificate, or trusting another CA,
// it is refused; a certificate without its key, TLS settings for the
// embedded server, and an embedded server off loopback are one-line
// errors.
func TestExternalNATSOverTLS(t *testing.T) {
	dir := t.TempDir()
	pk := newTestPKI(t, dir, "nats")
	_, _, srvCert := pk.leaf(t, dir, "nats-server", true)
	cliCert, cliKey, _ := pk.leaf(t, dir, "teeml-queue", false)
	other := newTestPKI(t, dir, "other")
	pool := x509.NewCertPool()
	pool.AddCert(pk.ca)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "js"), NoSigs: true, NoLog: true,
		TLS: true, TLSVerify: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := ns.ClientURL()

	nc, js, err := Connect(url, Auth{CA: pk.caFile, Cert: cliCert, Key: cliKey})
	if err != nil {
		t.Fatalf("with CA and client certificate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Setup(ctx, js, 0); err != nil {
		t.Fatalf("streams over TLS: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("connection not over TLS")
	}
	nc.Close()

	if nc, _, err := Connect(url, Auth{CA: pk.caFile}); err == nil {
		nc.Close()
		t.Error("connected without a client certificate")
	}
	if nc, _, err := Connect(url, Auth{CA: other.caFile, Cert: cliCert, Key: cliKey}); err == nil {
		nc.Close()
		t.Error("connected trusting another CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong CA: %v, want it to name the certificate", err)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{func() error { _, _, err := Connect(url, Auth{Cert: cliCert}); return err }(), "client certificate and key go together"},
		{func() error { _, _, err := Connect(url, Auth{CA: filepath.Join(dir, "missing.pem")}); return err }(), "NATS CA: stat "},
		{Serve(ctx, ServeOptions{Repository: "x", StoreDir: dir, Auth: Auth{CA: pk.caFile}}), "not the embedded server"},
		{func() error { _, err := StartEmbedded(filepath.Join(dir, "e"), "0.0.0.0:0"); return err }(), "listens on loopback only"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) || strings.Contains(tc.err.Error(), "\n") {
			t.Errorf("%v, want one line containing %q", tc.err, tc.want)
		}
	}
}
