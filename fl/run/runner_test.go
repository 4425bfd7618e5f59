package run

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

// fakeRunner is an external runner in sh (no torch needed): init copies
// a fixed model, train returns the global model, evaluate reports 0.5
// accuracy — and col-2's training crashes in round 2.
const fakeRunner = `d=$(dirname "$TEEML_TASK_FILE")
case "$TEEML_TASK" in
init) cp runner/init.safetensors "$d/output.safetensors" ;;
train)
  if grep -q '"party": "col-2"' "$TEEML_TASK_FILE" && grep -q '"round": 2,' "$TEEML_TASK_FILE"; then
    echo "Traceback: boom, simulated crash" >&2; exit 7
  fi
  cp "$d/input.safetensors" "$d/output.safetensors"
  echo '{"num_examples": 10, "loss": 1}' > "$d/metrics.json" ;;
evaluate) echo '{"num_examples": 10, "loss": 1, "metrics": {"accuracy": 0.5}}' > "$d/metrics.json" ;;
esac
`

// TestRunnerCrashSkipsRoundNotCollaborator: a collaborator whose external
// runner crashes in round 2 skips that round (the aggregator closes it
// with the other two at the round timeout) and trains again in round 3;
// the federation finishes.
func TestRunnerCrashSkipsRoundNotCollaborator(t *testing.T) {
	ws := setup(t, 3, 3)
	planPath := filepath.Join(ws, filepath.FromSlash(workspace.PlanFile))
	p, err := plan.LoadUnfrozen(planPath)
	if err != nil {
		t.Fatal(err)
	}
	p.TaskRunner.Model, p.TaskRunner.Hidden = plan.ModelExternal, nil
	p.TaskRunner.Runner = &plan.Runner{Command: []string{"/bin/sh", "runner/fake.sh"}, Timeout: 30 * time.Second,
		Files: map[string]string{"runner/fake.sh": ""}}
	p.Aggregator.MinCollaborators = 2
	p.Network.RoundTimeout = 4 * time.Second
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteBytes(planPath, p.Canonical(), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(ws, "runner"), 0o755)
	if err := os.WriteFile(filepath.Join(ws, "runner", "fake.sh"), []byte(fakeRunner), 0o644); err != nil {
		t.Fatal(err)
	}
	init := tensor.Weights{{Name: "w", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}}
	if err := safetensors.WriteFile(filepath.Join(ws, "runner", "init.safetensors"), init, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.InitPlan(ws, ""); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logs := make([]lockedBuf, 3)
	out := runFederation(t, ctx, AggregatorOptions{Workspace: ws}, []string{"col-1", "col-2", "col-3"}, logs)
	t.Logf("aggregator:\n%s", out)
	for _, w := range []string{"round 1/3: participants 3", "round 2/3: participants 2", "round 3/3: participants 3", "test_accuracy=0.5000"} {
		if !strings.Contains(out, w) {
			t.Errorf("aggregator output lacks %q", w)
		}
	}
	col2 := logs[1].String()
	for _, w := range []string{"local task failed", "exited with status 7: Traceback: boom, simulated crash", "runner stderr"} {
		if !strings.Contains(col2, w) {
			t.Errorf("col-2 log lacks %q", w)
		}
	}
}
