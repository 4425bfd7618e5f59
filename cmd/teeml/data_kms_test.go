package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDataKMS seals and opens files with data keys from a running simulated
// broker (`teeml data encrypt|decrypt --kms CONFIG`): a member the key's
// release policy admits gets them; another member is refused with the
// broker's reason on one line, nothing is written, and the refusal is in
// the audit log.
func TestDataKMS(t *testing.T) {
	bin := buildTeeml(t)
	dir, admin, col1, col2 := simBrokerWithKey(t, bin, "data")
	plain := []byte("id,amount\n1,100\n2,250\n")
	in, enc, dec := filepath.Join(dir, "in.csv"), filepath.Join(dir, "in.csv.sealed"), filepath.Join(dir, "out.csv")
	os.WriteFile(in, plain, 0o600)

	out, errOut, code := run(t, bin, "data", "encrypt", "--kms", col1, "--key", "data", "--in", in, "--out", enc)
	if code != 0 || !strings.Contains(out, `key "data"`) || !strings.Contains(errOut, "SIMULATION") {
		t.Fatalf("encrypt: exit %d %s %s", code, out, errOut)
	}
	if b, _ := os.ReadFile(enc); bytes.Contains(b, []byte("amount")) || !bytes.HasPrefix(b, []byte("TEEMLSEALED")) {
		t.Fatal("sealed output holds plaintext or lacks the sealed magic")
	}
	if out, errOut, code = run(t, bin, "data", "decrypt", "--kms", col1, "--in", enc, "--out", dec); code != 0 {
		t.Fatalf("decrypt: exit %d %s %s", code, out, errOut)
	}
	if b, _ := os.ReadFile(dec); !bytes.Equal(b, plain) {
		t.Fatalf("decrypted %q, want %q", b, plain)
	}

	// col-2 is a federation member that the broker lets connect, but the
	// key's release policy does not name it.
	stolen := filepath.Join(dir, "stolen.csv")
	_, errOut, code = run(t, bin, "data", "decrypt", "--kms", col2, "--in", enc, "--out", stolen)
	last := strings.TrimSpace(errOut[strings.LastIndex(strings.TrimRight(errOut, "\n"), "\n")+1:])
	if code != 1 || !strings.HasPrefix(last, "teeml: ") || !strings.Contains(last, "refused") || !strings.Contains(last, `member "col-2" (role collaborator) is not allowed`) {
		t.Fatalf("decrypt by col-2: exit %d, last line %q", code, last)
	}
	if _, err := os.Stat(stolen); err == nil {
		t.Fatal("refused decrypt wrote its output")
	}
	_, errOut, code = run(t, bin, "data", "encrypt", "--kms", col2, "--key", "data", "--in", in, "--out", filepath.Join(dir, "x.sealed"))
	if code != 1 || !strings.Contains(errOut, `member "col-2" (role collaborator) is not allowed`) {
		t.Fatalf("encrypt by col-2: exit %d %s", code, errOut)
	}

	out, errOut, code = run(t, bin, "kms", "audit", "show", "--config", admin)
	if code != 0 || !strings.Contains(out, "refused unwrap col-2 key=data") || !strings.Contains(out, "granted unwrap col-1 key=data") {
		t.Fatalf("audit show: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = run(t, bin, "kms", "audit", "verify", "--config", admin); code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify: exit %d %s %s", code, out, errOut)
	}
}

// TestSealedModelEvalPredict: eval and predict open a sealed model with a
// key source, refuse it without one (naming the key and the way out), and
// predict's CSV on stdout carries no banner.
func TestSealedModelEvalPredict(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	w, sw, keys := filepath.Join(dir, "m.safetensors"), filepath.Join(dir, "m.sealed"), filepath.Join(dir, "keys.json")
	if _, e, code := run(t, bin, "train", "--dataset", "breast_cancer", "--model", "logreg", "--epochs", "1", "--out", w); code != 0 {
		t.Fatalf("train: %s", e)
	}
	if _, e, code := run(t, bin, "data", "keygen", "--key-file", keys, "--key", "models"); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, bin, "data", "encrypt", "--key-file", keys, "--in", w, "--out", sw); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, bin, "eval", "--weights", sw, "--dataset", "breast_cancer"); code != 1 || !strings.Contains(e, `m.sealed: sealed (key "models"): give --kms CONFIG`) {
		t.Errorf("eval of a sealed model without keys: exit %d %s", code, e)
	}
	if out, e, code := run(t, bin, "eval", "--key-file", keys, "--weights", sw, "--dataset", "breast_cancer"); code != 0 || !strings.Contains(out, "accuracy") {
		t.Errorf("eval --key-file: exit %d %s %s", code, out, e)
	}
	out, e, code := run(t, bin, "predict", "--key-file", keys, "--weights", sw, "--dataset", "breast_cancer", "-o", "-")
	if code != 0 || strings.Contains(out, "SIMULATION") || !strings.Contains(e, "SIMULATION") || strings.Count(out, "\n") < 10 {
		t.Errorf("predict --key-file: exit %d, stdout starts %.80q, stderr %.200q", code, out, e)
	}
}

// simBrokerWithKey starts a simulated broker (kms setup-sim, clients col-1
// and col-2) on loopback and creates key with the setup's release policy,
// which admits col-1 only. It returns the directory and the admin's,
// col-1's and col-2's client configurations.
func simBrokerWithKey(t *testing.T, bin, key string) (dir, admin, col1, col2 string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "kms")
	addr := freeAddr(t)
	if out, errOut, code := run(t, bin, "kms", "setup-sim", "--dir", dir, "--listen", addr, "--client", "col-1", "--client", "col-2"); code != 0 {
		t.Fatalf("setup-sim exit %d: %s %s", code, out, errOut)
	}
	startBroker(t, bin, filepath.Join(dir, "kms.yaml"))
	admin, col1, col2 = filepath.Join(dir, "admin.yaml"), filepath.Join(dir, "col-1.yaml"), filepath.Join(dir, "col-2.yaml")
	if out, errOut, code := run(t, bin, "kms", "key", "create", "--config", admin, "--key", key, "--policy", filepath.Join(dir, "release.yaml")); code != 0 {
		t.Fatalf("create %s: exit %d %s %s", key, code, out, errOut)
	}
	return dir, admin, col1, col2
}
