package plan_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
)

// byzRounds keeps the attack runs short: 5 rounds of one local epoch.
const byzRounds = 5

// byzAttack turns the attacker's honestly trained weights into what it
// sends, with the example count it claims.
type byzAttack func(global, honest tensor.Weights, n int) (tensor.Weights, int)

func hugeNorm(global, honest tensor.Weights, n int) (tensor.Weights, int) {
	out := global.Clone()
	d, _ := honest.Sub(global)
	_ = out.AddScaledInPlace(1000, d)
	return out, n
}

func scaledMinus10(global, honest tensor.Weights, n int) (tensor.Weights, int) {
	out := global.Clone()
	d, _ := honest.Sub(global)
	_ = out.AddScaledInPlace(-10, d)
	return out, n
}

func zeroWeightsManyExamples(global, _ tensor.Weights, _ int) (tensor.Weights, int) {
	return global.ZerosLike(), 1_000_000
}

type byzRun struct {
	accuracy float64
	reports  []strategy.AggregateReport
	// spread is the largest ratio of an honest update's norm to the
	// round's median norm, over the rounds (honest runs only).
	spread float64
}

// federatePlan runs byzRounds rounds of the plan's digits federation (3
// IID shards, the plan's model and training settings) with strategy s;
// client 2 applies attack, if any.
func federatePlan(t *testing.T, p *plan.Plan, s strategy.Strategy, attack byzAttack) byzRun {
	t.Helper()
	d := p.DataLoader
	train, test, err := datasets.Prepare(d.Dataset, d.TestFraction, d.Seed)
	if err != nil {
		t.Fatal(err)
	}
	shards, err := datasets.PartitionIID(train, d.Partitioning.Shards, d.Partitioning.Seed)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := workspace.NewModel(p)
	if err != nil {
		t.Fatal(err)
	}
	global := m.Weights()
	var run byzRun
	for round := 1; round <= byzRounds; round++ {
		var results []strategy.FitResult
		for c, shard := range shards {
			if err := m.SetWeights(global); err != nil {
				t.Fatal(err)
			}
			cfg := p.TrainConfig()
			cfg.Seed = int64(round*100 + c)
			if err := m.Train(context.Background(), shard, cfg, nil); err != nil {
				t.Fatal(err)
			}
			w, n := m.Weights(), shard.N
			if attack != nil && c == 2 {
				w, n = attack(global, w, n)
			}
			results = append(results, strategy.FitResult{Client: fmt.Sprintf("col-%d", c), Weights: w, NumExamples: n})
		}
		if attack == nil {
			var norms []float64
			for _, r := range results {
				d, _ := r.Weights.Sub(global)
				norms = append(norms, d.L2Norm())
			}
			med := slices.Sorted(slices.Values(norms))[len(norms)/2]
			for _, n := range norms {
				run.spread = max(run.spread, n/med, med/n)
			}
		}
		next, rep, err := s.AggregateFit(round, global, results)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		run.reports = append(run.reports, rep)
		global = next
	}
	if err := m.SetWeights(global); err != nil {
		t.Logf("final weights unusable (%v): chance level", err)
		return run
	}
	met, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	run.accuracy = met.Accuracy
	return run
}

// digitsPlan is the digits_mlp template dealt to 3 collaborators, with
// the validator as the template leaves it (max_update_norm 0, no
// max_num_examples): the defaults.
func digitsPlan(t *testing.T) *plan.Plan {
	t.Helper()
	data := bytes.Replace(template(t, "digits_mlp"), []byte("    shards: 2\n"), []byte("    shards: 3\n"), 1)
	p := mustParse(t, data)
	if p.DataLoader.Partitioning.Shards != 3 || p.Aggregation.Validator.MaxUpdateNorm != 0 || p.Aggregation.Validator.MaxNumExamples != 0 {
		t.Fatalf("digits plan: shards %d, validator %+v", p.DataLoader.Partitioning.Shards, p.Aggregation.Validator)
	}
	return p
}

// TestByzantineDefaults (issue 23, defect 4): with the plan's defaults —
// max_update_norm and max_num_examples left at 0 — each of the three
// attacks (an update of huge norm, an update scaled by −10, zero weights
// claiming 1 000 000 examples) is rejected in every round and the
// federation reaches the accuracy of the honest clients. The same attacks
// against a validator without bounds (what 0 meant before) drive FedAvg
// far below: the attacks are real.
func TestByzantineDefaults(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains MLPs for some seconds (skipped in -short and under -race)")
	}
	p := digitsPlan(t)
	defended := func() strategy.Strategy {
		s, err := p.Strategy(0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	v := p.Validator()
	if v.NormFactor != plan.DefaultNormFactor || v.MaxNumExamples == 0 {
		t.Fatalf("default validator %+v: no derived norm bound or example cap", v)
	}
	honest := federatePlan(t, p, defended(), nil)
	t.Logf("honest (3 collaborators, defaults): accuracy %.4f; honest update norms within %.2f× of the round's median", honest.accuracy, honest.spread)
	for _, rep := range honest.reports {
		if len(rep.Rejected) != 0 {
			t.Errorf("round %d: the defaults rejected an honest update: %v", rep.Round, rep.Rejected)
		}
	}
	if honest.spread >= plan.DefaultNormFactor {
		t.Errorf("honest norms spread %.2f× around the median, the derived bound (%g×) would reject them", honest.spread, float64(plan.DefaultNormFactor))
	}
	for _, a := range []struct {
		name  string
		fn    byzAttack
		check string
	}{
		{"huge norm (×1000)", hugeNorm, "norm check"},
		{"scaled by −10", scaledMinus10, "norm check"},
		{"zero weights, 1 000 000 examples", zeroWeightsManyExamples, "examples check"},
	} {
		def := federatePlan(t, p, defended(), a.fn)
		open := federatePlan(t, p, &strategy.FedAvg{}, a.fn)
		t.Logf("%s: defaults %.4f, unbounded %.4f (honest %.4f); round 1: %s", a.name, def.accuracy, open.accuracy, honest.accuracy,
			def.reports[0].Rejected["col-2"])
		for _, rep := range def.reports {
			if why := rep.Rejected["col-2"]; len(rep.Rejected) != 1 || !strings.Contains(why, a.check) {
				t.Errorf("%s, round %d: rejected %v, want exactly the attacker by the %s", a.name, rep.Round, rep.Rejected, a.check)
			}
		}
		if def.accuracy < honest.accuracy-0.03 {
			t.Errorf("%s: accuracy %.4f with the defaults, honest %.4f", a.name, def.accuracy, honest.accuracy)
		}
		if open.accuracy > honest.accuracy-0.2 {
			t.Errorf("%s: accuracy %.4f without bounds, honest %.4f: the attack does not bite, the test proves nothing", a.name, open.accuracy, honest.accuracy)
		}
	}
}

// TestExamplesCap: the cap derived from the partitioning is the largest
// shard an honest collaborator can hold: never below a real shard's size,
// and an explicit max_num_examples replaces it.
func TestExamplesCap(t *testing.T) {
	p := digitsPlan(t)
	d := p.DataLoader
	train, _, err := datasets.Prepare(d.Dataset, d.TestFraction, d.Seed)
	if err != nil {
		t.Fatal(err)
	}
	shards, err := datasets.PartitionIID(train, d.Partitioning.Shards, d.Partitioning.Seed)
	if err != nil {
		t.Fatal(err)
	}
	n, how := p.ExamplesCap()
	largest := 0
	for _, s := range shards {
		largest = max(largest, s.N)
	}
	t.Logf("cap %d (%s); largest shard %d of %d training rows", n, how, largest, train.N)
	if n < largest || n > largest+5 {
		t.Errorf("cap %d for a largest shard of %d rows", n, largest)
	}
	p.Aggregation.Validator.MaxNumExamples = 100
	if n, _ := p.ExamplesCap(); n != 100 || p.Validator().MaxNumExamples != 100 {
		t.Errorf("explicit max_num_examples 100: cap %d", n)
	}
	p.Aggregation.Validator.MaxUpdateNorm = 2.5
	if v := p.Validator(); v.MaxUpdateNorm != 2.5 {
		t.Errorf("explicit max_update_norm 2.5: validator %+v", v)
	}
}

// edit replaces each old line fragment of data by its new one, failing
// when one is not there.
func edit(t *testing.T, data []byte, pairs ...string) []byte {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !bytes.Contains(data, []byte(pairs[i])) {
			t.Fatalf("template has no %q", pairs[i])
		}
		data = bytes.Replace(data, []byte(pairs[i]), []byte(pairs[i+1]), 1)
	}
	return data
}

// TestLint (issue 23, defect 4): plan lint warns about every knob that
// leaves a bound absent, loose or unable to act, with the file, line and
// key, and is silent on a plan where every knob is bounded.
func TestLint(t *testing.T) {
	keys := func(ws []string) []string {
		var out []string
		for _, w := range ws {
			// "plan.yaml:LINE: key: reason"
			parts := strings.SplitN(w, ": ", 3)
			if len(parts) != 3 || !strings.HasPrefix(parts[0], "plan.yaml:") || parts[0] == "plan.yaml:0" {
				t.Errorf("warning %q is not file:line: key: reason", w)
				continue
			}
			out = append(out, parts[1])
		}
		return out
	}
	base := template(t, "digits_mlp")
	got := keys(mustParse(t, base).Lint())
	want := []string{"aggregation.validator.max_update_norm", "aggregation.validator.min_accepted", "aggregation.strategy"}
	if !slices.Equal(got, want) {
		t.Errorf("digits_mlp template (2 shards, fedavg, min_accepted 1): warnings %v, want %v", got, want)
	}
	bounded := edit(t, base, "shards: 2", "shards: 3", "strategy: fedavg", "strategy: median", "min_accepted: 1", "min_accepted: 2")
	if ws := mustParse(t, bounded).Lint(); len(ws) != 0 {
		t.Errorf("bounded plan: warnings %q", ws)
	}
	loose := edit(t, bounded, "round_timeout: 10m", "round_timeout: 0s", "kind: iid", "kind: dirichlet\n    alpha: 0.5")
	got = keys(mustParse(t, loose).Lint())
	want = []string{"aggregation.validator.max_num_examples", "network.round_timeout"}
	if !slices.Equal(got, want) {
		t.Errorf("dirichlet, no round timeout: warnings %v, want %v", got, want)
	}
	explicit := edit(t, base, "max_update_norm: 0 ", "max_update_norm: 5 ", "strategy: fedavg", "strategy: krum", "min_accepted: 1", "min_accepted: 3")
	if ws := mustParse(t, explicit).Lint(); len(ws) != 0 {
		t.Errorf("explicit norm bound with 2 shards: warnings %q", ws)
	}
}
