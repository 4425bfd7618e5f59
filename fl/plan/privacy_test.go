package plan_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/internal/yamlx"
)

const privacySection = `privacy:
  noise: central
  noise_multiplier: 1.1
  clip_norm: 0.5
  adaptive_clipping:
    target_quantile: 0.5
    learning_rate: 0.2
    count_noise_multiplier: 5
  sample_rate: 0.5
  target_delta: 1e-5
  epsilon_budget: 8
`

func withPrivacy(t *testing.T, section string) []byte {
	t.Helper()
	return append(template(t, "digits_mlp"), []byte("\n"+section)...)
}

func TestPrivacySectionParses(t *testing.T) {
	p := mustParse(t, withPrivacy(t, privacySection))
	pr := p.Privacy
	if !pr.Enabled() || pr.Noise != privacy.NoiseCentral || pr.NoiseMultiplier != 1.1 || pr.ClipNorm != 0.5 ||
		pr.SampleRate != 0.5 || pr.TargetDelta != 1e-5 || pr.EpsilonBudget != 8 || pr.Adaptive == nil ||
		*pr.Adaptive != (privacy.Adaptive{TargetQuantile: 0.5, LearningRate: 0.2, CountNoiseMultiplier: 5}) {
		t.Fatalf("privacy %+v", pr)
	}
	if pr.SampleSeed != p.TaskRunner.Seed {
		t.Errorf("sample_seed defaults to %d, want task_runner.seed %d", pr.SampleSeed, p.TaskRunner.Seed)
	}
	// The canonical form reads back to the same plan and hash; the section
	// changes the hash; a plan without it keeps its old hash.
	q := mustParse(t, p.Canonical())
	if q.Hash() != p.Hash() || *q.Privacy.Adaptive != *p.Privacy.Adaptive || q.Privacy.SampleSeed != pr.SampleSeed {
		t.Errorf("canonical round trip changed the privacy section: %+v vs %+v", q.Privacy, pr)
	}
	base := mustParse(t, template(t, "digits_mlp"))
	if base.Hash() == p.Hash() {
		t.Error("privacy section does not change the hash")
	}
	if strings.Contains(string(base.Canonical()), "privacy") {
		t.Error("canonical form of a plan without privacy mentions it")
	}
	// The strategy is DP-FedAvg over the plan's strategy, only with the
	// collaborators given.
	if _, err := p.Strategy(1); err == nil {
		t.Error("Strategy without collaborators accepted a privacy plan")
	}
	s, err := p.StrategyFor(1, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*privacy.DPFedAvg); !ok || s.Name() != "dp-"+p.Aggregation.Strategy {
		t.Errorf("strategy %T %q, want DP-FedAvg over %s", s, s.Name(), p.Aggregation.Strategy)
	}
}

// Bad privacy settings: file:line: key: reason, wrapped as *yamlx.Error.
func TestPrivacySectionErrors(t *testing.T) {
	line := func(data []byte, key string) int {
		for i, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), key+":") && i > strings.Count(string(template(t, "digits_mlp")), "\n") {
				return i + 1
			}
		}
		return 0
	}
	for _, c := range []struct{ name, from, to, key, reason string }{
		{"noise", "noise: central", "noise: both", "noise", `must be "central" or "local", got "both"`},
		{"z", "noise_multiplier: 1.1", "noise_multiplier: 0", "noise_multiplier", "must be in (0, 1e6], got 0"},
		{"clip", "clip_norm: 0.5", "clip_norm: -1", "clip_norm", "must be in (0, 1e12], got -1"},
		{"q", "sample_rate: 0.5", "sample_rate: 1.5", "sample_rate", "must be in (0, 1], got 1.5"},
		{"delta", "target_delta: 1e-5", "target_delta: 1", "target_delta", "must be in (0, 1), got 1"},
		{"budget", "epsilon_budget: 8", "epsilon_budget: -2", "epsilon_budget", "got -2"},
		{"quantile", "target_quantile: 0.5", "target_quantile: 1", "target_quantile", "must be in (0, 1), got 1"},
		{"count noise", "count_noise_multiplier: 5", "count_noise_multiplier: 0.5", "count_noise_multiplier", "must exceed noise_multiplier/2 = 0.55"},
		{"type", "clip_norm: 0.5", "clip_norm: big", "clip_norm", "must be a number"},
		{"unknown", "epsilon_budget: 8", "epsilon_budget: 8\n  epsilon: 3", "epsilon", "unknown"},
		// A mapping's line is that of its first key (yamlx's rule).
		{"adaptive local", "noise: central", "noise: local", "adaptive_clipping", "needs noise \"central\""},
	} {
		data := withPrivacy(t, strings.Replace(privacySection, c.from, c.to, 1))
		_, err := plan.Parse(data, "plan.yaml")
		var ye *yamlx.Error
		if err == nil || !errors.As(err, &ye) {
			t.Errorf("%s: err = %v, want a *yamlx.Error", c.name, err)
			continue
		}
		at := line(data, c.key)
		if c.key == "adaptive_clipping" {
			at = line(data, "target_quantile")
		}
		want := "plan.yaml:" + strconv.Itoa(at) + ": privacy."
		if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, c.key) || !strings.Contains(msg, c.reason) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q, want one line starting %q naming %s: %s", c.name, msg, want, c.key, c.reason)
		}
	}
	// A robust strategy cannot take one noised mean.
	data := regexp.MustCompile(`(?m)^  strategy: \S+`).ReplaceAll(withPrivacy(t, privacySection), []byte("  strategy: krum"))
	if _, err := plan.Parse(data, "plan.yaml"); err == nil || !strings.Contains(err.Error(), "aggregation.strategy: krum needs the individual updates") {
		t.Errorf("krum with privacy: err = %v", err)
	}
}
