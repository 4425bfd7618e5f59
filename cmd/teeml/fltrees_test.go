package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickstartTreesThroughBinary: `teeml quickstart --template
// digits_rf` runs a one-round federated forest (three collaborator
// processes over RA-TLS), and the model.txt it writes is what `teeml
// eval` and `teeml predict` read: the same accuracy as the aggregator's;
// `teeml fl report` reads the run.
func TestQuickstartTreesThroughBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation")
	}
	bin := buildTeeml(t)
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	out, errOut, code := run(t, bin, "quickstart", "--dir", ws, "--collaborators", "3", "--template", "digits_rf",
		"--timeout", "2m", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("quickstart exit %d\n%s\n%s", code, out, errOut)
	}
	var acc, runDir string
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "final accuracy: "); ok {
			acc = strings.TrimSpace(s)
		}
		if s, ok := strings.CutPrefix(l, "plot and summary table: teeml fl report "); ok {
			runDir = strings.TrimSpace(s)
		}
	}
	model := filepath.Join(ws, "save", "last.model.txt")
	if acc == "" || !strings.Contains(out, "(1 rounds, 3 collaborators") || !strings.Contains(out, "final model: "+model) {
		t.Fatalf("quickstart output lacks the one round, the model or the accuracy:\n%s", out)
	}
	out, errOut, code = run(t, bin, "eval", "--weights", model, "--dataset", "digits")
	if code != 0 || !strings.Contains(out, "test_accuracy="+acc) {
		t.Fatalf("eval exit %d, want test_accuracy=%s:\n%s\n%s", code, acc, out, errOut)
	}
	pred := filepath.Join(dir, "pred.csv")
	if _, errOut, code = run(t, bin, "predict", "--weights", model, "--dataset", "digits", "-o", pred); code != 0 {
		t.Fatalf("predict exit %d: %s", code, errOut)
	}
	if _, errOut, code = run(t, bin, "fl", "report", runDir, "--out", filepath.Join(dir, "report")); code != 0 {
		t.Fatalf("fl report exit %d: %s", code, errOut)
	}
}
