package trees

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"github.com/teeml/teeml/ml/datasets"
)

// ForestConfig configures a random forest (classifier or regressor by the
// dataset's task).
type ForestConfig struct {
	Trees       int  // default 100
	MaxDepth    int  // 0: unbounded
	MinLeaf     int  // minimum rows per leaf, default 1
	MaxFeatures int  // features tried per split; 0: sqrt(d) for classification, d for regression
	NoBootstrap bool // train every tree on all rows
	Threads     int  // goroutines building trees; 0: GOMAXPROCS
	Seed        int64
}

// TrainForest grows a random forest: each tree on a bootstrap sample, each
// split among MaxFeatures random features, Gini impurity for classes (as
// variance of the one-hot labels) and squared error for regression. Leaves
// hold class frequencies or means, so the forest averages them.
func TrainForest(ctx context.Context, ds *datasets.Dataset, c ForestConfig) (*Model, error) {
	if err := checkTrain(ds); err != nil {
		return nil, err
	}
	if c.Trees <= 0 {
		c.Trees = 100
	}
	if c.MinLeaf <= 0 {
		c.MinLeaf = 1
	}
	if c.Threads <= 0 {
		c.Threads = runtime.GOMAXPROCS(0)
	}
	if c.MaxDepth < 0 || c.MaxFeatures < 0 || c.MaxFeatures > ds.D {
		return nil, fmt.Errorf("trees: forest: max depth %d, max features %d (of %d): out of range", c.MaxDepth, c.MaxFeatures, ds.D)
	}
	cls := ds.Task == datasets.Classification
	if c.MaxFeatures == 0 {
		c.MaxFeatures = ds.D
		if cls {
			c.MaxFeatures = max(1, int(math.Sqrt(float64(ds.D))))
		}
	}
	b := binFeatures(ds.X, ds.N, ds.D, catColumns(ds), c.Threads)
	m := 1
	if cls {
		m = ds.NumClasses
	}
	// Each tree weighs row r by its bootstrap multiplicity w (h = w) with
	// gradient -target*w: the leaf value -G/H is the weighted mean target
	// (class frequencies), and the gain is the decrease in weighted squared
	// error (Gini for one-hot classes). Rows drawn several times are
	// histogrammed once.
	var classes []int32
	if cls {
		classes = make([]int32, ds.N)
	}
	for i, y := range ds.Y {
		if cls {
			c := int(y)
			if c < 0 || c >= m || float32(c) != y {
				return nil, fmt.Errorf("trees: %s: row %d: label %v is not a class index below %d", ds.Name, i, y, m)
			}
			classes[i] = int32(c)
		}
	}
	feats := make([]int, ds.D)
	for i := range feats {
		feats[i] = i
	}
	k := m
	obj := ObjRegression
	if cls {
		obj = ObjMulticlass
		if m == 2 {
			k, obj = 1, ObjBinary
		}
	}
	out := &Model{Objective: obj, NumClass: k, Average: true, FeatureNames: featureNames(ds), Trees: make([]*Tree, c.Trees*k)}
	err := parallel(ctx, c.Trees, c.Threads, func(ti int) error {
		rng := rngFor(c.Seed, uint64(ti))
		w := make([]float64, ds.N)
		for range ds.N {
			if c.NoBootstrap {
				break
			}
			w[rng.IntN(ds.N)]++
		}
		rows := make([]int, 0, ds.N)
		for i := range w {
			if c.NoBootstrap {
				w[i] = 1
			}
			if w[i] > 0 {
				rows = append(rows, i)
			}
		}
		gr := &grower{b: b, h: w, cls: classes, m: m, threads: 1, p: growParams{maxDepth: c.MaxDepth, minLeaf: c.MinLeaf, minHess: 0, shrinkage: 1,
			maxFeatures: c.MaxFeatures, features: feats, rng: rng}}
		if !cls {
			gr.g = make([]float64, ds.N)
			for _, r := range rows {
				gr.g[r] = -float64(ds.Y[r]) * w[r]
			}
		}
		t, vals := gr.grow(rows)
		for j := range k {
			tj := *t
			tj.LeafValue = make([]float64, len(vals))
			for l := range vals {
				if m == 2 {
					tj.LeafValue[l] = vals[l][1] // binary: probability of class 1
				} else {
					tj.LeafValue[l] = vals[l][j]
				}
			}
			out.Trees[ti*k+j] = &tj
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
