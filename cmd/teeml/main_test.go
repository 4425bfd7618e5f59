package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/internal/testbin"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/party/partysim"
)

// buildTeeml is the binary as `go build` makes it.
func buildTeeml(t *testing.T) string { return testbin.Dynamic(t) }

// buildStaticTeeml is the static binary of docs/deploy.md: the image
// commands then package the very binary that runs them.
func buildStaticTeeml(t *testing.T) string { return testbin.Static(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func run(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

func TestTrainSaveLoadInFreshProcessGivesIdenticalPredictions(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	w := filepath.Join(dir, "digits.safetensors")
	out, errOut, code := run(t, bin, "train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--seed", "5", "--out", w, "--log-level", "warn")
	if code != 0 {
		t.Fatalf("train exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "test_accuracy=0.") {
		t.Fatalf("last line %q, want test_accuracy=…", last)
	}
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "epoch 1/3 ") {
		t.Fatalf("want 3 epoch lines and the final line, got:\n%s", out)
	}

	// A fresh process loads the file and predicts.
	pred, errOut, code := run(t, bin, "predict", "--weights", w, "--dataset", "digits")
	if code != 0 {
		t.Fatalf("predict exit %d: %s", code, errOut)
	}
	// The same training in this process (same seeds) must give the very same
	// probabilities, bit for bit: save/load is lossless and training is
	// deterministic.
	res, err := job.Train(context.Background(), job.TrainOptions{Dataset: "digits", Model: "mlp", Epochs: 3, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	l := &job.Loaded{Model: res.Model, Pipeline: res.Pipeline}
	if err := l.WritePredictions(&want, res.TestSet); err != nil {
		t.Fatal(err)
	}
	if pred != want.String() {
		t.Fatalf("predictions from the saved file differ from the in-memory model:\nfile:   %.300s\nmemory: %.300s", pred, want.String())
	}
	if n := strings.Count(pred, "\n"); n != res.TestSet.N+1 {
		t.Fatalf("%d CSV lines for %d test rows", n, res.TestSet.N)
	}

	// eval in a fresh process reports the metric train reported.
	ev, errOut, code := run(t, bin, "eval", "--weights", w, "--dataset", "digits", "--model", "mlp")
	if code != 0 {
		t.Fatalf("eval exit %d: %s", code, errOut)
	}
	if !strings.HasSuffix(strings.TrimSpace(ev), lines[len(lines)-1]) {
		t.Fatalf("eval says %q, train said %q", ev, lines[len(lines)-1])
	}
}

func TestBadInputGivesOneLineErrorAndNonZeroExit(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	w := filepath.Join(dir, "w.safetensors")
	if _, e, code := run(t, bin, "train", "--dataset", "breast_cancer", "--model", "logreg", "--epochs", "1", "--out", w); code != 0 {
		t.Fatalf("train: %s", e)
	}
	data, err := os.ReadFile(w)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.safetensors")
	if err := os.WriteFile(corrupt, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.safetensors")
	if err := os.WriteFile(garbage, []byte("not a safetensors file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	csvBad := filepath.Join(dir, "rows.csv")
	if err := os.WriteFile(csvBad, []byte("id,foo\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dashWS := filepath.Join(dir, "dash")
	if err := partysim.Parties(dashWS, map[string]string{partysim.DashboardRole: partysim.DashboardRole}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"train", "--dataset", "nope", "--model", "mlp"}, `unknown dataset "nope"`},
		{[]string{"train", "--dataset", "digits", "--model", "transformer"}, `unknown model kind "transformer"`},
		{[]string{"train", "--dataset", "diabetes", "--model", "logreg"}, "logreg"},
		{[]string{"train", "--dataset", "breast_cancer", "--model", "cnn"}, "cnn"},
		{[]string{"eval", "--weights", corrupt, "--dataset", "breast_cancer"}, "corrupt.safetensors"},
		{[]string{"eval", "--weights", garbage, "--dataset", "breast_cancer"}, "garbage.safetensors"},
		{[]string{"eval", "--weights", filepath.Join(dir, "missing.safetensors"), "--dataset", "digits"}, "missing.safetensors"},
		{[]string{"eval", "--weights", w, "--dataset", "digits"}, `trained on dataset "breast_cancer"`},
		{[]string{"eval", "--weights", w, "--dataset", "breast_cancer", "--model", "mlp"}, `model kind is "logreg"`},
		{[]string{"predict", "--weights", w, "--input", csvBad}, `missing column "mean radius"`},
		{[]string{"train", "--dataset", "digits"}, `"model" not set`},
		{[]string{"train", "--dataset", "digits", "--model", "mlp", "--batch", "-5"}, "none may be negative"},
		{[]string{"train", "--dataset", "digits", "--model", "mlp", "--test-fraction", "1.5"}, "test fraction"},
		{[]string{"dashboard", "-w", filepath.Join(dir, "no-workspace")}, "dashboard: workspace: stat " + filepath.Join(dir, "no-workspace")},
		{[]string{"dashboard", "-w", w}, "is not a directory"},
		{[]string{"dashboard", "-w", dir}, "dashboard: party configuration " + filepath.Join(dir, "party", "dashboard.yaml")},
		{[]string{"dashboard", "-w", dir, "--party", garbage}, "dashboard: party " + garbage},
		{[]string{"dashboard", "-w", dashWS, "--addr", "256.0.0.1:1"}, "dashboard: listen 256.0.0.1:1"},
		{[]string{"dashboard", "-w", dir, "--tls-cert", garbage, "--tls-key", garbage}, "dashboard: server certificate " + garbage},
	}
	for _, c := range cases {
		_, stderr, code := run(t, bin, c.args...)
		if code == 0 {
			t.Errorf("%v: exit 0, want failure", c.args)
			continue
		}
		msg := strings.TrimRight(stderr, "\n")
		if strings.Contains(msg, "\n") || strings.Contains(msg, "panic") {
			t.Errorf("%v: error is not one line:\n%s", c.args, stderr)
		}
		if !strings.HasPrefix(msg, "teeml: ") || !strings.Contains(msg, c.want) {
			t.Errorf("%v: stderr %q, want it to mention %q", c.args, msg, c.want)
		}
	}
}

func TestFailedTrainLeavesNoWeightsFile(t *testing.T) {
	bin := buildTeeml(t)
	w := filepath.Join(t.TempDir(), "w.safetensors")
	if _, _, code := run(t, bin, "train", "--dataset", "diabetes", "--model", "logreg", "--out", w); code == 0 {
		t.Fatal("want failure")
	}
	if entries, _ := os.ReadDir(filepath.Dir(w)); len(entries) != 0 {
		t.Fatalf("failed run left files: %v", entries)
	}
}

func TestDatasetsListShowsEveryDataset(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"datasets", "list"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"digits  ", "1797", "breast_cancer", "diabetes", "credit", "4454", "mnist", "BSD-3-Clause", "MIT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("datasets list lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVersionPrintsGoVersion(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "teeml v") || !strings.Contains(out.String(), "go: go1.") {
		t.Fatalf("version output: %s", out.String())
	}
	// Whether the binary has the SIMD matmul kernels (GOEXPERIMENT=simd).
	if want := "ml kernels: " + ml.SIMDDescription() + "\n"; !strings.Contains(out.String(), want) {
		t.Fatalf("version output lacks %q:\n%s", want, out.String())
	}
}
