package main

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/pki"
)

// oneLineErr checks a failed run: non-zero exit, one "teeml: " line on
// stderr (after any log lines) mentioning every want.
func oneLineErr(t *testing.T, what, stderr string, code int, wants ...string) {
	t.Helper()
	if code == 0 {
		t.Fatalf("%s: exit 0, want failure", what)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "teeml: ") || strings.Contains(stderr, "panic") {
		t.Fatalf("%s: stderr %q, want a final one-line teeml: error", what, stderr)
	}
	for _, w := range wants {
		if !strings.Contains(last, w) {
			t.Errorf("%s: error %q does not mention %q", what, last, w)
		}
	}
}

func TestPKIFlowThroughBinary(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	ok := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(t, bin, append(args, "--log-level", "error")...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}
	fail := func(args ...string) (string, int) {
		t.Helper()
		_, errOut, code := run(t, bin, append(args, "--log-level", "error")...)
		return errOut, code
	}
	ca := p("ca")

	out := ok("pki", "init", "--dir", ca, "--federation", "acme")
	if !strings.Contains(out, `federation "acme"`) || !strings.Contains(out, "sha256 ") {
		t.Fatalf("init: %s", out)
	}
	e, code := fail("pki", "init", "--dir", ca)
	oneLineErr(t, "init twice", e, code, "not empty", "refusing to overwrite")

	ok("attest", "sim-key", "-o", p("sim.pem"))
	csrArgs := func(name, role string) []string {
		return []string{"pki", "csr", "--name", name, "--role", role, "--key-out", p(name + "-key.pem"), "-o", p(name + ".csr"),
			"--platform", "sim", "--sim-key", p("sim.pem"), "--sim-mr-enclave", sgxMREnclave}
	}
	out = ok(csrArgs("col-1", "collaborator")...)
	if !strings.Contains(out, `CSR for "col-1" (collaborator) with sgx evidence SIMULATED`) {
		t.Fatalf("csr: %s", out)
	}
	if fi, err := os.Stat(p("col-1-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity key mode: %v %v", fi.Mode(), err)
	}
	e, code = fail(csrArgs("col-1", "collaborator")...)
	oneLineErr(t, "csr over an existing key", e, code, "refusing to replace an identity key")
	e, code = fail(csrArgs("col-2", "boss")...)
	oneLineErr(t, "csr unknown role", e, code, `--role: unknown role "boss"`)
	e, code = fail("pki", "csr", "--name", "col-2", "--role", "collaborator", "--key-out", p("x.pem"), "--platform", "sim")
	oneLineErr(t, "csr sim without key", e, code, "needs --sim-key")
	if _, err := os.Stat(p("x.pem")); err == nil {
		t.Error("failed csr left an identity key behind")
	}

	pol := writeFile(t, dir, "policy.yaml", "roles:\n  collaborator:\n    allow_simulation: true\n    sgx:\n      - mr_enclave: "+sgxMREnclave+
		"\n  aggregator:\n    sgx:\n      - mr_enclave: "+sgxMREnclave+"\n")
	certify := []string{"pki", "certify", "--dir", ca, "--csr", p("col-1.csr")}
	e, code = fail(certify...)
	oneLineErr(t, "certify without policy", e, code, "no attestation policy", "--no-policy")
	e, code = fail(append(certify, "--policy", pol)...)
	oneLineErr(t, "certify sim without sim key", e, code, `certify "col-1"`, "no trusted simulation key")
	e, code = fail(append(certify, "--policy", pol, "--no-policy")...)
	oneLineErr(t, "both", e, code, "not both")
	out = ok(append(certify, "--policy", pol, "--sim-key", p("sim.pem.pub"))...)
	for _, want := range []string{`certified "col-1" as collaborator`, "wrote " + p("col-1.crt"), "mr_enclave " + sgxMREnclave,
		"SIMULATED", `policy: peer "col-1" role collaborator: accepted`} {
		if !strings.Contains(out, want) {
			t.Errorf("certify output lacks %q:\n%s", want, out)
		}
	}
	e, code = fail(append(certify, "--policy", pol, "--sim-key", p("sim.pem.pub"))...)
	oneLineErr(t, "duplicate", e, code, `certify "col-1"`, "name already active")

	// The aggregator role does not allow simulation; --no-policy does, loudly.
	ok(csrArgs("agg", "aggregator")...)
	certAgg := []string{"pki", "certify", "--dir", ca, "--csr", p("agg.csr"), "--sim-key", p("sim.pem.pub")}
	e, code = fail(append(certAgg, "--policy", pol)...)
	oneLineErr(t, "sim for aggregator", e, code, `certify "agg" refused`, "simulated evidence refused (allow_simulation: false)")
	out, errOut, code := run(t, bin, append(certAgg, "--no-policy", "--log-level", "error")...)
	if code != 0 || !strings.Contains(errOut, "NO ATTESTATION POLICY APPLIED") || !strings.Contains(out, "policy: NONE") {
		t.Fatalf("--no-policy: exit %d\n%s%s", code, out, errOut)
	}

	out = ok("pki", "list", "--dir", ca)
	if !strings.Contains(out, "col-1  collaborator  active") || !strings.Contains(out, "NO-POLICY") || strings.Count(out, "\n") != 3 {
		t.Fatalf("list:\n%s", out)
	}
	var members []pki.Member
	if err := json.Unmarshal([]byte(ok("pki", "list", "--dir", ca, "--json")), &members); err != nil || len(members) != 2 ||
		members[0].Name != "col-1" || !members[0].Evidence.Simulated {
		t.Fatalf("list --json: %v %+v", err, members)
	}

	// The identity certificate and key the CLI wrote verify with the bundle
	// the CLI wrote, as a party would check them.
	bundle := p("federation.bundle")
	out = ok("pki", "bundle", "--dir", ca, "-o", bundle)
	if !strings.Contains(out, `federation "acme", 2 active and 0 revoked members`) {
		t.Fatalf("bundle: %s", out)
	}
	out = ok("pki", "check-bundle", "--bundle", bundle, "--root", filepath.Join(ca, "root.pem"))
	if !strings.Contains(out, "OK: ") || !strings.Contains(out, "agg") {
		t.Fatalf("check-bundle: %s", out)
	}
	fed, err := pki.LoadFederation(bundle, filepath.Join(ca, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	chain := cliChain(t, p("col-1.crt"), p("col-1-key.pem"))
	if id, err := fed.VerifyIdentity(chain, time.Now()); err != nil || id.Name != "col-1" || id.Role != "collaborator" {
		t.Fatalf("CLI-issued identity: %+v %v", id, err)
	}

	out = ok("pki", "revoke", "--dir", ca, "col-1", "--reason", "keyCompromise")
	if !strings.Contains(out, `revoked "col-1" (collaborator`) {
		t.Fatalf("revoke: %s", out)
	}
	e, code = fail("pki", "revoke", "--dir", ca, "col-1")
	oneLineErr(t, "revoke twice", e, code, "already revoked")
	e, code = fail("pki", "revoke", "--dir", ca, "nobody")
	oneLineErr(t, "revoke unknown", e, code, `revoke "nobody": no such member`)
	if out = ok("pki", "list", "--dir", ca); !strings.Contains(out, "revoked (keyCompromise)") {
		t.Fatalf("list after revoke:\n%s", out)
	}
	bdir := p("out")
	if err := os.Mkdir(bdir, 0o755); err != nil {
		t.Fatal(err)
	}
	out = ok("pki", "bundle", "--dir", ca, "-o", bdir)
	if !strings.Contains(out, filepath.Join(bdir, "federation.bundle")) || !strings.Contains(out, "1 active and 1 revoked") {
		t.Fatalf("bundle into a directory: %s", out)
	}
	fed, err = pki.LoadFederation(filepath.Join(bdir, "federation.bundle"), filepath.Join(ca, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fed.VerifyIdentity(chain, time.Now()); err == nil || err.Error() != `peer "col-1": certificate revoked` {
		t.Fatalf("after revocation: %v", err)
	}

	// A different CA's root is not the pinned one.
	ok("pki", "init", "--dir", p("ca2"))
	e, code = fail("pki", "check-bundle", "--bundle", bundle, "--root", filepath.Join(p("ca2"), "root.pem"))
	oneLineErr(t, "check-bundle wrong root", e, code, "is not the pinned root")
	e, code = fail("pki", "list", "--dir", dir)
	oneLineErr(t, "list non-workspace", e, code, "not a CA workspace")
	if err := os.Chmod(filepath.Join(ca, "signing-ca-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, code = fail("pki", "list", "--dir", ca)
	oneLineErr(t, "readable key", e, code, "signing-ca-key.pem", "want 0600")
}

// cliChain signs a leaf with the identity key file under the identity
// certificate file, as ratls does at connect time.
func cliChain(t *testing.T, certPath, keyPath string) []*x509.Certificate {
	t.Helper()
	idCert, err := pki.LoadCertificate(certPath)
	if err != nil {
		t.Fatal(err)
	}
	idKey, err := pki.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := pki.GenerateKey(pki.P256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, idCert, &leafKey.PublicKey, idKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{leaf, idCert}
}
