package run

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/ml/job"

	"github.com/teeml/teeml/internal/testlog"
)

func quietLog() *slog.Logger { return testlog.Discard() }

type lockedBuf = testlog.Buffer

func setup(t *testing.T, rounds, cols int) string {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "ws")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetupSimulated(context.Background(), ws, "digits_mlp", rounds, 1, cols, port); err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestFederationInProcess runs the aggregator and two collaborators of a
// simulated workspace in this process over loopback RA-TLS.
//
// GoMLX's kernels trip -race's checkptr (see .ci/run): under -race, run
// with -gcflags=all=-d=checkptr=0.
func TestFederationInProcess(t *testing.T) {
	ws := setup(t, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := runFederation(t, ctx, AggregatorOptions{Workspace: ws}, []string{"col-1", "col-2"}, nil)
	t.Logf("aggregator:\n%s", out)
	for _, w := range []string{"SIMULATION", "round 1/2: participants 2, accepted 2, rejected 0", "round 2/2", FinalAccuracyPrefix} {
		if !strings.Contains(out, w) {
			t.Errorf("aggregator output lacks %q", w)
		}
	}
	for _, f := range []string{"save/last.safetensors", "save/best.safetensors"} {
		if _, err := job.Load(filepath.Join(ws, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestCollaboratorRefusedByPolicy: the aggregator's collaborator policy
// refuses simulated evidence, so the collaborator is refused at the RA-TLS
// handshake and ends with a one-line error.
func TestCollaboratorRefusedByPolicy(t *testing.T) {
	ws := setup(t, 1, 1)
	pol := filepath.Join(ws, "policies", "collaborator.yaml")
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, bytes.Replace(b, []byte("allow_simulation: true"), []byte("allow_simulation: false"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	aggCtx, stopAgg := context.WithCancel(ctx)
	aggErr := make(chan error, 1)
	go func() {
		aggErr <- RunAggregator(aggCtx, AggregatorOptions{Workspace: ws, Logger: quietLog()})
	}()
	err = RunCollaborator(ctx, CollaboratorOptions{Workspace: ws, Name: "col-1", ConnectTimeout: 20 * time.Second, Logger: quietLog()})
	stopAgg()
	<-aggErr
	if err == nil {
		t.Fatal("collaborator was not refused")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "refused") {
		t.Fatalf("want a one-line refusal, got %q", msg)
	}
	t.Logf("refusal: %v", err)
}

func TestUnimplementedPlanSettingsAreRefused(t *testing.T) {
	cases := map[string]func(p *plan.Plan){
		"opt_treatment": func(p *plan.Plan) { p.Collaborator.OptTreatment = "continue_local" },
		"delta_updates": func(p *plan.Plan) { p.Collaborator.DeltaUpdates = true },
		"percentage":    func(p *plan.Plan) { p.Assigner.TaskGroups[0].Percentage = 0.5 },
	}
	for name, mutate := range cases {
		b, err := workspace.TemplatePlan("digits_mlp")
		if err != nil {
			t.Fatal(err)
		}
		p, err := plan.Parse(b, "plan.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := supported(p); err != nil {
			t.Fatalf("template refused: %v", err)
		}
		mutate(p)
		if err := supported(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
