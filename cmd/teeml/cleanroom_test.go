package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCleanroomQuickstart runs the clean room end to end as a user does:
// two owners' brokers, the owners and the analytics party, each its own
// process; then checks the CLI's open and verify on what it left, and the
// refusals of the open command.
func TestCleanroomQuickstart(t *testing.T) {
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "room")
	out, errOut, code := run(t, bin, "cleanroom", "quickstart", "--dir", dir, "--log-level", "warn")
	if code != 0 {
		t.Fatalf("quickstart exit %d\n%s\n%s", code, out, errOut)
	}
	quickstartOut := out
	for _, want := range []string{
		"SIMULATION",
		"3 groups released, 1 suppressed (fewer than k=5)",
		"this SQL is not in the contract",
		"refused before any key was asked for",
		"privacy budget exhausted (2 of 2 spent, the query needs 1)",
		`bank's broker refused, no key released: kms: unwrap refused: contract bank-retail-demo: template "dump_customers" is not in the contract`,
		`retailer's broker refused, no key released: kms: unwrap refused: key "retail-data" is not bound to contract sha256`,
		"segment,customers,avg_spend,avg_balance",
		"granted  analytics noisy_spend_by_segment",
		"workspace scanned: no file holds a customer row in plaintext",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("quickstart output lacks %q", want)
		}
	}
	if strings.Contains(out, "student,") {
		t.Error("the suppressed group (student) was printed")
	}
	results, _ := filepath.Glob(filepath.Join(dir, "results", "*.spend_by_segment.retailer.result"))
	if len(results) != 1 {
		t.Fatalf("retailer results: %v", results)
	}
	contractPath := filepath.Join(dir, "contract.yaml")
	csv, errOut, code := run(t, bin, "cleanroom", "open", "--contract", contractPath, "--key", filepath.Join(dir, "retailer.hpke"), "--recipient", "retailer", results[0])
	if code != 0 || !strings.HasPrefix(csv, "segment,customers,avg_spend,avg_balance\nbudget,") {
		t.Fatalf("open as retailer: exit %d\n%s\n%s", code, csv, errOut)
	}
	// The bank's key does not open the retailer's result.
	_, errOut, code = run(t, bin, "cleanroom", "open", "--contract", contractPath, "--key", filepath.Join(dir, "bank.hpke"), "--recipient", "retailer", results[0])
	if code == 0 || !strings.Contains(errOut, "does not open with this key") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Fatalf("open with the wrong key: exit %d: %q", code, errOut)
	}
	out, errOut, code = run(t, bin, "cleanroom", "verify", "--contract", contractPath, "--signatures", filepath.Join(dir, "contract.sig"),
		"--root", filepath.Join(dir, "pki", "root.pem"), "--bundle", filepath.Join(dir, "pki", "federation.bundle"))
	if code != 0 || !strings.Contains(out, "signed by owner bank") || !strings.Contains(out, "signed by owner retailer") {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	// One byte of the contract changed: verify refuses, naming the owner.
	// The training template released a model, not rows: the bank writes it
	// out and predicts with it.
	if !strings.Contains(quickstartOut, "model released (gbdt, 120 trees, ") || !strings.Contains(quickstartOut, "the training table is not") {
		t.Errorf("quickstart output lacks the training template's release")
	}
	models, _ := filepath.Glob(filepath.Join(dir, "results", "*.segment_model.bank.result"))
	if len(models) != 1 {
		t.Fatalf("bank's model results: %v", models)
	}
	modelTxt := filepath.Join(t.TempDir(), "segment.model.txt")
	_, errOut, code = run(t, bin, "cleanroom", "open", "--contract", contractPath, "--key", filepath.Join(dir, "bank.hpke"), "--recipient", "bank", models[0])
	if code == 0 || !strings.Contains(errOut, "holds a model") {
		t.Fatalf("open a model without --model-out: exit %d: %s", code, errOut)
	}
	_, errOut, code = run(t, bin, "cleanroom", "open", "--contract", contractPath, "--key", filepath.Join(dir, "bank.hpke"), "--recipient", "bank",
		"--model-out", modelTxt, models[0])
	if code != 0 || !strings.Contains(errOut, "model written to "+modelTxt) {
		t.Fatalf("open the model: exit %d: %s", code, errOut)
	}
	rows := filepath.Join(t.TempDir(), "rows.csv")
	os.WriteFile(rows, []byte("balance,spend\n1000,20\n50000,900\n"), 0o644)
	pred, errOut, code := run(t, bin, "predict", "--weights", modelTxt, "--input", rows)
	if code != 0 || !strings.HasPrefix(pred, "id,prediction,p_0,p_1,p_2,p_3\n") || len(strings.Split(strings.TrimSpace(pred), "\n")) != 3 {
		t.Fatalf("predict with the released model: exit %d: %s\n%s", code, pred, errOut)
	}
	t.Logf("predictions of the released model:\n%s", pred)
	raw, _ := os.ReadFile(contractPath)
	changed := filepath.Join(t.TempDir(), "contract.yaml")
	os.WriteFile(changed, []byte(strings.Replace(string(raw), "min_group_size: 5", "min_group_size: 4", 1)), 0o644)
	_, errOut, code = run(t, bin, "cleanroom", "verify", "--contract", changed, "--signatures", filepath.Join(dir, "contract.sig"),
		"--root", filepath.Join(dir, "pki", "root.pem"), "--bundle", filepath.Join(dir, "pki", "federation.bundle"))
	if code == 0 || !strings.Contains(errOut, "the contract changed after it was signed") {
		t.Fatalf("verify changed contract: exit %d: %s", code, errOut)
	}
}
