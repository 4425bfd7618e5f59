// Package treefed is horizontal federated learning for tree ensembles
// (random forests and gradient-boosted trees, ml/trees): every
// collaborator grows an ensemble on its own rows in one round, the
// aggregator merges them (trees.Merge: forests concatenated, boosted
// models averaged in raw-score space) and evaluates the merged model.
//
// The model travels as the bytes of its LightGBM text file (model.txt)
// inside the FL protocol's ordinary weights (Encode, Decode): one tensor
// named TensorName, one byte per float32 element, so the protocol's
// chunked, hashed transfer carries it unchanged and no new task kind is
// needed. Like fl/strategy, the package knows nothing of transport.
package treefed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ml/trees"
)

// TensorName is the one tensor of a tree model's weights: the bytes of
// its model.txt, one per element.
const TensorName = "lightgbm/model.txt"

// Kinds are the tree models (task_runner.model).
var Kinds = []string{"rf", "gbdt"}

// MaxModelBytes bounds a decoded model file (a forest of 1000 deep trees
// is a few tens of MB).
const MaxModelBytes = 256 << 20

// emptyText is the content of the initial global model of a tree plan
// (a tensor of no elements would be a transfer of no bytes).
const emptyText = "teeml treefed: no trees yet\n"

// Empty is the initial global model of a tree plan: no trees yet.
func Empty() tensor.Weights {
	data := make([]float32, len(emptyText))
	for i := range len(emptyText) {
		data[i] = float32(emptyText[i])
	}
	return tensor.Weights{{Name: TensorName, Shape: []int{len(data)}, Data: data}}
}

// IsEmpty reports whether w is Empty.
func IsEmpty(w tensor.Weights) bool {
	b, err := Bytes(w)
	return err == nil && string(b) == emptyText
}

// Encode is m's weights: its model.txt bytes as TensorName.
func Encode(m *trees.Model) (tensor.Weights, error) {
	var buf bytes.Buffer
	if err := trees.WriteText(&buf, m); err != nil {
		return nil, fmt.Errorf("treefed: encode: %w", err)
	}
	b := buf.Bytes()
	data := make([]float32, len(b))
	for i, c := range b {
		data[i] = float32(c)
	}
	return tensor.Weights{{Name: TensorName, Shape: []int{len(b)}, Data: data}}, nil
}

// Bytes is the model.txt carried by w, checked: exactly one tensor named
// TensorName, one dimension, every element an integer in 0..255.
func Bytes(w tensor.Weights) ([]byte, error) {
	if len(w) != 1 || w[0].Name != TensorName {
		names := make([]string, len(w))
		for i, t := range w {
			names[i] = t.Name
		}
		return nil, fmt.Errorf("treefed: weights %v are not one %s tensor", names, TensorName)
	}
	t := w[0]
	if len(t.Shape) != 1 || t.Shape[0] != len(t.Data) {
		return nil, fmt.Errorf("treefed: %s: shape %v for %d values, want [%d]", TensorName, t.Shape, len(t.Data), len(t.Data))
	}
	if len(t.Data) > MaxModelBytes {
		return nil, fmt.Errorf("treefed: %s: %d bytes, more than %d", TensorName, len(t.Data), MaxModelBytes)
	}
	b := make([]byte, len(t.Data))
	for i, v := range t.Data {
		if !(v >= 0 && v <= 255) || v != float32(math.Trunc(float64(v))) {
			return nil, fmt.Errorf("treefed: %s: element %d is %v, not a byte", TensorName, i, v)
		}
		b[i] = byte(v)
	}
	return b, nil
}

// Decode parses the model carried by w (what names it in errors).
func Decode(w tensor.Weights, what string) (*trees.Model, error) {
	b, err := Bytes(w)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if string(b) == emptyText {
		return nil, fmt.Errorf("%s: no trees yet", what)
	}
	m, err := trees.ParseText(bytes.NewReader(b), what)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Config are the hyper-parameters of the collaborators' ensembles
// (task_runner.trees); zero values take ml/trees' defaults.
type Config struct {
	Model       string // "rf" or "gbdt"
	Trees       int    // rf: trees; gbdt: boosting rounds
	MaxDepth    int
	NumLeaves   int // gbdt
	MinLeaf     int // rf: min rows per leaf; gbdt: min_data_in_leaf
	MaxFeatures int // rf
	Lambda      float64
	LR          float64 // gbdt
	Seed        int64
	Threads     int
}

// Train grows c's ensemble on ds.
func Train(ctx context.Context, ds *datasets.Dataset, c Config) (*trees.Model, error) {
	switch c.Model {
	case "rf":
		return trees.TrainForest(ctx, ds, trees.ForestConfig{Trees: c.Trees, MaxDepth: c.MaxDepth, MinLeaf: c.MinLeaf,
			MaxFeatures: c.MaxFeatures, Threads: c.Threads, Seed: c.Seed})
	case "gbdt":
		return trees.TrainGBDT(ctx, ds, trees.GBDTConfig{Iterations: c.Trees, LR: c.LR, NumLeaves: c.NumLeaves,
			MaxDepth: c.MaxDepth, MinDataInLeaf: c.MinLeaf, Lambda: c.Lambda, Threads: c.Threads, Seed: c.Seed})
	}
	return nil, fmt.Errorf("treefed: model %q: want one of %v", c.Model, Kinds)
}

// Metrics scores m on ds as the FL tracker reports models.
func Metrics(m *trees.Model, ds *datasets.Dataset) (ml.Metrics, error) {
	if len(m.FeatureNames) != ds.D {
		return ml.Metrics{}, fmt.Errorf("treefed: model has %d features, data %d", len(m.FeatureNames), ds.D)
	}
	s := trees.Evaluate(m, ds)
	met := ml.Metrics{Task: ds.Task, N: ds.N, Loss: s.Loss, Accuracy: s.Accuracy, AUC: s.AUC}
	if ds.Task == datasets.Regression {
		met.RMSE = s.RMSE
	}
	return met, nil
}

// Trainer is a collaborator's half (fl/protocol.Trainer): Train grows an
// ensemble on the local rows, whatever the global model (the scheme is
// one round); Evaluate scores a global model on the local validation
// rows. Safe for use from one goroutine at a time.
type Trainer struct {
	Config Config
	// Data is the local training set (raw: trees need no scaling and
	// route missing values themselves); Validation the local evaluation
	// set (Data when nil).
	Data, Validation *datasets.Dataset
}

// Train implements fl/protocol.Trainer.
func (t *Trainer) Train(ctx context.Context, _ tensor.Weights, cfg map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	if t.Data == nil {
		return nil, 0, nil, errors.New("treefed: trainer has no data")
	}
	c := t.Config
	if r, ok := cfg[strategy.KeyRound]; ok && r >= 1 && r < 1e6 {
		c.Seed += 1000 * int64(r)
	}
	m, err := Train(ctx, t.Data, c)
	if err != nil {
		return nil, 0, nil, err
	}
	w, err := Encode(m)
	if err != nil {
		return nil, 0, nil, err
	}
	met, err := Metrics(m, t.Data)
	if err != nil {
		return nil, 0, nil, err
	}
	return w, t.Data.N, map[string]float64{"train_loss": met.Loss, "trees": float64(len(m.Trees))}, nil
}

// Evaluate implements fl/protocol.Trainer. The initial global model
// (Empty) is reported as 0 examples evaluated.
func (t *Trainer) Evaluate(ctx context.Context, w tensor.Weights) (int, float64, map[string]float64, error) {
	ds := t.Validation
	if ds == nil {
		ds = t.Data
	}
	if ds == nil {
		return 0, 0, nil, errors.New("treefed: trainer has no data")
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, nil, err
	}
	if IsEmpty(w) {
		// Round 1's global model: nothing to evaluate; no examples, so
		// the aggregator's mean of evaluations leaves it out.
		return 0, 0, nil, nil
	}
	m, err := Decode(w, "global model")
	if err != nil {
		return 0, 0, nil, err
	}
	met, err := Metrics(m, ds)
	if err != nil {
		return 0, 0, nil, err
	}
	out := met.Map()
	delete(out, "loss")
	return ds.N, met.Loss, out, nil
}

// Merge is the aggregator's strategy (fl/strategy.Strategy): AggregateFit
// decodes every collaborator's model (one that does not parse, or is not
// the same kind and features as the others', is rejected with its
// reason) and merges the accepted ones with trees.Merge. It has no
// mutable state.
type Merge struct {
	strategy.Options
	// MinAccepted is the number of models a round needs (default 1).
	MinAccepted int
	// Features, when set, are the feature names every model must have.
	Features []string

	mu sync.Mutex
}

// MaxElements implements strategy.ShapeFree: a model file's bytes.
func (*Merge) MaxElements() int { return MaxModelBytes }

// MaxElements implements strategy.ShapeFree (fl/protocol's collaborator
// then accepts a model of any size).
func (*Trainer) MaxElements() int { return MaxModelBytes }

// Name implements strategy.Strategy.
func (*Merge) Name() string { return "treemerge" }

// AggregateFit implements strategy.Strategy.
func (s *Merge) AggregateFit(round int, _ tensor.Weights, results []strategy.FitResult) (tensor.Weights, strategy.AggregateReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := strategy.AggregateReport{Round: round, Rejected: map[string]string{}}
	var models []*trees.Model
	seen := map[string]bool{}
	for i, r := range results {
		id := r.Client
		if id == "" {
			id = fmt.Sprintf("#%d", i)
			rep.Rejected[id] = "result has no client id"
			continue
		}
		if seen[id] {
			rep.Rejected[id] = fmt.Sprintf("client %s: duplicate result", id)
			continue
		}
		seen[id] = true
		if r.NumExamples <= 0 {
			rep.Rejected[id] = fmt.Sprintf("client %s: num_examples %d ≤ 0", id, r.NumExamples)
			continue
		}
		m, err := Decode(r.Weights, "model of "+id)
		if err != nil {
			rep.Rejected[id] = fmt.Sprintf("client %s: %v", id, err)
			continue
		}
		if s.Features != nil && !slices.Equal(m.FeatureNames, s.Features) {
			rep.Rejected[id] = fmt.Sprintf("client %s: model features differ from the plan's dataset", id)
			continue
		}
		if len(models) > 0 {
			if _, err := trees.Merge(models[0], m); err != nil {
				rep.Rejected[id] = fmt.Sprintf("client %s: %v", id, err)
				continue
			}
		}
		models = append(models, m)
		rep.Accepted = append(rep.Accepted, id)
		rep.Selected = append(rep.Selected, id)
		rep.NumExamples += r.NumExamples
	}
	if need := max(s.MinAccepted, 1); len(models) < need {
		return nil, rep, fmt.Errorf("treefed: round %d: %d models accepted, need %d", round, len(models), need)
	}
	merged, err := trees.Merge(models...)
	if err != nil {
		return nil, rep, err
	}
	w, err := Encode(merged)
	if err != nil {
		return nil, rep, err
	}
	return w, rep, nil
}

// State implements strategy.Strategy (stateless).
func (s *Merge) State() (strategy.State, error) { return strategy.State{Strategy: s.Name()}, nil }

// Restore implements strategy.Strategy.
func (s *Merge) Restore(st strategy.State) error {
	if st.Strategy != s.Name() || len(st.Tensors) != 0 || len(st.Scalars) != 0 {
		return fmt.Errorf("treefed: restoring %s from a %q state", s.Name(), st.Strategy)
	}
	return nil
}

var (
	_ strategy.Strategy  = (*Merge)(nil)
	_ strategy.ShapeFree = (*Merge)(nil)
	_ strategy.ShapeFree = (*Trainer)(nil)
)
