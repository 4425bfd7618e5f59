package strategy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

// w2 builds the two-tensor weights used by the small tests: "a" of shape
// [2, 2] and "b" of shape [3].
func w2(vals ...float32) tensor.Weights {
	if len(vals) != 7 {
		panic(fmt.Sprintf("w2 wants 7 values, got %d", len(vals)))
	}
	return tensor.Weights{
		{Name: "a", Shape: []int{2, 2}, Data: append([]float32(nil), vals[:4]...)},
		{Name: "b", Shape: []int{3}, Data: append([]float32(nil), vals[4:]...)},
	}
}

// fill returns w2 weights with every value v.
func fill(v float32) tensor.Weights { return w2(v, v, v, v, v, v, v) }

func flat(w tensor.Weights) []float32 {
	var out []float32
	for _, t := range w {
		out = append(out, t.Data...)
	}
	return out
}

func fit(client string, n int, w tensor.Weights) FitResult {
	return FitResult{Client: client, NumExamples: n, Weights: w}
}

// randWeights makes weights with the given tensor sizes (1-D), values
// N(mean, sd), from seed.
func randWeights(seed uint64, mean, sd float64, sizes ...int) tensor.Weights {
	r := rand.New(rand.NewPCG(seed, 7))
	w := make(tensor.Weights, len(sizes))
	for i, n := range sizes {
		d := make([]float32, n)
		for j := range d {
			d[j] = float32(mean + sd*r.NormFloat64())
		}
		w[i] = tensor.Tensor{Name: fmt.Sprintf("t%d", i), Shape: []int{n}, Data: d}
	}
	return w
}

func wantFlat(t *testing.T, what string, got tensor.Weights, want []float32) {
	t.Helper()
	g := flat(got)
	if len(g) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(g), len(want))
	}
	for i := range g {
		if g[i] != want[i] {
			t.Fatalf("%s: value %d = %v, want %v (all: %v)", what, i, g[i], want[i], g)
		}
	}
}

// wantClose compares with a relative tolerance.
func wantClose(t *testing.T, what string, got tensor.Weights, want []float64, rel float64) {
	t.Helper()
	g := flat(got)
	if len(g) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(g), len(want))
	}
	for i := range g {
		if d := math.Abs(float64(g[i]) - want[i]); d > rel*math.Max(math.Abs(want[i]), 1e-6) {
			t.Fatalf("%s: value %d = %.9g, want %.9g (all: %v)", what, i, g[i], want[i], g)
		}
	}
}

func sameBits(a, b tensor.Weights) error {
	if err := a.Compatible(b); err != nil {
		return err
	}
	for i := range a {
		for j := range a[i].Data {
			if math.Float32bits(a[i].Data[j]) != math.Float32bits(b[i].Data[j]) {
				return fmt.Errorf("tensor %q[%d]: %v vs %v", a[i].Name, j, a[i].Data[j], b[i].Data[j])
			}
		}
	}
	return nil
}

// allStrategies returns one fresh instance of every strategy with o.
func allStrategies(t *testing.T, o Options) []Strategy {
	t.Helper()
	var out []Strategy
	for _, name := range Names() {
		s, err := New(name, o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}
