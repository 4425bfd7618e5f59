package trees

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/teeml/teeml/ml/datasets"
)

// Objectives, named as in LightGBM's model.txt.
const (
	ObjBinary     = "binary"
	ObjMulticlass = "multiclass"
	ObjRegression = "regression"
)

// Model is a tree ensemble: trees[i*K+k] is iteration i's tree for output k.
// Boosted models add the trees' outputs; forests (Average) average them.
type Model struct {
	Objective    string
	NumClass     int // outputs per iteration (K): 1 for binary and regression
	Average      bool
	FeatureNames []string
	// Params are written to (and read from) the file's "parameters:"
	// section as "[key: value]" lines, as LightGBM does; keys and values
	// must not contain newlines or "]".
	Params map[string]string
	Trees  []*Tree
}

// K is the number of trees per iteration.
func (m *Model) K() int { return max(m.NumClass, 1) }

// Raw returns the raw outputs (K) for one row.
func (m *Model) Raw(x []float32) []float64 {
	k := m.K()
	out := make([]float64, k)
	for i, t := range m.Trees {
		out[i%k] += t.Predict(x)
	}
	if m.Average && len(m.Trees) > 0 {
		it := float64(len(m.Trees) / k)
		for j := range out {
			out[j] /= it
		}
	}
	return out
}

// Predict returns, per row, class probabilities (K, or 1 for binary: the
// probability of class 1) or the regression value.
func (m *Model) Predict(x []float32) []float64 {
	r := m.Raw(x)
	if m.Average {
		return r
	}
	switch m.Objective {
	case ObjBinary:
		r[0] = sigmoid(r[0])
	case ObjMulticlass:
		softmax(r)
	}
	return r
}

// PredictClass returns the most likely class of a classifier.
func (m *Model) PredictClass(x []float32) int {
	p := m.Predict(x)
	if len(p) == 1 {
		if p[0] > 0.5 {
			return 1
		}
		return 0
	}
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

// Importance returns per-feature total split gain and split count.
func (m *Model) Importance(d int) (gain []float64, splits []int) {
	gain, splits = make([]float64, d), make([]int, d)
	for _, t := range m.Trees {
		for i, f := range t.SplitFeature {
			if f < d {
				gain[f] += t.SplitGain[i]
				splits[f]++
			}
		}
	}
	return gain, splits
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

func softmax(r []float64) {
	mx := slices.Max(r)
	s := 0.0
	for i := range r {
		r[i] = math.Exp(r[i] - mx)
		s += r[i]
	}
	for i := range r {
		r[i] /= s
	}
}

// catColumns marks the categorical columns of ds.
func catColumns(ds *datasets.Dataset) []bool {
	c := make([]bool, ds.D)
	for i, col := range ds.Columns {
		c[i] = col.IsCategorical()
	}
	return c
}

func featureNames(ds *datasets.Dataset) []string {
	n := make([]string, ds.D)
	for i, c := range ds.Columns {
		n[i] = c.Name
	}
	return n
}

// rngFor gives tree i of a run its own stream, so results do not depend on
// the number of goroutines.
func rngFor(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x7472656573000000^stream))
}

// parallel runs f(0..n-1) on at most threads goroutines and returns the
// first error (or ctx's).
func parallel(ctx context.Context, n, threads int, f func(i int) error) error {
	threads = max(1, min(threads, n))
	var mu sync.Mutex
	var firstErr error
	next := 0
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if firstErr == nil && ctx.Err() != nil {
					firstErr = fmt.Errorf("trees: %w", ctx.Err())
				}
				if firstErr != nil || next >= n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// checkTrain validates a training set.
func checkTrain(ds *datasets.Dataset) error {
	if ds == nil || ds.N == 0 || ds.D == 0 || len(ds.Y) != ds.N {
		return fmt.Errorf("trees: empty or unlabelled training set")
	}
	if ds.Task == datasets.Classification && ds.NumClasses < 2 {
		return fmt.Errorf("trees: %s: classification with %d classes", ds.Name, ds.NumClasses)
	}
	return nil
}
