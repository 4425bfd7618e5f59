package strategy

import (
	"math"
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
