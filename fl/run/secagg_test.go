package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
