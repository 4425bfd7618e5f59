package report

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/internal/testlog"
)

// The metrics observer writes each round's (ε, δ) into its round record and
// a stopped record for a budget stop; the report shows both.
func TestReportShowsPrivacyAndBudgetStop(t *testing.T) {
	dir := t.TempDir()
	j, err := metrics.OpenJSONL(filepath.Join(dir, metrics.FileName), testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	o := metrics.NewObserver(j, nil, testlog.Discard())
	eps := []float64{0.8123, 1.2456, 1.6789}
	for r := 1; r <= 3; r++ {
		o.RoundClosed(scheduler.RoundSummary{Round: r, Participants: []string{"a", "b"}, Accepted: []string{"a", "b"},
			EvalLoss: math.NaN(), Seconds: 1, Privacy: map[string]float64{"dp_epsilon": eps[r-1], "dp_delta": 1e-5,
				"dp_clip_norm": 0.5, "dp_sampled": 2}})
	}
	reason := "privacy budget: round 4 would spend ε = 2.01 > budget 2 at δ = 1e-05 (spent ε = 1.679 after 3 rounds)"
	o.FederationStopped(4, reason)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Write(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	for i, r := range s.Rounds {
		if r.Epsilon != eps[i] || r.Delta != 1e-5 || r.ClipNorm != 0.5 || r.Sampled != 2 {
			t.Errorf("round %d: privacy %v %v %v %v", r.Round, r.Epsilon, r.Delta, r.ClipNorm, r.Sampled)
		}
	}
	if want := "before round 4: " + reason; s.Stopped != want {
		t.Errorf("Stopped %q, want %q", s.Stopped, want)
	}
	md, err := os.ReadFile(filepath.Join(dir, TableFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Stopped early before round 4: privacy budget: round 4 would spend", "## Differential privacy",
		"| 1 | 0.8123 | 1e-05 | 0.5000 | 2 |", "| 3 | 1.6789 | 1e-05 | 0.5000 | 2 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
