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
	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/report"
	"github.com/teeml/teeml/fl/workspace"
)

// TestFederationWithPrivacyBudget runs a simulated 4-round federation over
// loopback RA-TLS with a privacy section whose budget allows two rounds,
// with central and with local noise: collaborators clip (and with local
// noise, noise) before upload, every round's ε is in the aggregator's
// log and metrics.jsonl, the aggregator stops with the one-line reason
// before round 3, and the report shows both.
//
// Under -race, run with -gcflags=all=-d=checkptr=0 (see .ci/run).
func TestFederationWithPrivacyBudget(t *testing.T) {
	for _, noise := range []string{privacy.NoiseCentral, privacy.NoiseLocal} {
		t.Run(noise, func(t *testing.T) { federateWithPrivacy(t, noise, false) })
	}
}

// TestFederationWithPrivacyAndSecureAggregation is the same federation
// with secure_aggregation on: the collaborators clip (and with local
// noise add their discrete Gaussian share) before masking, the
// aggregator sees only the sum, and ε, the budget stop, metrics.jsonl
// and the report are the same as without it.
func TestFederationWithPrivacyAndSecureAggregation(t *testing.T) {
	for _, noise := range []string{privacy.NoiseCentral, privacy.NoiseLocal} {
		t.Run(noise, func(t *testing.T) { federateWithPrivacy(t, noise, true) })
	}
}

func federateWithPrivacy(t *testing.T, noise string, secagg bool) {
	const z, delta = 4.0, 1e-5
	acc, _ := privacy.NewAccountant()
	var eps []float64
	for r := 1; r <= 3; r++ {
		acc.Compose(1, z, 1)
		e, _ := acc.Epsilon(delta)
		eps = append(eps, e)
	}
	budget := (eps[1] + eps[2]) / 2

	ws := setup(t, 4, 2)
	planPath := filepath.Join(ws, filepath.FromSlash(workspace.PlanFile))
	b, err := os.ReadFile(planPath)
	if err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf("\nprivacy:\n  noise: %s\n  noise_multiplier: %v\n  clip_norm: 0.5\n  target_delta: %v\n  epsilon_budget: %v\n", noise, z, delta, budget)
	if secagg {
		section += "\nsecure_aggregation:\n  enabled: true\n  dropout_tolerance: 0.34\n  clip: 0.5\n  phase_timeout: 30s\n"
	}
	if err := os.WriteFile(planPath, append(b, section...), 0o600); err != nil {
		t.Fatal(err)
	}
	hash, err := workspace.InitPlan(ws, "")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var aggLog lockedBuf
	logs := make([]lockedBuf, 2)
	out := runFederation(t, ctx, AggregatorOptions{Workspace: ws, Logger: aggLog.Logger()}, []string{"col-1", "col-2"}, logs)
	if !strings.Contains(out, "federation stopped early: privacy budget: round 3 would spend") {
		t.Errorf("aggregator output lacks the budget stop:\n%s", out)
	}
	if strings.Contains(out, "round 3/4") {
		t.Errorf("round 3 ran past the budget:\n%s", out)
	}
	lg := aggLog.String()
	for r := 1; r <= 2; r++ {
		if !strings.Contains(lg, fmt.Sprintf("msg=\"round privacy\" component=aggregator round=%d epsilon=%v", r, eps[r-1])) {
			t.Errorf("aggregator log lacks round %d's ε %v:\n%s", r, eps[r-1], lg)
		}
	}
	for i := range logs {
		want := "msg=\"update clipped for differential privacy\""
		if secagg && noise == privacy.NoiseLocal {
			want = "msg=\"discrete Gaussian noise added before masking\" collaborator=col-" + fmt.Sprint(i+1) + " round=1 lattice_sigma="
		} else if noise == privacy.NoiseLocal { // z·C = 4·0.5
			want += " collaborator=col-" + fmt.Sprint(i+1) + " round=1 clip_norm=0.5 local_noise_std=2"
		}
		if !strings.Contains(logs[i].String(), want) {
			t.Errorf("col-%d log lacks %q:\n%s", i+1, want, logs[i].String())
		}
	}
	m, err := os.ReadFile(MetricsFile(ws, hash))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m), `"dp_epsilon":`) || !strings.Contains(string(m), `"phase":"stopped"`) {
		t.Errorf("metrics.jsonl lacks dp_epsilon or the stopped record:\n%s", m)
	}
	res, err := report.Write(RunDir(ws, hash), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if len(s.Rounds) != 2 || s.Rounds[1].Epsilon != eps[1] || !strings.HasPrefix(s.Stopped, "before round 3: privacy budget:") {
		t.Errorf("report: %d rounds, round 2 ε %v (want %v), stopped %q", len(s.Rounds), s.Rounds[len(s.Rounds)-1].Epsilon, eps[1], s.Stopped)
	}
	if secagg && !strings.Contains(lg, "secure aggregation: sum unmasked") {
		t.Errorf("aggregator did not unmask a secure-aggregation sum:\n%s", lg)
	}
	if p, err := plan.Load(planPath); err != nil || !p.Privacy.Enabled() {
		t.Errorf("frozen plan: %v", err)
	}
}
