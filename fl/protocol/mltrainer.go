package protocol

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
)

// Round config keys understood by MLTrainer, besides strategy.KeyRound.
const (
	KeyEpochs    = "epochs"
	KeyLR        = "learning_rate"
	KeyBatchSize = "batch_size"
)

// MLTrainer is a Trainer backed by an ml.Model and a local dataset. It is
// not safe for concurrent use (a collaborator calls it from one goroutine).
type MLTrainer struct {
	Model *ml.Model
	// Data is the local training set; Validation the local validation set
	// (Data when nil).
	Data, Validation *datasets.Dataset
	// Config is the base training configuration; the round config may
	// override epochs, learning_rate and batch_size, and the shuffle seed is
	// Config.Seed + 1000·server_round.
	Config ml.TrainConfig
}

// Train implements Trainer.
func (t *MLTrainer) Train(ctx context.Context, global tensor.Weights, cfg map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	if t.Model == nil || t.Data == nil {
		return nil, 0, nil, errors.New("MLTrainer needs a Model and Data")
	}
	if err := t.Model.SetWeights(global); err != nil {
		return nil, 0, nil, err
	}
	tc := t.Config
	if v, ok := intKey(cfg, KeyEpochs); ok {
		tc.Epochs = v
	}
	if v, ok := intKey(cfg, KeyBatchSize); ok {
		tc.BatchSize = v
	}
	if v, ok := cfg[KeyLR]; ok && v > 0 && !math.IsInf(v, 0) {
		tc.LR = v
	}
	// FedProx: the strategy sends proximal_mu; the centre is this round's
	// global model.
	if mu, ok := cfg[strategy.KeyProximalMu]; ok && mu > 0 && !math.IsInf(mu, 0) {
		tc.ProximalMu, tc.ProximalCenter = mu, global
	}
	if r, ok := intKey(cfg, strategy.KeyRound); ok {
		tc.Seed += 1000 * int64(r)
	}
	var last ml.EpochStats
	if err := t.Model.Train(ctx, t.Data, tc, func(e ml.EpochStats) { last = e }); err != nil {
		return nil, 0, nil, err
	}
	return t.Model.Weights(), t.Data.N, map[string]float64{"train_loss": last.Loss}, nil
}

// Evaluate implements Trainer.
func (t *MLTrainer) Evaluate(ctx context.Context, w tensor.Weights) (int, float64, map[string]float64, error) {
	ds := t.Validation
	if ds == nil {
		ds = t.Data
	}
	if t.Model == nil || ds == nil {
		return 0, 0, nil, errors.New("MLTrainer needs a Model and Data")
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, nil, err
	}
	if err := t.Model.SetWeights(w); err != nil {
		return 0, 0, nil, err
	}
	m, err := t.Model.Evaluate(ds)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("evaluate: %w", err)
	}
	out := m.Map()
	delete(out, "loss")
	return ds.N, m.Loss, out, nil
}

func intKey(cfg map[string]float64, k string) (int, bool) {
	v, ok := cfg[k]
	if !ok || v < 1 || v > 1e9 || v != math.Trunc(v) {
		return 0, false
	}
	return int(v), true
}
