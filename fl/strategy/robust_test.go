package strategy

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

var (
	r1 = w2(1, 5, -1, 0, 2, 9, 3)
	r2 = w2(2, 4, -3, 0, 7, 1, 3)
	r3 = w2(10, 6, -2, 0, 1, 5, -4)
	r4 = w2(3, 0, 100, 1, 2, 6, 3)
	r5 = w2(-50, 4, 0, 0, 0, 0, 0)
)

func TestMedian(t *testing.T) {
	s := &Median{}
	// Odd n; NumExamples must not matter.
	out, rep, err := s.AggregateFit(1, fill(0), []FitResult{fit("a", 1, r1), fit("b", 100, r2), fit("c", 7, r3)})
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "median n=3", out, []float32{2, 5, -2, 0, 2, 5, 3})
	if rep.NumExamples != 108 || len(rep.Selected) != 3 {
		t.Fatalf("report %+v", rep)
	}
	// Even n: mean of the two middle values.
	out, _, err = s.AggregateFit(2, fill(0), []FitResult{fit("a", 1, r1), fit("b", 100, r2), fit("c", 7, r3), fit("d", 1, r4)})
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "median n=4", out, []float32{2.5, 4.5, -1.5, 0, 2, 5.5, 3})
	// One result: itself.
	out, _, err = s.AggregateFit(3, fill(0), []FitResult{fit("a", 1, r4)})
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "median n=1", out, flat(r4))
}

func TestTrimmedMean(t *testing.T) {
	all := []FitResult{fit("a", 1, r1), fit("b", 100, r2), fit("c", 7, r3), fit("d", 1, r4), fit("e", 2, r5)}
	// β = 0.2, n = 5: drop the smallest and the largest value per coordinate.
	out, _, err := (&TrimmedMean{Beta: 0.2}).AggregateFit(1, fill(0), all)
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "trimmed β=0.2 n=5", out, []float32{2, float32(13.0 / 3), -1, 0, float32(5.0 / 3), 4, 2})
	// β = 0.25, n = 4 (even): cut 1 at each end.
	out, _, err = (&TrimmedMean{Beta: 0.25}).AggregateFit(1, fill(0), all[:4])
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "trimmed β=0.25 n=4", out, []float32{2.5, 4.5, -1.5, 0, 2, 5.5, 3})
	// β = 0.1, n = 5: ⌊0.5⌋ = 0, the unweighted mean.
	out, _, err = (&TrimmedMean{Beta: 0.1}).AggregateFit(1, fill(0), all)
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "trimmed β=0.1 n=5", out, []float32{float32(-34.0 / 5), float32(19.0 / 5), float32(94.0 / 5), float32(1.0 / 5), float32(12.0 / 5), float32(21.0 / 5), float32(5.0 / 5)})
	for _, beta := range []float64{-0.1, 0.5, math.NaN()} {
		if _, _, err := (&TrimmedMean{Beta: beta}).AggregateFit(1, fill(0), all); err == nil {
			t.Errorf("β = %v accepted", beta)
		}
	}
}

// TestSelection checks selectK, medianOf and trimmedMeanOf against a sort
// on inputs that defeat naive pivots (sorted, reversed, constant, organ
// pipe, few distinct values) and random ones, for n up to 100.
func TestSelection(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	patterns := map[string]func(n, i int) float32{
		"sorted":   func(n, i int) float32 { return float32(i) },
		"reversed": func(n, i int) float32 { return float32(n - i) },
		"constant": func(n, i int) float32 { return 3 },
		"organ":    func(n, i int) float32 { return float32(min(i, n-i)) },
		"few":      func(n, i int) float32 { return float32(r.IntN(3)) },
		"random":   func(n, i int) float32 { return float32(r.NormFloat64()) },
		"sawtooth": func(n, i int) float32 { return float32(i % 7) },
	}
	for name, gen := range patterns {
		for _, n := range []int{1, 2, 3, 4, 5, 8, 15, 16, 17, 31, 32, 33, 64, 99, 100} {
			vals := make([]float32, n)
			for i := range vals {
				vals[i] = gen(n, i)
			}
			sorted := slices.Clone(vals)
			slices.Sort(sorted)
			for k := range n {
				s := slices.Clone(vals)
				selectK(s, k)
				if s[k] != sorted[k] {
					t.Fatalf("%s n=%d: selectK(%d) = %v, want %v", name, n, k, s[k], sorted[k])
				}
				for i := range s {
					if (i < k && s[i] > s[k]) || (i > k && s[i] < s[k]) {
						t.Fatalf("%s n=%d k=%d: not partitioned at %d: %v", name, n, k, i, s)
					}
				}
			}
			var want float64
			if n%2 == 1 {
				want = float64(sorted[n/2])
			} else {
				want = (float64(sorted[n/2-1]) + float64(sorted[n/2])) / 2
			}
			if got := medianOf(slices.Clone(vals)); got != float32(want) {
				t.Fatalf("%s n=%d: median %v, want %v", name, n, got, want)
			}
			for cut := 0; 2*cut < n; cut += max(1, n/7) {
				var sum float64
				for _, v := range sorted[cut : n-cut] {
					sum += float64(v)
				}
				want := float32(sum / float64(n-2*cut))
				if got := trimmedMeanOf(slices.Clone(vals), cut); math.Abs(float64(got-want)) > 1e-6*math.Max(1, math.Abs(float64(want))) {
					t.Fatalf("%s n=%d cut=%d: trimmed mean %v, want %v", name, n, cut, got, want)
				}
			}
		}
	}
}

// krumResults: honest clients at 0, 1, 2, 4 and an outlier at 100, every
// coordinate equal, so the squared distance between i and j is 7·(x_i − x_j)².
func krumResults() []FitResult {
	return []FitResult{fit("h0", 1, fill(0)), fit("h1", 3, fill(1)), fit("h2", 1, fill(2)), fit("h4", 3, fill(4)), fit("bad", 1, fill(100))}
}

func TestKrum(t *testing.T) {
	// f = 1, n = 5: each score sums the n−f−2 = 2 smallest squared
	// distances. h0: 1,4 → 5; h1: 1,1 → 2; h2: 1,4 → 5; h4: 4,9 → 13;
	// bad: 96², 98² → 18820; all times 7.
	out, rep, err := (&Krum{F: 1}).AggregateFit(1, fill(0), krumResults())
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "krum", out, flat(fill(1)))
	want := map[string]float64{"h0": 35, "h1": 14, "h2": 35, "h4": 91, "bad": 7 * 18820}
	for k, v := range want {
		if rep.Scores[k] != v {
			t.Fatalf("scores %v, want %v", rep.Scores, want)
		}
	}
	if !slices.Equal(rep.Selected, []string{"h1"}) || len(rep.Accepted) != 5 || rep.NumExamples != 3 {
		t.Fatalf("report %+v", rep)
	}
	if math.Abs(rep.UpdateNorms["h4"]-4*math.Sqrt(7)) > 1e-12 {
		t.Fatalf("norms %v", rep.UpdateNorms)
	}

	// Multi-Krum, m = 2: h1 (14), then h0 (35, tied with h2, earlier in
	// the input); examples-weighted: (1·0 + 3·1)/4.
	s := &Krum{F: 1, M: 2}
	out, rep, err = s.AggregateFit(1, fill(0), krumResults())
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "multikrum m=2", out, flat(fill(0.75)))
	if !slices.Equal(rep.Selected, []string{"h0", "h1"}) || s.Name() != "multikrum" {
		t.Fatalf("selected %v", rep.Selected)
	}
	// KeepAll: n − f = 4, the honest ones: (0·1 + 1·3 + 2·1 + 4·3)/8.
	out, _, err = (&Krum{F: 1, M: KeepAll}).AggregateFit(1, fill(0), krumResults())
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "multikrum keep all", out, flat(fill(17.0/8)))

	// n > 2f+2 is required.
	if _, rep, err := (&Krum{F: 1}).AggregateFit(1, fill(0), krumResults()[:4]); err == nil || len(rep.Accepted) != 4 {
		t.Fatalf("krum n=4 f=1: %v", err)
	}
	if _, _, err := (&Krum{F: 2}).AggregateFit(1, fill(0), krumResults()); err == nil {
		t.Fatal("krum n=5 f=2 accepted")
	}
	if _, _, err := (&Krum{F: 1, M: 6}).AggregateFit(1, fill(0), krumResults()); err == nil {
		t.Fatal("m > n accepted")
	}
	if _, _, err := (&Krum{F: -1}).AggregateFit(1, fill(0), krumResults()); err == nil {
		t.Fatal("f < 0 accepted")
	}
	// f = 0 works with n ≥ 3: the honest four, scores 35, 14, 35, 91 as above.
	out, _, err = (&Krum{}).AggregateFit(1, fill(0), krumResults()[:4])
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "krum f=0", out, flat(fill(1)))
}

// TestRobustToOutlier: with one client far away, Median, TrimmedMean and
// Krum stay within the honest range while FedAvg is dragged out of it.
func TestRobustToOutlier(t *testing.T) {
	results := krumResults()
	for _, s := range allStrategies(t, Options{}) {
		out, rep, err := s.AggregateFit(1, fill(0), results)
		if err != nil {
			t.Fatal(err)
		}
		v := out[0].Data[0]
		inside := v >= 0 && v <= 4
		if n, ok := rep.UpdateNorms["h4"]; s.Name() != "fedavg" && s.Name() != "fedprox" && (!ok || math.Abs(n-4*math.Sqrt(7)) > 1e-12) {
			t.Errorf("%s: update norms %v", s.Name(), rep.UpdateNorms)
		}
		switch s.Name() {
		case "median", "trimmedmean", "krum", "multikrum":
			if !inside {
				t.Errorf("%s: %v outside the honest range [0, 4]", s.Name(), v)
			}
		case "fedavg", "fedprox":
			if inside {
				t.Errorf("%s: %v inside the honest range despite the outlier", s.Name(), v)
			}
		}
	}
}

// TestBatcherNetwork checks the sorting networks by the 0-1 principle (a
// comparator network sorts every input iff it sorts every 0/1 input) for
// n ≤ 16, and on random inputs up to maxNetwork.
func TestBatcherNetwork(t *testing.T) {
	for n := 1; n <= maxNetwork; n++ {
		net := batcherNetwork(n)
		for _, c := range net {
			if c[0] >= c[1] || int(c[1]) >= n {
				t.Fatalf("n=%d: bad comparator %v", n, c)
			}
		}
		sorts := func(v []int) bool {
			for _, c := range net {
				if v[c[0]] > v[c[1]] {
					v[c[0]], v[c[1]] = v[c[1]], v[c[0]]
				}
			}
			return slices.IsSorted(v)
		}
		v := make([]int, n)
		if n <= 16 {
			for bitsIn := 0; bitsIn < 1<<n; bitsIn++ {
				for i := range v {
					v[i] = bitsIn >> i & 1
				}
				if !sorts(v) {
					t.Fatalf("n=%d: network does not sort 0/1 input %b", n, bitsIn)
				}
			}
			continue
		}
		r := rand.New(rand.NewPCG(uint64(n), 1))
		for range 2000 {
			for i := range v {
				v[i] = r.IntN(5)
			}
			if !sorts(v) {
				t.Fatalf("n=%d: network does not sort %v", n, v)
			}
		}
	}
	if got := len(batcherNetwork(8)); got != 19 {
		t.Errorf("n=8: %d comparators, Batcher's network has 19", got)
	}
}

func TestFloatKey(t *testing.T) {
	vals := []float32{float32(math.Inf(-1)), -math.MaxFloat32, -1, -math.SmallestNonzeroFloat32, float32(math.Copysign(0, -1)), 0,
		math.SmallestNonzeroFloat32, 1e-38, 1, 1.0000001, math.MaxFloat32, float32(math.Inf(1))}
	for i, v := range vals {
		if math.Float32bits(keyFloat(floatKey(v))) != math.Float32bits(v) {
			t.Fatalf("%v does not round-trip", v)
		}
		if i > 0 && floatKey(vals[i-1]) >= floatKey(v) {
			t.Fatalf("key(%v) ≥ key(%v)", vals[i-1], v)
		}
	}
}

// TestOrderStatPaths: the sorting-network path (n ≤ maxNetwork) and the
// selection path give the same medians and trimmed means as a sort, for n
// on both sides of the threshold, over a span longer than one key block.
func TestOrderStatPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const size = 1000
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 32, 33, 40} {
		results := make([]FitResult, n)
		sel := make([]int, n)
		for k := range results {
			d := make([]float32, size)
			for j := range d {
				switch r.IntN(4) {
				case 0:
					d[j] = float32(r.IntN(3) - 1) // duplicates, zeros
				case 1:
					d[j] = float32(math.Copysign(0, -1))
				default:
					d[j] = float32(r.NormFloat64())
				}
			}
			results[k] = fit(string(rune('a'+k)), 1, tensor.Weights{{Name: "x", Shape: []int{size}, Data: d}})
			sel[k] = k
		}
		for _, st := range []orderStat{{median: true}, {cut: 0}, {cut: n / 4}, {cut: (n - 1) / 2}} {
			var p pool
			out := results[0].Weights.ZerosLike()
			orderStatInto(out, results, sel, st, 3, &p)
			vals := make([]float64, n)
			for j := range size {
				for k := range n {
					vals[k] = float64(results[k].Weights[0].Data[j])
				}
				slices.Sort(vals)
				var want float64
				if st.median {
					want = (vals[(n-1)/2] + vals[n/2]) / 2
				} else {
					for _, v := range vals[st.cut : n-st.cut] {
						want += v
					}
					want /= float64(n - 2*st.cut)
				}
				got := float64(out[0].Data[j])
				if got != float64(float32(want)) && math.Abs(got-want) > 1e-6 {
					t.Fatalf("n=%d %+v coordinate %d: got %v, want %v", n, st, j, got, want)
				}
			}
		}
	}
}
