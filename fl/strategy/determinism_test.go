package strategy

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

// bigRound makes 7 random results over tensors spanning several spans
// (and a tiny one), around a random global.
func bigRound() (tensor.Weights, []FitResult) {
	sizes := []int{3*spanSize + 17, 5, 40000}
	if raceEnabled {
		sizes = []int{spanSize + 17, 5, 1000}
	}
	g := randWeights(100, 0, 1, sizes...)
	var results []FitResult
	for k := range 7 {
		w := randWeights(uint64(k+1), 0, 1, sizes...)
		_ = w.AddScaledInPlace(1, g)
		results = append(results, fit(string(rune('a'+k)), 10+k*k, w))
	}
	return g, results
}

// TestDeterminism: every strategy gives bit-identical weights, norms and
// scores whatever the number of workers (two rounds, so FedOpt's moments
// are exercised too).
func TestDeterminism(t *testing.T) {
	g, results := bigRound()
	for _, name := range Names() {
		var ref, ref2 tensor.Weights
		var refRep AggregateReport
		workerCounts := []int{1, 2, 3, 8}
		if raceEnabled {
			workerCounts = []int{1, 3}
		}
		for _, workers := range workerCounts {
			s, _ := New(name, Options{Workers: workers, Validator: Validator{MaxUpdateNorm: 1e6}})
			out, rep, err := s.AggregateFit(1, g, results)
			if err != nil {
				t.Fatal(err)
			}
			out2, _, err := s.AggregateFit(2, out, results)
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				ref, ref2, refRep = out, out2, rep
				continue
			}
			if err := sameBits(out, ref); err != nil {
				t.Fatalf("%s, %d workers, round 1: %v", name, workers, err)
			}
			if err := sameBits(out2, ref2); err != nil {
				t.Fatalf("%s, %d workers, round 2: %v", name, workers, err)
			}
			for c, v := range refRep.UpdateNorms {
				if math.Float64bits(rep.UpdateNorms[c]) != math.Float64bits(v) {
					t.Fatalf("%s, %d workers: norm of %s %v vs %v", name, workers, c, rep.UpdateNorms[c], v)
				}
			}
			for c, v := range refRep.Scores {
				if math.Float64bits(rep.Scores[c]) != math.Float64bits(v) {
					t.Fatalf("%s, %d workers: score of %s %v vs %v", name, workers, c, rep.Scores[c], v)
				}
			}
		}
	}
}

// TestLargeAgainstReference compares FedAvg, Median, TrimmedMean and the
// update norms on the multi-span inputs with straightforward float64
// reference computations.
func TestLargeAgainstReference(t *testing.T) {
	g, results := bigRound()
	fa, rep, err := (&FedAvg{Options: Options{Validator: Validator{MaxUpdateNorm: 1e6}}}).AggregateFit(1, g, results)
	if err != nil {
		t.Fatal(err)
	}
	med, _, err := (&Median{}).AggregateFit(1, g, results)
	if err != nil {
		t.Fatal(err)
	}
	tm, _, err := (&TrimmedMean{Beta: 0.3}).AggregateFit(1, g, results) // cut ⌊2.1⌋ = 2
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, r := range results {
		total += float64(r.NumExamples)
	}
	vals := make([]float64, len(results))
	for ti := range g {
		for j := range g[ti].Data {
			var sum float64
			for k, r := range results {
				x := float64(r.Weights[ti].Data[j])
				sum += float64(r.NumExamples) * x
				vals[k] = x
			}
			if want := float32(sum / total); fa[ti].Data[j] != want {
				// float64 sums in another order may round differently only in
				// the last float64 bits; allow one float32 ulp.
				if math.Abs(float64(fa[ti].Data[j]-want)) > float64(math.Nextafter32(want, float32(math.Inf(1)))-want) {
					t.Fatalf("fedavg %s[%d] = %v, want %v", g[ti].Name, j, fa[ti].Data[j], want)
				}
			}
			slices.Sort(vals)
			if want := float32(vals[3]); med[ti].Data[j] != want {
				t.Fatalf("median %s[%d] = %v, want %v", g[ti].Name, j, med[ti].Data[j], want)
			}
			want := float32((vals[2] + vals[3] + vals[4]) / 3)
			if math.Abs(float64(tm[ti].Data[j]-want)) > 1e-6 {
				t.Fatalf("trimmed mean %s[%d] = %v, want %v", g[ti].Name, j, tm[ti].Data[j], want)
			}
		}
	}
	for _, r := range results {
		d, _ := r.Weights.Sub(g)
		want := d.L2Norm()
		if got := rep.UpdateNorms[r.Client]; math.Abs(got-want) > 1e-9*want {
			t.Fatalf("norm of %s: %v, want %v", r.Client, got, want)
		}
	}
}

// TestKernelPaths: the AVX kernel (when the CPU has it) and the generic Go
// code give bit-identical results, including non-integer coefficients,
// every client count up to 11, lengths around the 16-coordinate blocks, and
// the same non-finite verdicts.
func TestKernelPaths(t *testing.T) {
	if !useAVX {
		t.Skip("no AVX kernel on this CPU/architecture")
	}
	r := rand.New(rand.NewPCG(3, 4))
	acc := make([]float64, 1000)
	run := func(avx bool, out []float32, xs [][]float32, c []float64, scale float64) bool {
		defer func(old bool) { useAVX = old }(useAVX)
		useAVX = avx
		return weightedSpan(out, slices.Clone(xs), c, scale, acc)
	}
	for n := 1; n <= 11; n++ {
		for _, size := range []int{1, 15, 16, 17, 31, 32, 33, 100, 999} {
			xs := make([][]float32, n)
			c := make([]float64, n)
			for k := range xs {
				xs[k] = make([]float32, size)
				for j := range xs[k] {
					xs[k][j] = float32(r.NormFloat64() * math.Exp(4*r.NormFloat64()))
				}
				c[k] = r.Float64() * 10
			}
			for _, poison := range []float32{0, float32(math.NaN()), float32(math.Inf(-1)), math.MaxFloat32} {
				if poison != 0 {
					xs[r.IntN(n)][r.IntN(size)] = poison
				}
				a, b := make([]float32, size), make([]float32, size)
				badA := run(true, a, xs, c, 1/float64(n))
				badB := run(false, b, xs, c, 1/float64(n))
				for j := range a {
					if math.Float32bits(a[j]) != math.Float32bits(b[j]) {
						t.Fatalf("n=%d size=%d poison=%v: coordinate %d: avx %v, generic %v", n, size, poison, j, a[j], b[j])
					}
				}
				wantBad := false
				for _, v := range b {
					wantBad = wantBad || math.IsNaN(float64(v)) || math.IsInf(float64(v), 0)
				}
				if badA != wantBad || badB != wantBad {
					t.Fatalf("n=%d size=%d poison=%v: non-finite avx %v generic %v, want %v", n, size, poison, badA, badB, wantBad)
				}
			}
		}
	}
}

// TestSqDiffPaths: the AVX and Go squared-distance kernels agree bit for bit.
func TestSqDiffPaths(t *testing.T) {
	if !useAVX {
		t.Skip("no AVX kernel on this CPU/architecture")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{0, 1, 15, 16, 17, 33, 100, 1000, 4099} {
		a, b := make([]float32, size), make([]float32, size)
		for j := range a {
			a[j] = float32(r.NormFloat64() * math.Exp(3*r.NormFloat64()))
			b[j] = float32(r.NormFloat64())
		}
		got := sqDiff(a, b)
		useAVX = false
		want := sqDiff(a, b)
		useAVX = true
		var naive float64
		for j := range a {
			d := float64(a[j]) - float64(b[j])
			naive += d * d
		}
		if math.Float64bits(got) != math.Float64bits(want) || math.Abs(got-naive) > 1e-12*naive {
			t.Fatalf("size %d: avx %v, go %v, naive %v", size, got, want, naive)
		}
	}
}
