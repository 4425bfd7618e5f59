package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest/ear"
	"github.com/teeml/teeml/internal/ecpem"
)

const tdxMRTD = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"

// earKeys writes a fresh verifier key pair into dir.
func earKeys(t *testing.T, dir string) (priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ecpem.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := ear.MarshalPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "ear.pem", string(kp)), writeFile(t, dir, "ear.pub", string(pp))
}

func TestAttestVerifyOutputEAR(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	priv, pub := earKeys(t, dir)
	_, otherPub := earKeys(t, t.TempDir())
	q, col := sharedFile(t, "tdx-dcap/quote.bin"), sharedFile(t, "tdx-dcap/collateral.json")
	at := "2025-07-01T00:00:00Z"
	accept := writeFile(t, dir, "accept.yaml", "roles:\n  td:\n    tdx:\n      - mrtd: "+tdxMRTD+"\n")
	base := []string{"attest", "verify", "--evidence", q, "--collateral", col, "--at", at, "--output", "ear", "--ear-key", priv}
	tok, errOut, code := run(t, bin, append(base, "--policy", accept, "--ear-nonce", "n-42")...)
	if code != 0 || strings.Count(tok, ".") != 2 {
		t.Fatalf("--output ear: exit %d\n%s%s", code, tok, errOut)
	}
	tokFile := writeFile(t, dir, "ok.jwt", tok)
	out, errOut, code := run(t, bin, "attest", "ear-verify", tokFile, "--keys", pub, "--at", "2025-07-01T00:05:00Z", "--nonce", "n-42")
	if code != 0 || !strings.Contains(out, `"ear.status": "affirming"`) || !strings.Contains(out, `"mr-td": "`+tdxMRTD+`"`) ||
		!strings.Contains(out, `"eat_profile": "tag:github.com,2023:veraison/ear"`) {
		t.Fatalf("ear-verify: exit %d\n%s%s", code, out, errOut)
	}
	// Another verifier's key, a stale token, a wrong nonce: refused.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--keys", otherPub, "--at", "2025-07-01T00:05:00Z"}, "signature not by a trusted verifier key"},
		{[]string{"--keys", pub, "--at", "2025-07-01T00:30:00Z"}, "expired"},
		{[]string{"--keys", pub, "--at", "2025-07-01T00:05:00Z", "--max-age", "1m"}, "more than 1m0s"},
		{[]string{"--keys", pub, "--at", "2025-07-01T00:05:00Z", "--nonce", "n-43"}, "nonce mismatch"},
	} {
		if _, e, code := run(t, bin, append([]string{"attest", "ear-verify", tokFile}, c.args...)...); code == 0 || !strings.Contains(e, c.want) {
			t.Errorf("%v: exit %d, stderr %q", c.args, code, e)
		}
	}
	// A refusing policy still yields a signed result, contraindicated, and
	// both commands exit non-zero.
	refuse := writeFile(t, dir, "refuse.yaml", "roles:\n  td:\n    tdx:\n      - mrtd: "+strings.Repeat("00", 48)+"\n")
	tok, _, code = run(t, bin, append(base, "--policy", refuse)...)
	if code == 0 || strings.Count(tok, ".") != 2 {
		t.Fatalf("refused: exit %d, token %q", code, tok)
	}
	bad := writeFile(t, dir, "bad.jwt", tok)
	out, e, code := run(t, bin, "attest", "ear-verify", bad, "--keys", pub, "--at", at)
	if code == 0 || !strings.Contains(out, `"ear.status": "contraindicated"`) || !strings.Contains(e, "contraindicated") {
		t.Fatalf("refused token: exit %d\n%s%s", code, out, e)
	}
	// --output ear needs a key; --ear-key needs --output ear.
	if _, e, code := run(t, bin, "attest", "verify", "--evidence", q, "--collateral", col, "--at", at, "--output", "ear"); code == 0 || !strings.Contains(e, "--ear-key") {
		t.Fatalf("no key: exit %d %q", code, e)
	}
	if _, e, code := run(t, bin, "attest", "verify", "--evidence", q, "--collateral", col, "--at", at, "--ear-key", priv); code == 0 || !strings.Contains(e, "--output ear") {
		t.Fatalf("key without ear: exit %d %q", code, e)
	}
}

func TestAttestEARSimulationIsNeverAffirming(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	priv, pub := earKeys(t, dir)
	key := filepath.Join(dir, "sim.pem")
	if _, e, code := run(t, bin, "attest", "sim-key", "-o", key); code != 0 {
		t.Fatal(e)
	}
	q := filepath.Join(dir, "q.bin")
	if _, e, code := run(t, bin, "attest", "quote", "--platform", "sim", "--sim-key", key, "--report-data", "aa", "--sim-mr-enclave", sgxMREnclave, "-o", q); code != 0 {
		t.Fatal(e)
	}
	allow := writeFile(t, dir, "a.yaml", "roles:\n  collaborator:\n    allow_simulation: true\n    sgx:\n      - mr_enclave: "+sgxMREnclave+"\n")
	tok, e, code := run(t, bin, "attest", "verify", "--evidence", q, "--sim-key", key+".pub", "--policy", allow, "--output", "ear", "--ear-key", priv)
	if code != 0 {
		t.Fatalf("sim accepted by policy: exit %d %s", code, e)
	}
	f := filepath.Join(dir, "sim.jwt")
	if err := os.WriteFile(f, []byte(tok), 0o644); err != nil {
		t.Fatal(err)
	}
	out, e, code := run(t, bin, "attest", "ear-verify", f, "--keys", pub)
	if code == 0 || !strings.Contains(out, `"teeml.simulated": true`) || !strings.Contains(out, `"ear.status": "contraindicated"`) || !strings.Contains(out, `"instance-identity": 97`) {
		t.Fatalf("simulated EAR: exit %d\n%s%s", code, out, e)
	}
}
