package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
)

// TestFederationWithSecureAggregation runs a simulated 2-round federation
// of three collaborators over loopback RA-TLS with a secure_aggregation
// section: the collaborators sign their round keys with their identity
// keys and check each other's against the federation bundle, the
// aggregator unmasks the sum every round and trains on it.
//
// Under -race, run with -gcflags=all=-d=checkptr=0 (see .ci/run).
func TestFederationWithSecureAggregation(t *testing.T) {
	ws := setup(t, 2, 3)
	planPath := filepath.Join(ws, filepath.FromSlash(workspace.PlanFile))
	b, err := os.ReadFile(planPath)
	if err != nil {
		t.Fatal(err)
	}
	section := "\nsecure_aggregation:\n  enabled: true\n  dropout_tolerance: 0.34\n  clip: 0.5\n  phase_timeout: 30s\n"
	if err := os.WriteFile(planPath, append(b, section...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.InitPlan(ws, ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var aggLog lockedBuf
	names := []string{"col-1", "col-2", "col-3"}
	logs := make([]lockedBuf, len(names))
	out := runFederation(t, ctx, AggregatorOptions{Workspace: ws, Logger: aggLog.Logger()}, names, logs)
	if !strings.Contains(out, "round 2/2") {
		t.Errorf("aggregator output lacks round 2:\n%s", out)
	}
	lg := aggLog.String()
	for r := 1; r <= 2; r++ {
		if !strings.Contains(lg, fmt.Sprintf("msg=\"secure aggregation: sum unmasked\" component=aggregator round=%d survivors=\"[col-1 col-2 col-3]\"", r)) {
			t.Errorf("aggregator log lacks round %d's unmasking:\n%s", r, lg)
		}
	}
	for i := range logs {
		if !strings.Contains(logs[i].String(), "msg=\"secure aggregation: shares revealed\"") {
			t.Errorf("col-%d did not reveal:\n%s", i+1, logs[i].String())
		}
	}
	if p, err := plan.Load(planPath); err != nil || p.SecAgg() == nil {
		t.Errorf("frozen plan: %v", err)
	}
}

// TestKillCollaboratorAfterMasking: secure aggregation with three
// collaborator processes, dropout tolerance 0.34 (threshold 2) and a
// 5 s straggler cutoff with minimum_reporting 2. col-3 is SIGKILLed as
// soon as the aggregator has its masked round-1 update. Round 1 still
// unmasks with col-3's input in the sum, from the two others' reveals.
// The federation completes. If col-3 was the last to upload, it may have
// revealed before the kill landed; the kill then lands in round 2, and
// col-3 is not a member of it, a dropped member whose mask key the
// others' shares rebuild, or a survivor that never reveals. Each outcome
// is logged and checked.
// (TestSecAggFederation in fl/protocol kills deterministically between
// upload and reveal.)
func TestKillCollaboratorAfterMasking(t *testing.T) {
	ws := setup(t, 2, 3)
	editPlan(t, ws, func(p *plan.Plan) {
		p.Collaborator.EpochsPerRound = 3
		p.SecureAggregation = plan.SecureAggregation{Enabled: true, Dropout: 0.34, Clip: 0.5, FracBits: 16, PhaseTimeout: 3 * time.Second}
		p.StragglerHandling = plan.StragglerPolicy{Policy: plan.StragglerCutoffTime, CutoffTime: 5 * time.Second, MinimumReporting: 2}
	})
	agg := startParty(t, ws, "aggregator")
	cols := []*proc{startParty(t, ws, "col-1"), startParty(t, ws, "col-2"), startParty(t, ws, "col-3")}
	waitFor(t, 2*time.Minute, "col-3's masked round-1 update", func() bool {
		return strings.Contains(agg.stderr.String(), `msg="update received" component=aggregator collaborator=col-3 round=1`)
	})
	cols[2].kill(t)
	agg.wait(t, 2*time.Minute)
	cols[0].wait(t, 30*time.Second)
	cols[1].wait(t, 30*time.Second)
	log, out := agg.stderr.String(), agg.stdout.String()
	if got := roundLines(out); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("round lines %v, want [1 2]:\n%s", got, out)
	}
	if !strings.Contains(log, `msg="secure aggregation: sum unmasked" component=aggregator round=1 survivors="[col-1 col-2 col-3]" dropped=[]`) {
		t.Fatalf("round 1 was not unmasked with col-3's input:\n%s", tail(log, 40))
	}
	switch {
	case strings.Contains(log, `round=1 survivors="[col-1 col-2 col-3]" dropped=[] reveals="[col-1 col-2]"`):
		t.Logf("col-3 killed between its masked upload and its reveal: round 1 unmasked from col-1 and col-2")
	case strings.Contains(log, `msg="secure aggregation: members fixed" component=aggregator round=2 members="[col-1 col-2]"`):
		t.Logf("col-3 revealed in round 1 before the kill landed; round 2's members are col-1 and col-2")
	case strings.Contains(log, `round=2 survivors="[col-1 col-2]" dropped=[col-3]`):
		t.Logf("col-3 revealed in round 1 and was killed in round 2 after the share exchange: its mask key was rebuilt")
	case strings.Contains(log, `round=2 survivors="[col-1 col-2 col-3]" dropped=[] reveals="[col-1 col-2]"`):
		t.Logf("col-3 revealed in round 1 and was killed in round 2 between its masked upload and its reveal")
	default:
		t.Fatalf("no outcome of the kill found in the log:\n%s", tail(log, 60))
	}
	if !strings.Contains(out, FinalAccuracyPrefix) {
		t.Errorf("no final model line:\n%s", out)
	}
}
