package kms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/ratls"
)

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if err := SetupSimulated(ctx, dir, SetupOptions{Listen: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := SetupSimulated(ctx, dir, SetupOptions{}); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("setup into a used directory: %v", err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base, err := os.ReadFile(filepath.Join(dir, "kms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, body, want string }{
		{"unknown.yaml", string(base) + "listne: x\n", "field listne not found"},
		{"noname.yaml", "listen: x\n", "name: member name is empty"},
	} {
		_, err := LoadConfig(write(c.name, c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: %v, want an error naming the file and %q", c.name, err, c.want)
		}
	}
	// ear_verifiers is relative to the file.
	if c, err := LoadConfig(write("ear.yaml", string(base)+"ear_verifiers: keys/verifiers.pem\n")); err != nil || c.EARVerifiers != filepath.Join(dir, "keys", "verifiers.pem") {
		t.Errorf("ear_verifiers: %q %v", c.EARVerifiers, err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file loaded")
	}
	// Serve refuses incomplete or inconsistent configurations before
	// listening.
	serve := func(mut func(*Config)) error {
		c, err := LoadConfig(filepath.Join(dir, "kms.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		mut(c)
		return Serve(ctx, c, ServeOptions{Logger: quiet()})
	}
	for _, c := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.RootKey = "" }, "root_key is not set"},
		{func(c *Config) { c.RootKey = "pkcs11:whatever" }, "has no '='"},
		{func(c *Config) { c.RootKey = "vault:x" }, `unknown root key kind "vault"`},
		{func(c *Config) { c.RootKey = "file:" + filepath.Join(t.TempDir(), "missing.key") }, "missing.key"},
		{func(c *Config) { c.Listen = "" }, "listen is not set"},
		{func(c *Config) { c.Identity.Cert = "pki/admin.crt"; c.Identity.Key = "pki/admin-key.pem" }, `names "admin", not "kms"`},
		{func(c *Config) { c.Store.Driver = "oracle" }, `driver "oracle"`},
		{func(c *Config) { c.EARVerifiers = filepath.Join(dir, "no-verifiers.pem") }, "ear_verifiers: ear verifier keys: open"},
		{func(c *Config) { c.EARVerifiers = filepath.Join(dir, "kms.yaml") }, "no PEM PUBLIC KEY block"},
		{func(c *Config) { c.EARVerifiers = filepath.Join(dir, "root.key") }, "ear_verifiers"},
	} {
		if err := serve(c.mut); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve: %v, want %q", err, c.want)
		}
	}
	// A client whose policy says nothing about the broker's role refuses to
	// dial.
	cc, err := LoadConfig(filepath.Join(dir, "col-1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cc.Policy = "policies/broker.yaml"
	if _, err := Dial(ctx, cc, quiet()); err == nil || !strings.Contains(err.Error(), "has no role kms") {
		t.Errorf("dial with a policy lacking role kms: %v", err)
	}
}

// TestServeHandsItsRATLSCertificateToTheUI: with ServeOptions.UI, Serve
// gives the dashboard the broker party's own RA-TLS certificate (chained to
// its federation identity, carrying evidence), and a UI that fails to start
// stops Serve with its error.
func TestServeHandsItsRATLSCertificateToTheUI(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := SetupSimulated(ctx, dir, SetupOptions{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(filepath.Join(dir, "kms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var leaf *x509.Certificate
	uiErr := errors.New("ui: listen refused")
	err = Serve(ctx, c, ServeOptions{Logger: quiet(), UI: func(_ context.Context, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (func(), error) {
		cert, err := getCert(&tls.ClientHelloInfo{})
		if err != nil {
			return nil, err
		}
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
		return nil, uiErr
	}})
	if !errors.Is(err, uiErr) {
		t.Fatalf("Serve with a failing UI: %v, want the UI's error", err)
	}
	if leaf == nil {
		t.Fatal("the UI got no certificate")
	}
	if leaf.Issuer.CommonName != "kms" {
		t.Errorf("dashboard certificate issued by %q, want the broker's identity \"kms\"", leaf.Issuer.CommonName)
	}
	var evidence bool
	for _, e := range leaf.Extensions {
		evidence = evidence || e.Id.Equal(ratls.OIDTaggedEvidence)
	}
	if !evidence {
		t.Error("dashboard certificate carries no RA-TLS evidence extension")
	}
}
