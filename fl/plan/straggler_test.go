package plan_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
)

// withStraggler inserts a straggler_handling_policy section before assigner.
func withStraggler(t *testing.T, base, section string) string {
	t.Helper()
	if !strings.Contains(base, "\nassigner:") {
		t.Fatal("no assigner section in template")
	}
	return strings.Replace(base, "\nassigner:", "\nstraggler_handling_policy:\n"+section+"\nassigner:", 1)
}

func TestStragglerPolicyParses(t *testing.T) {
	base := string(template(t, "digits_mlp"))
	cut := mustParse(t, []byte(withStraggler(t, base, "  policy: cutoff_time\n  straggler_cutoff_time: 45s\n  minimum_reporting: 2")))
	if want := (plan.StragglerPolicy{Policy: plan.StragglerCutoffTime, CutoffTime: 45 * time.Second, MinimumReporting: 2}); cut.StragglerHandling != want {
		t.Fatalf("cutoff policy %+v, want %+v", cut.StragglerHandling, want)
	}
	// OpenFL writes the cutoff in seconds: same plan, same hash.
	secs := mustParse(t, []byte(withStraggler(t, base, "  policy: cutoff_time\n  straggler_cutoff_time: 45\n  minimum_reporting: 2")))
	if secs.Hash() != cut.Hash() {
		t.Error("straggler_cutoff_time 45 and 45s hash differently")
	}
	pct := mustParse(t, []byte(withStraggler(t, base, "  policy: percentage\n  percent_collaborators_needed: 0.5")))
	if want := (plan.StragglerPolicy{Policy: plan.StragglerPercentage, PercentNeeded: 0.5, MinimumReporting: 1}); pct.StragglerHandling != want {
		t.Fatalf("percentage policy %+v, want %+v", pct.StragglerHandling, want)
	}
	for _, p := range []*plan.Plan{cut, pct} {
		c := p.Canonical()
		q := mustParse(t, c)
		if q.Hash() != p.Hash() || !reflect.DeepEqual(q.StragglerHandling, p.StragglerHandling) {
			t.Errorf("canonical form does not round-trip:\n%s", c)
		}
	}
	plain := mustParse(t, []byte(base))
	if plain.Hash() == cut.Hash() || cut.Hash() == pct.Hash() {
		t.Error("the straggler section does not change the hash")
	}
	// minimum_reporting's default spelled out keeps the hash.
	pct1 := mustParse(t, []byte(withStraggler(t, base, "  policy: percentage\n  percent_collaborators_needed: 0.5\n  minimum_reporting: 1")))
	if pct1.Hash() != pct.Hash() {
		t.Error("spelling out minimum_reporting: 1 changed the hash")
	}
}

// TestStragglerAbsentKeepsHash: plans without the section have no trace of
// it in their canonical form, so their hashes (and frozen workspaces) are
// those from before the section existed.
func TestStragglerAbsentKeepsHash(t *testing.T) {
	for _, name := range workspace.Templates() {
		p := mustParse(t, template(t, name))
		if p.StragglerHandling.Enabled() {
			t.Fatalf("%s: template enables straggler handling", name)
		}
		if strings.Contains(string(p.Canonical()), "straggler") {
			t.Errorf("%s: canonical form mentions straggler handling:\n%s", name, p.Canonical())
		}
	}
}

func TestStragglerNeeded(t *testing.T) {
	for _, c := range []struct {
		s       plan.StragglerPolicy
		n, want int
	}{
		{plan.StragglerPolicy{Policy: plan.StragglerPercentage, PercentNeeded: 0.5, MinimumReporting: 1}, 3, 2},
		{plan.StragglerPolicy{Policy: plan.StragglerPercentage, PercentNeeded: 0.5, MinimumReporting: 1}, 4, 2},
		{plan.StragglerPolicy{Policy: plan.StragglerPercentage, PercentNeeded: 0.5, MinimumReporting: 3}, 4, 3},
		{plan.StragglerPolicy{Policy: plan.StragglerPercentage, PercentNeeded: 0.7, MinimumReporting: 1}, 10, 7},
		{plan.StragglerPolicy{Policy: plan.StragglerPercentage, PercentNeeded: 1, MinimumReporting: 1}, 3, 3},
		{plan.StragglerPolicy{Policy: plan.StragglerPercentage, PercentNeeded: 0.01, MinimumReporting: 9}, 3, 3},
		{plan.StragglerPolicy{Policy: plan.StragglerCutoffTime, CutoffTime: time.Second, MinimumReporting: 1}, 5, 5},
	} {
		if got := c.s.Needed(c.n); got != c.want {
			t.Errorf("%+v.Needed(%d) = %d, want %d", c.s, c.n, got, c.want)
		}
	}
}

func TestStragglerValidationErrors(t *testing.T) {
	base := string(template(t, "digits_mlp"))
	sec := func(s string) string { return withStraggler(t, base, s) }
	cut := "  policy: cutoff_time\n  straggler_cutoff_time: 30s"
	cases := []struct {
		data, line, key, msg string
	}{
		{sec("  policy: deadline"), "  policy: deadline", "straggler_handling_policy.policy", `must be cutoff_time or percentage, got "deadline"`},
		{sec("  straggler_cutoff_time: 30s"), "  straggler_cutoff_time: 30s", "straggler_handling_policy.policy", "missing"},
		{sec("  policy: cutoff_time"), "  policy: cutoff_time", "straggler_handling_policy.straggler_cutoff_time", "needs a positive cutoff"},
		{sec("  policy: cutoff_time\n  straggler_cutoff_time: soon"), "  straggler_cutoff_time: soon", "straggler_handling_policy.straggler_cutoff_time", "must be a duration"},
		{sec("  policy: cutoff_time\n  straggler_cutoff_time: -3"), "  straggler_cutoff_time: -3", "straggler_handling_policy.straggler_cutoff_time", "must be a positive duration"},
		{sec("  policy: cutoff_time\n  straggler_cutoff_time: 20m"), "  straggler_cutoff_time: 20m", "straggler_handling_policy.straggler_cutoff_time", "must be shorter than network.round_timeout 10m0s"},
		{sec(cut + "\n  percent_collaborators_needed: 0.5"), "  percent_collaborators_needed: 0.5", "straggler_handling_policy.percent_collaborators_needed", "only for policy percentage"},
		{sec("  policy: percentage"), "  policy: percentage", "straggler_handling_policy.percent_collaborators_needed", "needs a value in (0, 1], got 0"},
		{sec("  policy: percentage\n  percent_collaborators_needed: 1.5"), "  percent_collaborators_needed: 1.5", "straggler_handling_policy.percent_collaborators_needed", "needs a value in (0, 1], got 1.5"},
		{sec("  policy: percentage\n  percent_collaborators_needed: 0.5\n  straggler_cutoff_time: 5s"), "  straggler_cutoff_time: 5s", "straggler_handling_policy.straggler_cutoff_time", "only for policy cutoff_time"},
		{sec(cut + "\n  minimum_reporting: 0"), "  minimum_reporting: 0", "straggler_handling_policy.minimum_reporting", "must be in 1..1000000, got 0"},
		{sec(cut + "\n  minimum_reporting: two"), "  minimum_reporting: two", "straggler_handling_policy.minimum_reporting", "must be an integer"},
		{sec(cut + "\n  cutoff: 3"), "  cutoff: 3", "straggler_handling_policy.cutoff", "unknown key (known in straggler_handling_policy: policy, straggler_cutoff_time, percent_collaborators_needed, minimum_reporting)"},
		{strings.Replace(sec(cut), "min_collaborators: 0", "min_collaborators: 2", 1), "min_collaborators: 2", "aggregator.min_collaborators", "must be 0 when straggler_handling_policy is set"},
		{strings.Replace(sec(cut+"\n  minimum_reporting: 1"), "min_accepted: 1", "min_accepted: 2", 1), "min_accepted: 2", "aggregation.validator.min_accepted", "2 exceeds straggler_handling_policy.minimum_reporting 1"},
		{withStraggler(t, base, "  - policy: cutoff_time"), "  - policy: cutoff_time", "straggler_handling_policy", "must be a mapping, got a list"},
	}
	for _, c := range cases {
		_, err := plan.Parse([]byte(c.data), "plan.yaml")
		if err == nil {
			t.Errorf("%s: no error for\n%s", c.key, c.data)
			continue
		}
		want := "plan.yaml:" + itoa(lineOf(t, c.data, c.line)) + ": " + c.key + ": "
		if got := err.Error(); !strings.HasPrefix(got, want) || !strings.Contains(got, c.msg) || strings.Contains(got, "\n") {
			t.Errorf("got  %v\nwant %s…%s", err, want, c.msg)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
