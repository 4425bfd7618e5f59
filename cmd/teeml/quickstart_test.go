package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest/sim"
	flrun "github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/ml/job"
)

// TestQuickstartFederationReachesAccuracy runs the real binary's quickstart:
// an aggregator and three collaborators as separate processes over loopback
// RA-TLS (simulated attestation), digits CNN on Dirichlet shards. The final
// model must reach 0.93 held-out accuracy and load in a fresh process.
func TestQuickstartFederationReachesAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a full federation")
	}
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "ws")
	out, errOut, code := run(t, bin, "quickstart", "--dir", dir, "--timeout", "85s", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("quickstart exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("quickstart output:\n%s", out)
	if !strings.Contains(out, "!!! "+sim.Banner+" !!!") {
		t.Error("quickstart does not announce simulation")
	}
	for r := 1; r <= flrun.DefaultQuickstartRounds; r++ {
		if !strings.Contains(out, "round "+strconv.Itoa(r)+"/") {
			t.Errorf("no progress line for round %d", r)
		}
	}
	var model string
	acc := -1.0
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "final accuracy: "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				t.Fatalf("final accuracy line %q: %v", l, err)
			}
			acc = f
		}
		if s, ok := strings.CutPrefix(l, flrun.FinalModelPrefix); ok {
			model = strings.TrimSpace(s)
		}
	}
	if acc < 0.93 {
		t.Fatalf("final accuracy %.4f < 0.93", acc)
	}
	if model == "" {
		t.Fatal("no final model line")
	}
	if _, err := os.Stat(model); err != nil {
		t.Fatal(err)
	}
	l, err := job.Load(model)
	if err != nil {
		t.Fatalf("final model does not load: %v", err)
	}
	if l.Model.Kind() != "cnn" {
		t.Errorf("final model kind %s, want cnn", l.Model.Kind())
	}
	// teeml eval in a fresh process agrees with the reported accuracy.
	ev, errOut, code := run(t, bin, "eval", "--weights", model, "--dataset", "digits")
	if code != 0 {
		t.Fatalf("eval exit %d: %s", code, errOut)
	}
	if want := "test_accuracy=" + strconv.FormatFloat(acc, 'f', 4, 64); !strings.Contains(ev, want) {
		t.Errorf("eval says %q, quickstart said %s", ev, want)
	}
}

// TestFLStartRefusesTamperedPlan: a party whose frozen plan was edited
// refuses to start, with a one-line error and a non-zero exit.
func TestFLStartRefusesTamperedPlan(t *testing.T) {
	bin := buildTeeml(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if _, err := flrun.SetupSimulated(context.Background(), ws, "digits_mlp", 1, 1, 2, 1); err != nil {
		t.Fatal(err)
	}
	planPath := filepath.Join(ws, filepath.FromSlash(workspace.PlanFile))
	b, err := os.ReadFile(planPath)
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(b), "rounds_to_train: 1\n", "rounds_to_train: 2\n", 1)
	if tampered == string(b) {
		t.Fatalf("rounds_to_train not found in the plan:\n%s", b)
	}
	if err := os.WriteFile(planPath, []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"fl", "collaborator", "start", "-w", ws, "-n", "col-1"},
		{"fl", "aggregator", "start", "-w", ws},
	} {
		out, errOut, code := run(t, bin, args...)
		if code == 0 {
			t.Fatalf("%v: exit 0 on a tampered plan\n%s", args, out)
		}
		msg := strings.TrimSpace(errOut)
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "teeml: ") || !strings.Contains(msg, "hash") {
			t.Errorf("%v: want one line 'teeml: …hash…', got %q", args, errOut)
		}
		t.Logf("%v: exit %d: %s", args, code, msg)
	}
}
