package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/enclave"
)

const sgxMREnclave = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"

func sharedFile(t *testing.T, name string) string {
	t.Helper()
	dcaptest.Read(t, name) // skips, or fails under CI=true, when shared/ is missing
	return filepath.Join(dcaptest.Dir(t), name)
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttestVerifyRealSGXQuote(t *testing.T) {
	bin := buildTeeml(t)
	q, col := sharedFile(t, "sgx-dcap/quote.bin"), sharedFile(t, "sgx-dcap/collateral.json")
	dir := t.TempDir()
	accept := writeFile(t, dir, "accept.yaml", `roles:
  aggregator:
    sgx:
      - mr_enclave: `+sgxMREnclave+`
    tcb_statuses: [UpToDate, ConfigurationAndSWHardeningNeeded]
    advisory_ids: [INTEL-SA-00289, INTEL-SA-00615]
`)
	strict := writeFile(t, dir, "strict.yaml", `roles:
  aggregator:
    sgx:
      - mr_enclave: `+sgxMREnclave+`
`)
	base := []string{"attest", "verify", "--evidence", q, "--collateral", col, "--at", "2025-07-01T00:00:00Z"}

	out, errOut, code := run(t, bin, base...)
	if code != 0 {
		t.Fatalf("no policy: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"mr_enclave: " + sgxMREnclave,
		"mr_signer: 815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
		"tcb_status: ConfigurationAndSWHardeningNeeded", "advisory_ids: INTEL-SA-00289, INTEL-SA-00615",
		"report_data: 48656c6c6f2c20776f726c6421000000", "no policy applied"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	if out, errOut, code = run(t, bin, append(base, "--policy", accept)...); code != 0 || !strings.Contains(out, "result: ACCEPTED") {
		t.Fatalf("accepting policy: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = run(t, bin, append(base, "--policy", strict, "--peer", "bank-b")...)
	if code == 0 || !strings.Contains(errOut, `peer "bank-b"`) || !strings.Contains(errOut, "TCB status ConfigurationAndSWHardeningNeeded not accepted") {
		t.Fatalf("default statuses: exit %d, stderr %q", code, errOut)
	}
	expired := []string{"attest", "verify", "--evidence", q, "--collateral", col, "--at", "2026-01-01T00:00:00Z"}
	if _, errOut, code = run(t, bin, expired...); code == 0 || !strings.Contains(errOut, "expired") {
		t.Fatalf("2026: exit %d, stderr %q", code, errOut)
	}
	out, _, code = run(t, bin, append(base, "--json")...)
	if code != 0 || !strings.Contains(out, `"accepted": true`) || !strings.Contains(out, `"name": "mr_enclave"`) {
		t.Fatalf("--json: %s", out)
	}
}

func TestAttestVerifyRealTDXQuote(t *testing.T) {
	bin := buildTeeml(t)
	q, col := sharedFile(t, "tdx-dcap/quote.bin"), sharedFile(t, "tdx-dcap/collateral.json")
	out, errOut, code := run(t, bin, "attest", "verify", "--evidence", q, "--collateral", col, "--at", "2025-07-01T00:00:00Z")
	if code != 0 || !strings.Contains(out, "tcb_status: UpToDate") ||
		!strings.Contains(out, "mrtd: 91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = run(t, bin, "attest", "inspect", q)
	if code != 0 || !strings.HasPrefix(out, "NOT VERIFIED") || !strings.Contains(out, "tee: tdx") {
		t.Fatalf("inspect: %s", out)
	}
}

func TestAttestSimulationIsExplicitAndRefusedByDefault(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "sim.pem")
	if _, e, code := run(t, bin, "attest", "sim-key", "-o", key); code != 0 {
		t.Fatal(e)
	}
	q := filepath.Join(dir, "q.bin")
	out, e, code := run(t, bin, "attest", "quote", "--platform", "sim", "--sim-key", key, "--report-data", "aa", "--sim-mr-enclave", sgxMREnclave, "-o", q)
	if code != 0 || !strings.Contains(out, "SIMULATED") || !strings.Contains(e, "SIMULATED attestation") {
		t.Fatalf("quote: exit %d\n%s%s", code, out, e)
	}
	// No trusted simulation key: refused before any policy.
	if _, e, code = run(t, bin, "attest", "verify", "--evidence", q); code == 0 || !strings.Contains(e, "no trusted simulation key") {
		t.Fatalf("untrusted sim: exit %d %q", code, e)
	}
	// Trusted key, no policy: valid, and the output says SIMULATED.
	out, _, code = run(t, bin, "attest", "verify", "--evidence", q, "--sim-key", key+".pub")
	if code != 0 || !strings.HasPrefix(out, "WARNING: SIMULATED") || !strings.Contains(out, "simulated: true") {
		t.Fatalf("trusted sim: exit %d\n%s", code, out)
	}
	strict := writeFile(t, dir, "p.yaml", "roles:\n  collaborator:\n    sgx:\n      - mr_enclave: "+sgxMREnclave+"\n")
	if _, e, code = run(t, bin, "attest", "verify", "--evidence", q, "--sim-key", key+".pub", "--policy", strict); code == 0 || !strings.Contains(e, "simulated evidence refused") {
		t.Fatalf("default policy on sim: exit %d %q", code, e)
	}
	allow := writeFile(t, dir, "a.yaml", "roles:\n  collaborator:\n    allow_simulation: true\n    sgx:\n      - mr_enclave: "+sgxMREnclave+"\n")
	if out, e, code = run(t, bin, "attest", "verify", "--evidence", q, "--sim-key", key+".pub", "--policy", allow, "--report-data", "aa"); code != 0 {
		t.Fatalf("allow_simulation: exit %d\n%s%s", code, out, e)
	}
	if _, e, code = run(t, bin, "attest", "verify", "--evidence", q, "--sim-key", key+".pub", "--policy", allow, "--report-data", "bb"); code == 0 {
		t.Fatalf("wrong report data accepted: %q", e)
	}
	// A debug simulated enclave is refused even where simulation is allowed.
	qd := filepath.Join(dir, "qd.bin")
	if _, e, code = run(t, bin, "attest", "quote", "--platform", "sim", "--sim-key", key, "--report-data", "aa", "--sim-mr-enclave", sgxMREnclave, "--sim-debug", "-o", qd); code != 0 {
		t.Fatal(e)
	}
	if _, e, code = run(t, bin, "attest", "verify", "--evidence", qd, "--sim-key", key+".pub", "--policy", allow); code == 0 || !strings.Contains(e, "debug") {
		t.Fatalf("debug sim: exit %d %q", code, e)
	}
	// No hardware and no --platform sim: a clear refusal, never a silent simulation.
	if _, e, code = run(t, bin, "attest", "quote", "--report-data", "aa", "--gramine-root", filepath.Join(dir, "none"), "--tsm-root", filepath.Join(dir, "none")); code == 0 || !strings.Contains(e, "no TEE found") {
		t.Fatalf("auto without TEE: exit %d %q", code, e)
	}
}

func TestEnclaveKeygenMRSignerPolicy(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "enclave-key.pem")
	out, e, code := run(t, bin, "enclave", "keygen", "-o", key)
	if code != 0 {
		t.Fatal(e)
	}
	mr, e, code := run(t, bin, "enclave", "mrsigner", "--key", key)
	if code != 0 || len(strings.TrimSpace(mr)) != 64 || !strings.Contains(out, strings.TrimSpace(mr)) {
		t.Fatalf("mrsigner %q (keygen said %q) %s", mr, out, e)
	}
	if _, e, code = run(t, bin, "enclave", "keygen", "-o", key); code == 0 {
		t.Fatalf("keygen replaced an existing key without --force: %s", e)
	}
	// Manifest: a trust-deciding file may not be an allowed file.
	pol := writeFile(t, dir, "policy.yaml", "roles: {}\n")
	if _, e, code = run(t, bin, "enclave", "manifest", "--entrypoint", "/teeml", "--trust-config", pol, "--allowed", pol); code == 0 || !strings.Contains(e, "policy.yaml") {
		t.Fatalf("policy as allowed file: exit %d %q", code, e)
	}
	mf := filepath.Join(dir, "teeml.manifest")
	if _, e, code = run(t, bin, "enclave", "manifest", "--entrypoint", "/teeml", "--trust-config", pol, "-o", mf); code != 0 {
		t.Fatal(e)
	}
	body, err := os.ReadFile(mf)
	if err != nil || !strings.Contains(string(body), "sgx.trusted_files") || !strings.Contains(string(body), `remote_attestation = "dcap"`) {
		t.Fatalf("manifest: %v\n%s", err, body)
	}
	if _, e, code = run(t, bin, "enclave", "sign", "--manifest", mf, "--key", key, "-o", mf+".sgx"); code == 0 {
		t.Logf("gramine-sgx-sign is installed; sign ran")
	} else if !strings.Contains(e, "gramine-sgx-sign not found") {
		t.Fatalf("sign without Gramine: %q", e)
	}
}

func signedSigstruct(t *testing.T, dir string, debug bool) string {
	t.Helper()
	key, err := enclave.LoadSigningKey(filepath.Join("..", "..", "enclave", "testdata", "TEST-ONLY-signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ss := enclave.NewSigstruct(enclave.SigstructParams{MREnclave: [32]byte{0xab, 0xcd}, ISVProdID: 7, ISVSVN: 3, Debug: debug})
	if err := ss.Sign(key); err != nil {
		t.Fatal(err)
	}
	b, err := ss.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	name := "prod.sig"
	if debug {
		name = "debug.sig"
	}
	return writeFile(t, dir, name, string(b))
}

func TestEnclaveInspectAndPolicyFromSigstruct(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	sig := signedSigstruct(t, dir, false)
	out, e, code := run(t, bin, "enclave", "inspect", sig)
	if code != 0 || !strings.Contains(out, "mr_enclave: abcd0000") || !strings.Contains(out, "isv_prod_id: 7") || !strings.Contains(out, "debug: false") {
		t.Fatalf("inspect: exit %d\n%s%s", code, out, e)
	}
	pol, e, code := run(t, bin, "enclave", "policy", sig, "--role", "aggregator")
	if code != 0 {
		t.Fatal(e)
	}
	p, err := policy.Parse([]byte(pol), "emitted")
	if err != nil {
		t.Fatalf("emitted policy does not load: %v\n%s", err, pol)
	}
	if r := p.Roles["aggregator"]; r == nil || len(r.SGX) != 1 || !strings.Contains(pol, "min_isv_svn: 3") {
		t.Fatalf("emitted policy: %s", pol)
	}
	if _, e, code = run(t, bin, "enclave", "policy", signedSigstruct(t, dir, true)); code == 0 || !strings.Contains(e, "debug enclave") {
		t.Fatalf("policy for a debug enclave: exit %d %q", code, e)
	}
	// A flipped byte in the signed area is caught by inspect's verification.
	b, _ := os.ReadFile(sig)
	b[960] ^= 1
	bad := writeFile(t, dir, "bad.sig", string(b))
	if _, e, code = run(t, bin, "enclave", "inspect", bad); code == 0 {
		t.Fatalf("tampered SIGSTRUCT accepted: %q", e)
	}
}
