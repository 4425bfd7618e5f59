package workspace

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/runner"
	"github.com/teeml/teeml/fl/treefed"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

// NewRunner returns the external training runner of a plan with
// task_runner.model external, for party in workspace ws: train and eval
// are the preprocessed data handed to it (either may be nil). Before every
// task it checks the runner's files against the digests pinned in the
// plan. Close it when done.
func NewRunner(ws string, p *plan.Plan, party string, info datasets.Dataset, train, eval *datasets.Dataset, log *slog.Logger) (*runner.Runner, error) {
	r := p.TaskRunner.Runner
	if p.TaskRunner.Model != plan.ModelExternal || r == nil {
		return nil, fmt.Errorf("workspace: task_runner.model is %s, not %s", p.TaskRunner.Model, plan.ModelExternal)
	}
	abs, err := filepath.Abs(ws)
	if err != nil {
		return nil, err
	}
	if err := p.VerifyRunnerFiles(abs); err != nil {
		return nil, err
	}
	tc := p.TrainConfig()
	return runner.New(runner.Config{
		Command: r.Command, Workspace: abs, Timeout: r.Timeout, Env: r.Env, Persistent: r.Persistent,
		Verify: func() error { return p.VerifyRunnerFiles(abs) },
		Party:  party,
		Hyper: runner.Hyperparameters{Epochs: tc.Epochs, BatchSize: tc.BatchSize, LR: tc.LR, Optimizer: tc.Optimizer,
			WeightDecay: tc.WeightDecay, Seed: tc.Seed},
		Dataset: runner.InfoFor(&info), Train: train, Eval: eval, Logger: log,
	})
}

// initExternal runs the runner's init task for plan init: the initial
// global model comes from the user's code (task_runner.seed in the
// hyperparameters), not from a Go model.
func initExternal(ws string, p *plan.Plan, rawTrain *datasets.Dataset) (tensor.Weights, error) {
	r, err := NewRunner(ws, p, "plan-init", *rawTrain, nil, nil, slog.Default())
	if err != nil {
		return nil, err
	}
	defer r.Close()
	w, err := r.Init(context.Background())
	if err != nil {
		return nil, fmt.Errorf("workspace: plan init: %w", err)
	}
	return w, nil
}

// initExternalPlan is InitPlan for model external: it pins the runner's
// files into the plan (so the plan hash covers the training code), runs
// the runner's init task and writes its weights with the dataset,
// preprocessing and plan hash metadata, then freezes the plan.
func initExternalPlan(ws string, p *plan.Plan) (string, error) {
	if err := p.PinRunnerFiles(ws); err != nil {
		return "", err
	}
	rawTrain, _, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		return "", err
	}
	w, err := initExternal(ws, p, rawTrain)
	if err != nil {
		return "", err
	}
	md := map[string]string{
		job.MetaDataset:      p.DataLoader.Dataset,
		job.MetaPipeline:     datasets.FitPipeline(p.DataLoader.Dataset, rawTrain).JSON(),
		job.MetaSplitSeed:    strconv.FormatInt(p.DataLoader.Seed, 10),
		job.MetaTestFraction: strconv.FormatFloat(p.DataLoader.TestFraction, 'g', -1, 64),
		MetaPlanHash:         p.Hash(),
		MetaModel:            plan.ModelExternal,
	}
	out := filepath.Join(ws, filepath.FromSlash(p.Aggregator.InitStatePath))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("workspace: plan init: %w", err)
	}
	if err := safetensors.WriteFile(out, w, md); err != nil {
		return "", fmt.Errorf("workspace: plan init: %s: %w", p.Aggregator.InitStatePath, err)
	}
	return p.Freeze(ws)
}

// initTreePlan is InitPlan for the tree models (rf, gbdt): the initial
// global model is treefed.Empty (no trees), written with the dataset,
// split and plan hash metadata and MetaModel, then the plan is frozen.
func initTreePlan(ws string, p *plan.Plan) (string, error) {
	md := map[string]string{
		job.MetaDataset:      p.DataLoader.Dataset,
		job.MetaSplitSeed:    strconv.FormatInt(p.DataLoader.Seed, 10),
		job.MetaTestFraction: strconv.FormatFloat(p.DataLoader.TestFraction, 'g', -1, 64),
		MetaPlanHash:         p.Hash(),
		MetaModel:            p.TaskRunner.Model,
	}
	out := filepath.Join(ws, filepath.FromSlash(p.Aggregator.InitStatePath))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("workspace: plan init: %w", err)
	}
	if err := safetensors.WriteFile(out, treefed.Empty(), md); err != nil {
		return "", fmt.Errorf("workspace: plan init: %s: %w", p.Aggregator.InitStatePath, err)
	}
	return p.Freeze(ws)
}

// MetaModel marks weights of a model no ml.Model loads: an external
// runner's ("external") or a tree model's ("rf", "gbdt": treefed).
const MetaModel = "teeml.fl.model"

// templateRunnerFiles adds a template's external runner code to files: a
// plan file runner/NAME is templates/runners/NAME in the embedded
// templates.
func templateRunnerFiles(p *plan.Plan, files map[string][]byte) error {
	if p.TaskRunner.Runner == nil {
		return nil
	}
	for rel := range p.TaskRunner.Runner.Files {
		name, ok := strings.CutPrefix(rel, "runner/")
		if !ok {
			return fmt.Errorf("workspace: template runner file %s is not under runner/", rel)
		}
		b, err := templateFS.ReadFile("templates/runners/" + name)
		if err != nil {
			return fmt.Errorf("workspace: template runner file %s: %w", rel, err)
		}
		files[rel] = b
	}
	return nil
}
