package trees

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

// synthetic is a binary (or regression) table large enough that one
// tree's histograms and split search spread over goroutines by feature.
func synthetic(n, d int, task datasets.Task) *datasets.Dataset {
	rng := rand.New(rand.NewPCG(7, 8))
	ds := &datasets.Dataset{Name: "synthetic", Task: task, N: n, D: d, X: make([]float32, n*d), Y: make([]float32, n),
		Columns: make([]datasets.Column, d)}
	if task == datasets.Classification {
		ds.NumClasses = 2
	}
	for i := range n {
		z := rng.NormFloat64()
		for j := range d {
			v := rng.NormFloat64()
			if j%7 == 3 && rng.Float64() < 0.1 {
				ds.X[i*d+j] = float32(math.NaN())
				continue
			}
			ds.X[i*d+j] = float32(v)
			if j < 6 {
				z += v * float64(j%3-1)
			}
		}
		if task == datasets.Classification {
			if z > 0 {
				ds.Y[i] = 1
			}
		} else {
			ds.Y[i] = float32(z)
		}
	}
	return ds
}

// TestFeatureParallelDeterministic: with the per-tree feature spreading on
// (rows x features above the serial threshold), boosting and a regression
// forest (histogram subtraction mode) write the same file for 1 and 2
// threads.
func TestFeatureParallelDeterministic(t *testing.T) {
	ctx := context.Background()
	text := func(m *Model, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := WriteText(&b, m); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	cls := synthetic(4000, 20, datasets.Classification)
	if cls.N*cls.D < 1<<16 {
		t.Fatalf("%d x %d is below the spreading threshold", cls.N, cls.D)
	}
	cfg := GBDTConfig{Iterations: 8, NumLeaves: 15, BaggingFraction: 0.9, Seed: 1, Threads: 1}
	g1 := text(TrainGBDT(ctx, cls, cfg))
	cfg.Threads = 2
	if g2 := text(TrainGBDT(ctx, cls, cfg)); g1 != g2 {
		t.Error("binary gbdt differs between 1 and 2 threads")
	}
	reg := synthetic(4000, 20, datasets.Regression)
	f1 := text(TrainForest(ctx, reg, ForestConfig{Trees: 3, MaxDepth: 8, Seed: 1, Threads: 1}))
	f2 := text(TrainForest(ctx, reg, ForestConfig{Trees: 3, MaxDepth: 8, Seed: 1, Threads: 2}))
	if f1 != f2 {
		t.Error("regression forest differs between 1 and 2 threads")
	}
}

// TestBinsFromSample: above binSample rows, edges are fitted on a sample
// but every row lands in the bin its value belongs to, and a category
// seen only outside the sample still gets its own bin.
func TestBinsFromSample(t *testing.T) {
	n := binSample + 1000
	x := make([]float32, 2*n)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range n {
		x[2*i] = float32(rng.NormFloat64())
		x[2*i+1] = float32(rng.IntN(5))
	}
	x[2*(n-1)+1] = 7 // row n-1 is not among the evenly spaced sample rows
	b := binFeatures(x, n, 2, []bool{false, true}, 2)
	if nb := b.numBins[0]; nb < 2 || nb > MaxBin-1 {
		t.Fatalf("numerical feature: %d bins", nb)
	}
	up := b.upper[0]
	for i := range n {
		v, bin := float64(x[2*i]), int(b.row(i, 0))
		if v > up[bin] || (bin > 0 && v <= up[bin-1]) {
			t.Fatalf("row %d: value %v in bin %d (%v, %v]", i, v, bin, up[max(bin-1, 0)], up[bin])
		}
	}
	if b.numBins[1] != 8 {
		t.Errorf("categorical feature: %d bins, want 8 (categories 0-7)", b.numBins[1])
	}
	if got := b.row(n-1, 1); got != 7 {
		t.Errorf("category 7 binned as %d", got)
	}
}
