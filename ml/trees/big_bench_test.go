package trees

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

// BenchmarkGBDTSynthetic: 200 000 x 50 Gaussian rows (20 000 with
// -short, as CI's one pass over every benchmark runs), 30 rounds.
func BenchmarkGBDTSynthetic(b *testing.B) {
	n, d := 200_000, 50
	if testing.Short() {
		n = 20_000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ds := &datasets.Dataset{Name: "synthetic", Task: datasets.Classification, NumClasses: 2, N: n, D: d,
		X: make([]float32, n*d), Y: make([]float32, n), Columns: make([]datasets.Column, d)}
	for i := range n {
		z := 0.0
		for j := range d {
			v := rng.NormFloat64()
			ds.X[i*d+j] = float32(v)
			if j < 8 {
				z += v * float64(j%3-1)
			}
		}
		if z+rng.NormFloat64() > 0 {
			ds.Y[i] = 1
		}
	}
	for b.Loop() {
		if _, err := TrainGBDT(context.Background(), ds, GBDTConfig{Iterations: 30, NumLeaves: 31, Threads: 2, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
