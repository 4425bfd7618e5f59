package plan

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/teeml/teeml/fl/strategy"
)

// DefaultNormFactor is the derived update-norm bound used when
// aggregation.validator.max_update_norm is 0: an update whose norm
// ‖w − w_global‖ exceeds DefaultNormFactor × the median norm of the round's
// updates is rejected. Honest IID updates of one round are close to each
// other (digits MLP, 3 shards: within 1.07× of the median in
// TestByzantineDefaults), which leaves room for non-IID shards; an update
// scaled by −10 or inflated is far outside. The median is an honest norm as
// long as attackers are a minority of the updates, and it needs at least
// strategy.MinNormSample updates (see docs/fl-resilience.md).
const DefaultNormFactor = 3

// Validator is the strategy.Validator the plan's aggregation uses, with the
// safe defaults applied: max_update_norm 0 means the derived bound
// (DefaultNormFactor × the round's median norm), max_num_examples 0 means
// the cap derived from the plan's partitioning (ExamplesCap). Nothing is
// unbounded by default.
func (p *Plan) Validator() strategy.Validator {
	v := p.Aggregation.Validator
	out := strategy.Validator{MaxUpdateNorm: v.MaxUpdateNorm, MaxNumExamples: v.MaxNumExamples, MinAccepted: v.MinAccepted}
	if out.MaxUpdateNorm == 0 {
		out.NormFactor = DefaultNormFactor
	}
	if out.MaxNumExamples == 0 {
		out.MaxNumExamples, _ = p.ExamplesCap()
	}
	return out
}

// ExamplesCap is the largest NumExamples an honest collaborator can claim,
// and how it was set: max_num_examples when set, else the largest shard the
// plan's partitioning can deal ("shard:N" data). The training split of a
// bundled dataset has at most rows·(1 − test_fraction) + classes/2 rows
// (the split rounds per class); an IDX dataset (mnist) has its own split,
// bounded by its rows. IID shards are dealt round-robin, so none exceeds
// ⌈train/shards⌉; a Dirichlet shard can hold nearly the whole training
// split, which is the cap then. A collaborator training on its own data
// (a CSV path) with more rows needs an explicit max_num_examples.
func (p *Plan) ExamplesCap() (int, string) {
	if n := p.Aggregation.Validator.MaxNumExamples; n > 0 {
		return n, "max_num_examples"
	}
	d := &p.DataLoader
	info, ok := datasetInfo(d.Dataset)
	if !ok || info.Rows < 1 {
		return 0, ""
	}
	train := info.Rows
	if info.Bundled {
		train = min(info.Rows, int(math.Floor(float64(info.Rows)*(1-d.TestFraction)+float64(max(1, info.NumClasses))/2)))
	}
	shards := max(1, d.Partitioning.Shards)
	if d.Partitioning.Kind == "iid" {
		return (train + shards - 1) / shards, fmt.Sprintf("largest iid shard of %s: ⌈%d training rows / %d shards⌉", d.Dataset, train, shards)
	}
	return train, fmt.Sprintf("training rows of %s (a %s shard can hold nearly all)", d.Dataset, d.Partitioning.Kind)
}

// robustStrategies are the strategies whose aggregate one attacker within
// the validator's bounds cannot drag arbitrarily.
var robustStrategies = []string{"krum", "multikrum", "median", "trimmedmean"}

// Lint returns one warning line ("file:line: key: reason", like a plan
// error) per knob that leaves the federation open to a Byzantine or dead
// collaborator: a bound that is absent, derived loosely, or cannot act. An
// empty result means every knob is bounded. `teeml fl plan lint` prints it.
func (p *Plan) Lint() []string {
	var out []string
	warn := func(key, format string, args ...any) {
		out = append(out, p.errf(key, format, args...).Error())
	}
	ag := &p.Aggregation
	v := p.Validator()
	if IsTreeModel(p.TaskRunner.Model) {
		p.lintTrees(warn)
		return out
	}
	if m := p.minUpdates(); ag.Validator.MaxUpdateNorm == 0 && m < strategy.MinNormSample {
		warn("aggregation.validator.max_update_norm",
			"0: the derived bound (%g × the round's median update norm) needs %d updates per round, but a round may close with %d (min_collaborators, minimum_reporting, or the shards when it waits for all); set an explicit bound",
			float64(DefaultNormFactor), strategy.MinNormSample, m)
	}
	if ag.Validator.MaxNumExamples == 0 {
		n, how := p.ExamplesCap()
		switch {
		case n == 0:
			warn("aggregation.validator.max_num_examples", "0: no cap can be derived from the plan's dataset; a collaborator can claim any example count")
		case p.DataLoader.Partitioning.Kind != "iid":
			warn("aggregation.validator.max_num_examples", "0: capped at %d, the %s; a collaborator claiming that many outweighs the others — set a tighter cap", n, how)
		}
	}
	if v.MinAccepted <= 1 {
		warn("aggregation.validator.min_accepted", "%d: a round is aggregated from a single accepted update", ag.Validator.MinAccepted)
	}
	if !slices.Contains(robustStrategies, ag.Strategy) {
		warn("aggregation.strategy", "%s is a mean: an attacker within the norm and example bounds still moves it (robust: %s)",
			ag.Strategy, strings.Join(robustStrategies, ", "))
	}
	if p.Network.RoundTimeout == 0 {
		warn("network.round_timeout", "0: no limit; a round waits forever for a collaborator that stopped")
	}
	return out
}

// lintTrees is Lint for the tree models: the merge weighs every accepted
// ensemble equally (example counts do not weigh, norms do not exist), so
// only the minimum, the timeout and the merge itself are knobs.
func (p *Plan) lintTrees(warn func(key, format string, args ...any)) {
	if p.Validator().MinAccepted <= 1 {
		warn("aggregation.validator.min_accepted", "%d: the merged model may be one collaborator's ensemble", p.Aggregation.Validator.MinAccepted)
	}
	warn("task_runner.model", "%s: the merge averages every accepted ensemble (a poisoned one weighs 1/S); no robust merge exists yet", p.TaskRunner.Model)
	if p.Network.RoundTimeout == 0 {
		warn("network.round_timeout", "0: no limit; a round waits forever for a collaborator that stopped")
	}
}

// minUpdates is the fewest updates a round may close with, as far as the
// plan says; when a round waits for every collaborator of cols.yaml, the
// plan's shard count stands for their number.
func (p *Plan) minUpdates() int {
	if s := &p.StragglerHandling; s.Enabled() {
		return max(1, s.MinimumReporting)
	}
	if m := p.Aggregator.MinCollaborators; m > 0 {
		return m
	}
	return p.DataLoader.Partitioning.Shards
}

// LintFile reads the plan at path (frozen or not: its hash is not checked,
// lint is for the plan's author) and returns Lint's warnings.
func LintFile(path string) ([]string, error) {
	p, err := LoadUnfrozen(path)
	if err != nil {
		return nil, err
	}
	return p.Lint(), nil
}
