package run

import (
	"context"
	"fmt"
	"slices"

	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/vfl/plan"
	"github.com/teeml/teeml/vfl/split"
)

// ReferenceJoined trains teeml's ordinary (non-split, GoMLX) model of the
// same family — widedeep for widedeep, logreg for lr — on the joined table
// a single party would hold: both sides' columns for the rows both sides
// have, the same train/test division by ID hash, the same batch size,
// epochs, learning rate and seed. It is an independent implementation, a
// cross-check of the split model's numbers (the in-process centralised
// baseline runs the split model's own code).
func ReferenceJoined(ctx context.Context, p *plan.Plan) (split.Metrics, error) {
	full, err := datasets.Load(p.Dataset)
	if err != nil {
		return split.Metrics{}, err
	}
	l, err := LoadSide(p, RoleLeader)
	if err != nil {
		return split.Metrics{}, err
	}
	f, err := LoadSide(p, RoleFollower)
	if err != nil {
		return split.Metrics{}, err
	}
	inF := map[string]bool{}
	for _, id := range f.IDs {
		inF[id] = true
	}
	var common []string
	for _, id := range l.IDs {
		if inF[id] {
			common = append(common, id)
		}
	}
	slices.Sort(common)
	var trainIDs, testIDs []string
	for _, id := range common {
		if unitHash(p.Seed, "test", id) < p.TestFraction {
			testIDs = append(testIDs, id)
		} else {
			trainIDs = append(trainIDs, id)
		}
	}
	rawTrain, err := selectIDs(full, trainIDs)
	if err != nil {
		return split.Metrics{}, err
	}
	rawTest, _ := selectIDs(full, testIDs)
	pipe := datasets.FitPipeline(p.Dataset, rawTrain)
	train, err := pipe.Apply(rawTrain)
	if err != nil {
		return split.Metrics{}, err
	}
	test, err := pipe.Apply(rawTest)
	if err != nil {
		return split.Metrics{}, err
	}
	kind := ml.KindWideDeep
	if p.Model.Kind == split.KindLR {
		kind = ml.KindLogReg
	}
	spec := ml.SpecFor(train)
	if kind == ml.KindWideDeep {
		spec.Hidden = append([]int{}, p.Model.Hidden...)
		spec.EmbeddingDim = p.Model.Embedding
	}
	m, err := ml.New(kind, spec, p.Seed)
	if err != nil {
		return split.Metrics{}, fmt.Errorf("reference model: %w", err)
	}
	cfg := ml.DefaultTrainConfig(kind)
	cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Seed = p.Training.Epochs, p.Training.BatchSize, p.Training.LearningRate, p.Seed
	if err := m.Train(ctx, train, cfg, nil); err != nil {
		return split.Metrics{}, fmt.Errorf("reference model: %w", err)
	}
	probs, err := m.Predict(test)
	if err != nil {
		return split.Metrics{}, err
	}
	pos := make([]float64, test.N)
	for i := range pos {
		pos[i] = float64(probs[2*i+1])
	}
	return split.Evaluate(pos, test.Y), nil
}
