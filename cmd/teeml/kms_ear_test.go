package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKMSCLIAttestationResult runs a broker process that trusts an EAR
// verifier key (ear_verifiers) and sends results through `teeml kms
// datakey --attestation-result`. With simulated evidence a result is
// never affirming, so the broker refuses after checking the signature;
// a result signed by another verifier is refused at the signature.
func TestKMSCLIAttestationResult(t *testing.T) {
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "kms")
	addr := freeAddr(t)
	if out, errOut, code := run(t, bin, "kms", "setup-sim", "--dir", dir, "--listen", addr); code != 0 {
		t.Fatalf("setup-sim exit %d: %s %s", code, out, errOut)
	}
	priv, pub := earKeys(t, dir)
	rogue, _ := earKeys(t, t.TempDir())
	appendFile(t, filepath.Join(dir, "kms.yaml"), "ear_verifiers: "+filepath.Base(pub)+"\n")
	startBroker(t, bin, filepath.Join(dir, "kms.yaml"))
	admin, col := filepath.Join(dir, "admin.yaml"), filepath.Join(dir, "col-1.yaml")
	cli := func(args ...string) (string, string, int) {
		return run(t, bin, append(append([]string{"kms"}, args...), "--log-level", "error")...)
	}
	rel, err := os.ReadFile(filepath.Join(dir, "release.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	relEAR := writeFile(t, dir, "release-ear.yaml", string(rel)+"accept_ear:\n  max_age: 10m\n")
	if out, errOut, code := cli("key", "create", "--config", admin, "--key", "ekey", "--policy", relEAR); code != 0 {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	// Simulated evidence bound to col-1's identity key, appraised by the
	// verifier with a policy that allows simulation.
	idPEM, err := os.ReadFile(filepath.Join(dir, "pki", "col-1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(idPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	simKey := filepath.Join(dir, "verifier-sim.pem")
	if _, e, code := run(t, bin, "attest", "sim-key", "-o", simKey); code != 0 {
		t.Fatal(e)
	}
	q := filepath.Join(dir, "col-1.quote")
	if _, e, code := run(t, bin, "attest", "quote", "--platform", "sim", "--sim-key", simKey, "--report-data", hex.EncodeToString(h[:]), "--sim-mr-enclave", sgxMREnclave, "-o", q); code != 0 {
		t.Fatal(e)
	}
	allow := writeFile(t, dir, "verifier-policy.yaml", "roles:\n  collaborator:\n    allow_simulation: true\n    sgx:\n      - mr_enclave: "+sgxMREnclave+"\n")
	for _, c := range []struct{ key, want string }{
		{priv, "ear.status contraindicated, want affirming"},
		{rogue, "signature not by a trusted verifier key"},
	} {
		tok, e, code := run(t, bin, "attest", "verify", "--evidence", q, "--sim-key", simKey+".pub", "--policy", allow, "--output", "ear", "--ear-key", c.key)
		if code != 0 {
			t.Fatalf("verify: exit %d %s", code, e)
		}
		tf := writeFile(t, t.TempDir(), "result.jwt", tok)
		_, errOut, code := cli("datakey", "--config", col, "--key", "ekey", "--out", filepath.Join(dir, "dk"), "--attestation-result", tf)
		if code != 1 || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, `generate-data-key refused: key "ekey"`) {
			t.Errorf("datakey with a result: exit %d, stderr %q, want %q", code, errOut, c.want)
		}
	}
	// Not a token: refused before dialling.
	junk := writeFile(t, dir, "junk.jwt", "not a token")
	if _, errOut, code := cli("datakey", "--config", col, "--key", "ekey", "--out", filepath.Join(dir, "dk"), "--attestation-result", junk); code != 1 || !strings.Contains(errOut, "not a JWT") {
		t.Errorf("junk result: exit %d %q", code, errOut)
	}
	// Without a result, col-1's own (simulated, allowed) evidence releases the key.
	if out, errOut, code := cli("datakey", "--config", col, "--key", "ekey", "--out", filepath.Join(dir, "dk")); code != 0 {
		t.Fatalf("datakey on evidence: exit %d %s %s", code, out, errOut)
	}
}
