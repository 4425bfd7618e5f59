package privacy

import (
	"math"
	"testing"
)

// TestDiscreteGaussian compares the sampler's empirical distribution with
// N_Z(0, σ²): the probabilities of 0, ±1 and ±⌈σ⌉ and the variance, over
// 400 000 draws each, within 5 standard errors, for σ below 1 (t = 1),
// a fractional σ and a wide one.
func TestDiscreteGaussian(t *testing.T) {
	key := [32]byte{1, 2, 3}
	n, err := NewNoise(&key)
	if err != nil {
		t.Fatal(err)
	}
	for _, sigma := range []float64{0.8, 3.7, 250} {
		const draws = 400000
		var norm float64 // Σ_x exp(−x²/2σ²)
		for x := -int(40 * (sigma + 1)); x <= int(40*(sigma+1)); x++ {
			norm += math.Exp(-float64(x*x) / (2 * sigma * sigma))
		}
		pmf := func(x int64) float64 { return math.Exp(-float64(x*x)/(2*sigma*sigma)) / norm }
		var wantVar float64
		for x := -int64(40 * (sigma + 1)); x <= int64(40*(sigma+1)); x++ {
			wantVar += float64(x*x) * pmf(x)
		}
		far := int64(math.Ceil(sigma))
		counts := map[int64]int{}
		var s1, s2 float64
		for range draws {
			x := n.DiscreteGaussian(sigma)
			counts[x]++
			s1 += float64(x)
			s2 += float64(x * x)
		}
		for _, x := range []int64{0, 1, -1, far, -far} {
			p := pmf(x)
			got := float64(counts[x]) / draws
			if se := math.Sqrt(p * (1 - p) / draws); math.Abs(got-p) > 5*se {
				t.Errorf("σ = %v: P(%d) = %.5f, want %.5f ± %.5f", sigma, x, got, p, 5*se)
			}
		}
		if m := s1 / draws; math.Abs(m) > 5*math.Sqrt(wantVar/draws) {
			t.Errorf("σ = %v: mean %.4g, want 0", sigma, m)
		}
		v := s2/draws - (s1/draws)*(s1/draws)
		if se := wantVar * math.Sqrt(2.0/draws); math.Abs(v-wantVar) > 5*se {
			t.Errorf("σ = %v: variance %.5g, want %.5g ± %.3g", sigma, v, wantVar, 5*se)
		}
	}
}

// TestLatticeSigma: any MinSurvivors members' noise sums to std z times
// the sensitivity of the quantised update, rounding included.
func TestLatticeSigma(t *testing.T) {
	s := LatticeSigma(1.1, 0.5, 16, 10000, 7)
	sens := math.Ldexp(0.5, 16) + 50 // √10000/2
	if got, want := s*math.Sqrt(7), 1.1*sens; math.Abs(got-want) > 1e-9*want {
		t.Fatalf("√7·σ_L = %v, want z·C' = %v", got, want)
	}
	if !SecAggRangeOK(0.5, 16, 10, s) {
		t.Error("0.5 at 16 bits, 10 members: refused")
	}
	if SecAggRangeOK(200, 16, 254, 0) {
		t.Error("200 at 16 bits, 254 members: accepted, overflows")
	}
	if SecAggRangeOK(0.01, 16, 10, 1e8) {
		t.Error("σ_L = 1e8 over 10 members: accepted, its 20σ band overflows")
	}
}
