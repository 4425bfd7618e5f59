package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	flrun "github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

// requireTorch skips without Debian's python3-torch, except under CI=true
// (.ci/run installs it), where the test must run.
func requireTorch(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", "import torch, numpy").CombinedOutput()
	if err == nil {
		return
	}
	msg := "the digits_torch template needs Debian's python3-torch and python3-numpy (apt-get install -y python3-torch python3-numpy): " +
		strings.TrimSpace(string(bytes.TrimSpace(out)))
	testenv.MustRun(t, "%s", msg)
}

// TestQuickstartDigitsTorch federates the PyTorch template (a persistent
// runner: one python3 process per party): the real
// binary's quickstart runs the aggregator and three collaborators as
// separate processes over loopback RA-TLS (simulated attestation), each
// collaborator launching the template's PyTorch script (python3-torch)
// for every task on its Dirichlet shard, the aggregator evaluating every
// global model with the same script on the held-out split. The final
// model must reach 0.93; its accuracy is recomputed here in Go from the
// safetensors file, independently of PyTorch.
func TestQuickstartDigitsTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a full federation")
	}
	requireTorch(t)
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "ws")
	const rounds = 5
	start := time.Now()
	out, errOut, code := run(t, bin, "quickstart", "--template", "digits_torch", "--dir", dir, "--rounds", strconv.Itoa(rounds),
		"--epochs", "10", "--timeout", "10m", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("quickstart exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("quickstart output (%.1f s):\n%s", time.Since(start).Seconds(), out)
	for r := 1; r <= rounds; r++ {
		if !strings.Contains(out, "round "+strconv.Itoa(r)+"/"+strconv.Itoa(rounds)+": participants 3, accepted 3") {
			t.Errorf("no full round line for round %d", r)
		}
	}
	var model string
	acc := -1.0
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "final accuracy: "); ok {
			acc, _ = strconv.ParseFloat(strings.TrimSpace(s), 64)
		}
		if s, ok := strings.CutPrefix(l, flrun.FinalModelPrefix); ok {
			model = strings.TrimSpace(s)
		}
	}
	if acc < 0.93 {
		t.Fatalf("final accuracy %.4f < 0.93", acc)
	}
	w, md, err := safetensors.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	if md[workspace.MetaModel] != "external" {
		t.Errorf("final model metadata %s=%q", workspace.MetaModel, md[workspace.MetaModel])
	}
	// Recompute the accuracy in Go: the MLP of runner/digits_torch.py on
	// the plan's held-out split.
	p, err := workspace.LoadPlan(dir)
	if err != nil {
		t.Fatal(err)
	}
	rawTrain, rawTest, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		t.Fatal(err)
	}
	test, err := datasets.FitPipeline(p.DataLoader.Dataset, rawTrain).Apply(rawTest)
	if err != nil {
		t.Fatal(err)
	}
	goAcc := mlpAccuracy(t, w, test)
	if math.Abs(goAcc-acc) > 0.002 {
		t.Errorf("Go recomputes test accuracy %.4f, the runner reported %.4f", goAcc, acc)
	}
	// The collaborators' logs carry the runner's own output.
	b, _ := os.ReadFile(filepath.Join(dir, "logs", "col-1.log"))
	if !strings.Contains(string(b), "runner stderr") || !strings.Contains(string(b), "task=train") {
		t.Error("col-1's log has no runner output")
	}
}

// mlpAccuracy evaluates fc1 → ReLU → fc2 → ReLU → out (PyTorch Linear
// layout: weight [out, in]) on ds.
func mlpAccuracy(t *testing.T, w tensor.Weights, ds *datasets.Dataset) float64 {
	t.Helper()
	get := func(name string) tensor.Tensor {
		x, ok := w.Get(name)
		if !ok {
			t.Fatalf("final model lacks %s", name)
		}
		return x
	}
	layers := []string{"fc1", "fc2", "out"}
	correct := 0
	for i := 0; i < ds.N; i++ {
		h := ds.Row(i)
		for li, l := range layers {
			wt, bt := get(l+".weight"), get(l+".bias")
			outN, inN := wt.Shape[0], wt.Shape[1]
			if inN != len(h) {
				t.Fatalf("%s expects %d inputs, got %d", l, inN, len(h))
			}
			next := make([]float32, outN)
			for o := 0; o < outN; o++ {
				s := bt.Data[o]
				for j, v := range h {
					s += wt.Data[o*inN+j] * v
				}
				if li < len(layers)-1 && s < 0 {
					s = 0
				}
				next[o] = s
			}
			h = next
		}
		best := 0
		for k := range h {
			if h[k] > h[best] {
				best = k
			}
		}
		if float32(best) == ds.Y[i] {
			correct++
		}
	}
	return float64(correct) / float64(ds.N)
}
