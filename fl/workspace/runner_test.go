package workspace

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

// requireTorch skips without Debian's python3-torch, except under CI=true.
func requireTorch(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", "import torch, numpy").CombinedOutput()
	if err == nil {
		return
	}
	msg := "the digits_torch runner needs Debian's python3-torch and python3-numpy (apt-get install -y python3-torch python3-numpy): " +
		strings.TrimSpace(string(bytes.TrimSpace(out))) + " " + err.Error()
	testenv.MustRun(t, "%s", msg)
}

// checkExternalInit: plan init pinned the runner's files, the initial
// weights came from the runner (same seed → same weights), and a modified
// runner is refused.
func checkExternalInit(t *testing.T, ws string, frozen *plan.Plan, init tensor.Weights, md map[string]string) {
	t.Helper()
	if md[MetaModel] != plan.ModelExternal {
		t.Errorf("weights metadata %s=%q", MetaModel, md[MetaModel])
	}
	r := frozen.TaskRunner.Runner
	if !r.Pinned() {
		t.Fatalf("frozen plan has unpinned runner files: %v", r.Files)
	}
	if err := frozen.VerifyRunnerFiles(ws); err != nil {
		t.Fatal(err)
	}
	if len(init) == 0 || init.AllFinite() != nil {
		t.Fatalf("initial weights %d tensors", len(init))
	}
	// Deterministic: a second init gives the same weights.
	if _, err := InitPlan(ws, ""); err != nil {
		t.Fatal(err)
	}
	again, _, err := safetensors.ReadFile(filepath.Join(ws, frozen.Aggregator.InitStatePath))
	if err != nil {
		t.Fatal(err)
	}
	if err := init.Compatible(again); err != nil {
		t.Fatal(err)
	}
	for i := range init {
		if !slices.Equal(init[i].Data, again[i].Data) {
			t.Fatalf("tensor %s differs between two inits with the same seed", init[i].Name)
		}
	}
	// Swapping the training code after plan init is refused before launch.
	for f := range r.Files {
		path := filepath.Join(ws, filepath.FromSlash(f))
		b, _ := os.ReadFile(path)
		if err := os.WriteFile(path, append(b, "\n# tampered\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := LoadPlan(ws)
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewRunner(ws, p, "col-1", *testDigits(t), nil, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "the runner's code was modified") {
			t.Fatalf("tampered runner: %v", err)
		}
		return
	}
}

func testDigits(t *testing.T) *datasets.Dataset {
	t.Helper()
	ds, err := datasets.Load("digits")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}
