package trees

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/teeml/teeml/ml/datasets"
)

// GBDTConfig configures histogram gradient boosting in LightGBM's manner.
type GBDTConfig struct {
	Iterations      int     // boosting rounds, default 100
	LR              float64 // shrinkage, default 0.1
	NumLeaves       int     // leaf-wise growth bound, default 31
	MaxDepth        int     // 0: unbounded
	MinDataInLeaf   int     // default 20
	MinHessInLeaf   float64 // default 1e-3
	Lambda          float64 // L2 regularisation of leaf values
	BaggingFraction float64 // rows sampled per iteration; 0 or 1: all
	FeatureFraction float64 // features sampled per tree; 0 or 1: all
	// Valid, when set, is scored after every iteration; training stops
	// after EarlyStopping rounds without improvement and keeps the best.
	Valid         *datasets.Dataset
	EarlyStopping int
	Threads       int // goroutines for the K trees of a multiclass round
	Seed          int64
	// OnIteration, if set, receives each round's validation loss.
	OnIteration func(iter int, validLoss float64)
}

// TrainGBDT boosts trees on ds: binary log-loss for two classes, softmax
// for more, L2 for regression. NaN features go to the side learned at
// each split; categorical columns get sorted-gradient splits.
func TrainGBDT(ctx context.Context, ds *datasets.Dataset, c GBDTConfig) (*Model, error) {
	if err := checkTrain(ds); err != nil {
		return nil, err
	}
	if c.Iterations <= 0 {
		c.Iterations = 100
	}
	if c.LR <= 0 {
		c.LR = 0.1
	}
	if c.NumLeaves <= 0 {
		c.NumLeaves = 31
	}
	if c.MinDataInLeaf <= 0 {
		c.MinDataInLeaf = 20
	}
	if c.MinHessInLeaf <= 0 {
		c.MinHessInLeaf = 1e-3
	}
	if c.Threads <= 0 {
		c.Threads = runtime.GOMAXPROCS(0)
	}
	if c.NumLeaves < 2 || c.Lambda < 0 || c.BaggingFraction < 0 || c.BaggingFraction > 1 || c.FeatureFraction < 0 || c.FeatureFraction > 1 {
		return nil, fmt.Errorf("trees: gbdt: num leaves %d, lambda %v, bagging %v, feature fraction %v: out of range", c.NumLeaves, c.Lambda, c.BaggingFraction, c.FeatureFraction)
	}
	n := ds.N
	k, obj := 1, ObjRegression
	if ds.Task == datasets.Classification {
		obj = ObjBinary
		if ds.NumClasses > 2 {
			k, obj = ds.NumClasses, ObjMulticlass
		}
		for i, y := range ds.Y {
			if c := int(y); c < 0 || c >= max(ds.NumClasses, 2) || float32(c) != y {
				return nil, fmt.Errorf("trees: %s: row %d: label %v is not a class index", ds.Name, i, y)
			}
		}
	}
	model := &Model{Objective: obj, NumClass: k, FeatureNames: featureNames(ds)}
	b := binFeatures(ds.X, n, ds.D, catColumns(ds), c.Threads)
	init := initScore(obj, ds.Y, k)
	score := make([]float64, n*k)
	for i := range n {
		copy(score[i*k:], init)
	}
	var vScore []float64
	if c.Valid != nil {
		vScore = make([]float64, c.Valid.N*k)
		for i := range c.Valid.N {
			copy(vScore[i*k:], init)
		}
	}
	g := make([][]float64, k)
	h := make([][]float64, k)
	for j := range k {
		g[j], h[j] = make([]float64, n), make([]float64, n)
	}
	rng := rngFor(c.Seed, 1<<40)
	// Multiclass rounds grow their K trees in parallel; one tree spreads
	// its histograms over the threads.
	inner := max(1, c.Threads/k)
	growers := make([]*grower, k)
	for j := range growers {
		growers[j] = &grower{b: b, m: 1, threads: inner, p: growParams{lgbCat: true, maxLeaves: c.NumLeaves, maxDepth: c.MaxDepth,
			minLeaf: c.MinDataInLeaf, minHess: c.MinHessInLeaf, lambda: c.Lambda, shrinkage: c.LR}}
	}
	best, bestIter := math.Inf(1), 0
	for it := range c.Iterations {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("trees: gbdt: %w", err)
		}
		ranges(n, c.Threads, func(lo, hi int) { gradients(obj, ds.Y, score, k, g, h, lo, hi) })
		rows := make([]int, 0, n)
		for i := range n {
			if c.BaggingFraction == 0 || c.BaggingFraction == 1 || rng.Float64() < c.BaggingFraction {
				rows = append(rows, i)
			}
		}
		feats := make([]int, 0, ds.D)
		for f := range ds.D {
			if c.FeatureFraction == 0 || c.FeatureFraction == 1 || rng.Float64() < c.FeatureFraction {
				feats = append(feats, f)
			}
		}
		if len(feats) == 0 {
			feats = append(feats, rng.IntN(ds.D))
		}
		round := make([]*Tree, k)
		err := parallel(ctx, k, c.Threads, func(j int) error {
			gr := growers[j]
			gr.g, gr.h = g[j], h[j]
			gr.p.features = feats
			jr := rows
			if k > 1 {
				jr = slices.Clone(rows) // grow reorders its rows
			}
			t, _ := gr.grow(jr)
			round[j] = t
			// The rows grown on get their leaf's value directly; the others
			// (bagged out) go down the tree.
			for l, lr := range gr.leafRows {
				v := t.LeafValue[l]
				for _, r := range lr {
					score[r*k+j] += v
				}
			}
			if len(jr) < n {
				in := make([]bool, n)
				for _, r := range jr {
					in[r] = true
				}
				for i := range n {
					if !in[i] {
						score[i*k+j] += t.Predict(ds.Row(i))
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for j, t := range round {
			if c.Valid != nil {
				for i := range c.Valid.N {
					vScore[i*k+j] += t.Predict(c.Valid.Row(i))
				}
			}
			if it == 0 {
				// LightGBM's boost_from_average: the initial score lives in
				// the first trees, so the file alone predicts.
				for l := range t.LeafValue {
					t.LeafValue[l] += init[j]
				}
			}
		}
		model.Trees = append(model.Trees, round...)
		if c.Valid != nil {
			loss := Loss(obj, c.Valid.Y, vScore, k)
			if c.OnIteration != nil {
				c.OnIteration(it+1, loss)
			}
			if loss < best-1e-12 {
				best, bestIter = loss, it+1
			} else if c.EarlyStopping > 0 && it+1-bestIter >= c.EarlyStopping {
				break
			}
		}
	}
	if c.Valid != nil && c.EarlyStopping > 0 && bestIter > 0 {
		model.Trees = model.Trees[:bestIter*k]
	}
	return model, nil
}

func initScore(obj string, y []float32, k int) []float64 {
	init := make([]float64, k)
	switch obj {
	case ObjRegression:
		s := 0.0
		for _, v := range y {
			s += float64(v)
		}
		init[0] = s / float64(len(y))
	case ObjBinary:
		p := 0.0
		for _, v := range y {
			p += float64(v)
		}
		p = min(max(p/float64(len(y)), 1e-6), 1-1e-6)
		init[0] = math.Log(p / (1 - p))
	}
	return init
}

// gradients sets g and h of rows lo..hi-1.
func gradients(obj string, y []float32, score []float64, k int, g, h [][]float64, lo, hi int) {
	p := make([]float64, k)
	for i := lo; i < hi; i++ {
		yv := y[i]
		switch obj {
		case ObjRegression:
			g[0][i], h[0][i] = score[i]-float64(yv), 1
		case ObjBinary:
			q := sigmoid(score[i])
			g[0][i], h[0][i] = q-float64(yv), max(q*(1-q), 1e-16)
		case ObjMulticlass:
			copy(p, score[i*k:(i+1)*k])
			softmax(p)
			f := float64(k) / float64(k-1)
			for j := range k {
				t := 0.0
				if int(yv) == j {
					t = 1
				}
				g[j][i], h[j][i] = p[j]-t, max(f*p[j]*(1-p[j]), 1e-16)
			}
		}
	}
}

// Loss is the objective's mean loss of raw scores (n*k): log-loss for
// classification, squared error for regression.
func Loss(obj string, y []float32, score []float64, k int) float64 {
	s := 0.0
	p := make([]float64, k)
	for i, yv := range y {
		switch obj {
		case ObjRegression:
			d := score[i] - float64(yv)
			s += d * d
		case ObjBinary:
			q := min(max(sigmoid(score[i]), 1e-15), 1-1e-15)
			if yv > 0.5 {
				s -= math.Log(q)
			} else {
				s -= math.Log(1 - q)
			}
		case ObjMulticlass:
			copy(p, score[i*k:(i+1)*k])
			softmax(p)
			s -= math.Log(max(p[int(yv)], 1e-15))
		}
	}
	return s / float64(len(y))
}
