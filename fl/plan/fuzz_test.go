package plan_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
)

// FuzzParsePlan: Parse never panics, errors are one line, and an accepted
// plan's canonical form parses back to the same plan (same bytes, same hash).
func FuzzParsePlan(f *testing.F) {
	for _, name := range workspace.Templates() {
		b, err := workspace.TemplatePlan(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		p, err := plan.Parse(b, "seed")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p.Canonical())
	}
	if b, err := workspace.TemplatePlan("digits_mlp"); err == nil {
		for _, sec := range []string{"  policy: cutoff_time\n  straggler_cutoff_time: 2.5\n  minimum_reporting: 1\n",
			"  policy: percentage\n  percent_collaborators_needed: 0.66\n"} {
			f.Add(bytes.Replace(b, []byte("\nassigner:"), []byte("\nstraggler_handling_policy:\n"+sec+"assigner:"), 1))
		}
		f.Add(append(bytes.Clone(b), "\nencryption:\n  key: fl-data\n"...))
		f.Add(append(bytes.Clone(b), "\nencryption: {key: \"a\\nb\"}\n"...))
		f.Add(append(bytes.Clone(b), "\nprivacy:\n  noise: central\n  noise_multiplier: 1.1\n  clip_norm: 1\n  adaptive_clipping: {target_quantile: 0.5, learning_rate: 0.2, count_noise_multiplier: 2}\n  sample_rate: 0.3\n  target_delta: 1e-5\n  epsilon_budget: 3\n"...))
		f.Add(append(bytes.Clone(b), "\nprivacy: {noise: local, noise_multiplier: 2, clip_norm: 0.1, sample_seed: -4, target_delta: 0.001}\n"...))
	}
	f.Add([]byte("aggregator: {rounds_to_train: 0}\n"))
	f.Add([]byte("\"0\\n0\": 1\n")) // multi-line key in an error (found by fuzzing)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := plan.Parse(data, "fuzz.yaml")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		c := p.Canonical()
		q, err := plan.Parse(c, "canonical.yaml")
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%s", err, c)
		}
		if !bytes.Equal(q.Canonical(), c) || q.Hash() != p.Hash() {
			t.Fatalf("canonical form not stable:\n%s\n---\n%s", c, q.Canonical())
		}
	})
}
