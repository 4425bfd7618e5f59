package run

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/treefed"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
)

// collaboratorTrainer is the collaborator's trainer for the plan: the
// built-in Go model, or, for task_runner.model external, the plan's
// external runner (fl/runner) fed with the collaborator's shard. The
// returned func releases it.
func collaboratorTrainer(ws string, p *plan.Plan, name string, shard *workspace.Shard, log *slog.Logger) (protocol.Trainer, func(), error) {
	if p.TaskRunner.Model == plan.ModelExternal {
		r, err := workspace.NewRunner(ws, p, name, *shard.Train, shard.Train, shard.Test, log)
		if err != nil {
			return nil, nil, err
		}
		return r, func() { r.Close() }, nil
	}
	if plan.IsTreeModel(p.TaskRunner.Model) {
		// Trees train on the raw rows (missing values routed natively),
		// like teeml train --model rf|gbdt.
		return &treefed.Trainer{Config: p.TreesConfig(), Data: shard.RawTrain, Validation: shard.RawTest}, func() {}, nil
	}
	model, _, err := workspace.NewModel(p)
	if err != nil {
		return nil, nil, err
	}
	return &protocol.MLTrainer{Model: model, Data: shard.Train, Validation: shard.Test, Config: p.TrainConfig()}, func() {}, nil
}

// treeEvaluator is the aggregator's evaluation of merged tree models on
// the raw held-out test split.
func treeEvaluator(p *plan.Plan) (evalFunc, error) {
	_, test, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		return nil, err
	}
	return func(w tensor.Weights) (ml.Metrics, error) {
		m, err := treefed.Decode(w, "global model")
		if err != nil {
			return ml.Metrics{}, err
		}
		return treefed.Metrics(m, test)
	}, nil
}

// evalFunc evaluates a global model on the aggregator's held-out test split.
type evalFunc func(w tensor.Weights) (ml.Metrics, error)

// runnerEvaluator is the aggregator's evaluation of global models with an
// external runner: the runner's evaluate task on the held-out test split,
// so any architecture the runner defines can be tracked.
func runnerEvaluator(ctx context.Context, ws string, p *plan.Plan, name string, test *datasets.Dataset, log *slog.Logger) (evalFunc, func(), error) {
	r, err := workspace.NewRunner(ws, p, name, *test, nil, test, log)
	if err != nil {
		return nil, nil, err
	}
	round := 0
	eval := func(w tensor.Weights) (ml.Metrics, error) {
		round++
		n, loss, m, err := r.EvaluateRound(ctx, round, w)
		if err != nil {
			return ml.Metrics{}, err
		}
		acc, ok := m["accuracy"]
		if test.Task == datasets.Classification && !ok {
			return ml.Metrics{}, fmt.Errorf("runner: evaluate reported no accuracy metric")
		}
		return ml.Metrics{Task: test.Task, N: n, Loss: loss, Accuracy: acc, RMSE: m["rmse"], MAE: m["mae"], R2: m["r2"]}, nil
	}
	return eval, func() { r.Close() }, nil
}
