package plan

import (
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/fl/treefed"
	"github.com/teeml/teeml/ml/datasets"
)

// Trees is task_runner.trees, the hyper-parameters of the tree models rf
// and gbdt (fl/treefed, docs/classical-ml.md "Federated trees"):
//
//	task_runner:
//	  model: gbdt            # or rf
//	  optimizer: adam        # unused by trees, kept for the section's shape
//	  lr: 0.1                # gbdt: learning rate
//	  seed: 1                # every collaborator's ensemble seed
//	  trees:
//	    trees: 60            # rf: trees; gbdt: boosting rounds, per collaborator
//	    num_leaves: 15       # gbdt (default 31)
//	    min_leaf: 5          # rf: min rows per leaf (1); gbdt: min_data_in_leaf (20)
//	    max_depth: 0         # 0: unbounded
//	    max_features: 0      # rf: features per split (0: sqrt(d) for classes, d for regression)
//	    lambda: 0            # gbdt: L2 regularisation of leaf values
//
// Every collaborator grows its ensemble on its rows in the plan's one
// round (aggregator.rounds_to_train must be 1) and the aggregator merges
// them; aggregation.strategy must be fedavg, whose tree analogue the
// merge is (forests concatenated, boosted models averaged in raw-score
// space), with no settings.
type Trees struct {
	Trees       int
	MaxDepth    int
	NumLeaves   int
	MinLeaf     int
	MaxFeatures int
	Lambda      float64
}

// IsTreeModel reports whether model is a tree model (rf, gbdt).
func IsTreeModel(model string) bool { return slices.Contains(treefed.Kinds, model) }

// TreesConfig is the collaborators' ensemble configuration.
func (p *Plan) TreesConfig() treefed.Config {
	t := p.TaskRunner
	c := treefed.Config{Model: t.Model, LR: t.LR, Seed: t.Seed}
	if tr := t.Trees; tr != nil {
		c.Trees, c.MaxDepth, c.NumLeaves, c.MinLeaf, c.MaxFeatures, c.Lambda =
			tr.Trees, tr.MaxDepth, tr.NumLeaves, tr.MinLeaf, tr.MaxFeatures, tr.Lambda
	}
	return c
}

func (ps *parser) trees(dst **Trees) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		t := &Trees{}
		*dst = t
		return ps.mapping(v, key, []field{
			{"trees", false, ps.integer(&t.Trees)},
			{"max_depth", false, ps.integer(&t.MaxDepth)},
			{"num_leaves", false, ps.integer(&t.NumLeaves)},
			{"min_leaf", false, ps.integer(&t.MinLeaf)},
			{"max_features", false, ps.integer(&t.MaxFeatures)},
			{"lambda", false, ps.float(&t.Lambda)},
		})
	}
}

func (t *Trees) canonical(w func(indent int, key, value string)) {
	w(1, "trees", "")
	w(2, "trees", strconv.Itoa(t.Trees))
	w(2, "max_depth", strconv.Itoa(t.MaxDepth))
	w(2, "num_leaves", strconv.Itoa(t.NumLeaves))
	w(2, "min_leaf", strconv.Itoa(t.MinLeaf))
	w(2, "max_features", strconv.Itoa(t.MaxFeatures))
	w(2, "lambda", cf(t.Lambda))
}

// validateTrees checks task_runner.trees and what a tree plan rules out.
func (p *Plan) validateTrees(info datasets.Info) error {
	t := &p.TaskRunner
	if !IsTreeModel(t.Model) {
		if t.Trees != nil {
			return p.errf("task_runner.trees", "only for models %v, the model is %s", treefed.Kinds, t.Model)
		}
		return nil
	}
	if len(t.Hidden) > 0 {
		return p.errf("task_runner.hidden", "%s has no hidden layers", t.Model)
	}
	if p.Aggregator.RoundsToTrain != 1 {
		return p.errf("aggregator.rounds_to_train", "model %s trains in one round (each collaborator grows its ensemble, the aggregator merges them), got %d",
			t.Model, p.Aggregator.RoundsToTrain)
	}
	if p.Collaborator.DeltaUpdates {
		return p.errf("collaborator.delta_updates", "model %s sends whole ensembles, not deltas", t.Model)
	}
	if p.Aggregation.Strategy != "fedavg" || len(p.Aggregation.Settings) > 0 {
		return p.errf("aggregation.strategy", "model %s merges the collaborators' ensembles: the strategy must be fedavg without settings, got %q",
			t.Model, p.Aggregation.Strategy)
	}
	if v := p.Aggregation.Validator; v.MaxUpdateNorm != 0 || v.MaxNumExamples != 0 {
		return p.errf("aggregation.validator", "model %s: max_update_norm and max_num_examples do not apply to merged ensembles (no norms; every ensemble weighs the same)", t.Model)
	}
	if p.Privacy.Enabled() {
		return p.errf("privacy", "model %s: DP-FedAvg (clipping and noising weights) does not apply to tree ensembles", t.Model)
	}
	if p.SecureAggregation.Enabled {
		return p.errf("secure_aggregation", "model %s: a sum of masked model files means nothing (the aggregator merges whole ensembles); use an attested aggregator instead", t.Model)
	}
	tr := t.Trees
	if tr == nil {
		return nil
	}
	for _, c := range []struct {
		key    string
		v, max int
	}{{"trees", tr.Trees, 100000}, {"max_depth", tr.MaxDepth, 64}, {"num_leaves", tr.NumLeaves, 131072},
		{"min_leaf", tr.MinLeaf, info.Rows}, {"max_features", tr.MaxFeatures, info.Features}} {
		if c.v < 0 || c.v > c.max {
			return p.errf("task_runner.trees."+c.key, "must be in 0..%d (0: default), got %d", c.max, c.v)
		}
	}
	if tr.NumLeaves == 1 {
		return p.errf("task_runner.trees.num_leaves", "must be ≥ 2 (0: default 31), got 1")
	}
	if t.Model == "rf" && (tr.NumLeaves != 0 || tr.Lambda != 0) {
		return p.errf("task_runner.trees", "num_leaves and lambda are gbdt settings, the model is rf")
	}
	if t.Model == "gbdt" && tr.MaxFeatures != 0 {
		return p.errf("task_runner.trees.max_features", "an rf setting, the model is gbdt")
	}
	if !(tr.Lambda >= 0) || !finite(tr.Lambda) {
		return p.errf("task_runner.trees.lambda", "must be ≥ 0, got %v", tr.Lambda)
	}
	return nil
}
