package main

import (
	"context"
	"fmt"

	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
)

// users is the bench's federation: digits' training split dealt
// round-robin to n users, one MLP (re)used for every local fit, and the
// test split for the global model's accuracy. Both tables train through it.
type users struct {
	names       []string
	data        []*datasets.Dataset
	te          *datasets.Dataset
	model       *ml.Model
	initial     tensor.Weights
	localEpochs int
	lr          float64
	seed        int64
}

func newUsers(tr, te *datasets.Dataset, n int, seed int64, localEpochs int, lr float64) (*users, error) {
	if n < 1 || n > tr.N {
		return nil, fmt.Errorf("clients %d: must be in 1..%d (the training examples)", n, tr.N)
	}
	shards := make([][]int, n)
	for i := 0; i < tr.N; i++ {
		shards[i%n] = append(shards[i%n], i)
	}
	u := &users{names: make([]string, n), data: make([]*datasets.Dataset, n), te: te,
		localEpochs: localEpochs, lr: lr, seed: seed}
	for i := range u.names {
		u.names[i] = fmt.Sprintf("c%03d", i)
		u.data[i] = tr.Subset(shards[i])
	}
	m, err := ml.New(ml.KindMLP, ml.SpecFor(tr), seed)
	if err != nil {
		return nil, err
	}
	u.model, u.initial = m, m.Weights()
	return u, nil
}

// train is user c's local SGD from global in round r.
func (u *users) train(r, c int, global tensor.Weights) (tensor.Weights, error) {
	if err := u.model.SetWeights(global); err != nil {
		return nil, err
	}
	cfg := ml.DefaultTrainConfig(ml.KindMLP)
	cfg.Epochs, cfg.Optimizer, cfg.LR, cfg.BatchSize = u.localEpochs, "sgd", u.lr, 32
	cfg.Seed = u.seed + 1000*int64(r) + int64(c)
	if err := u.model.Train(context.Background(), u.data[c], cfg, nil); err != nil {
		return nil, err
	}
	return u.model.Weights(), nil
}

// accuracy is w's accuracy on the test split.
func (u *users) accuracy(w tensor.Weights) (float64, error) {
	if err := u.model.SetWeights(w); err != nil {
		return 0, err
	}
	m, err := u.model.Evaluate(u.te)
	return m.Accuracy, err
}
