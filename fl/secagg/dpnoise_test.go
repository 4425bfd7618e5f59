package secagg

import (
	"math"
	"testing"

	"github.com/teeml/teeml/fl/privacy"
)

// TestDistributedNoiseSum: 9 clients, 3 of them silent after the share
// exchange; the 6 survivors add the discrete Gaussian share of the noise
// (privacy.LatticeSigma for z = 1.1, C = 1, at least 6 survivors) to
// their quantised inputs before masking. The unmasked sum minus the plain
// fixed-point sum is the survivors' noise: per coordinate mean 0 and
// variance 6·σ_L², i.e. std z·LatticeClip, checked over 20 000
// coordinates within 5 standard errors (a sampler whose variance were off
// by 2% would fail).
func TestDistributedNoiseSum(t *testing.T) {
	const n, length, minSurv = 9, 20000, 6
	r := setup(t, n, 6, length)
	sigma := privacy.LatticeSigma(1.1, 1, r.p.FracBits, length, minSurv)
	key := [32]byte{7}
	noise, err := privacy.NewNoise(&key)
	if err != nil {
		t.Fatal(err)
	}
	survivors := []int{0, 1, 2, 3, 4, 5}
	plain := make([]uint32, length)
	for _, i := range survivors {
		for k, v := range r.inputs[i] {
			plain[k] += v
		}
		if err := noise.AddLattice(r.inputs[i], sigma); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := r.run(t, survivors, survivors)
	if err != nil {
		t.Fatal(err)
	}
	var s1, s2 float64
	for k := range sum {
		d := float64(int32(sum[k] - plain[k]))
		s1 += d
		s2 += d * d
	}
	mean, variance := s1/length, s2/length-(s1/length)*(s1/length)
	want := float64(len(survivors)) * sigma * sigma
	if se := math.Sqrt(want / length); math.Abs(mean) > 5*se {
		t.Errorf("noise mean %.4g, want 0 ± %.3g", mean, 5*se)
	}
	if se := want * math.Sqrt(2.0/length); math.Abs(variance-want) > 5*se {
		t.Errorf("noise variance %.6g, want %.6g ± %.3g (std %.4g vs z·C' = %.4g)", variance, want, 5*se,
			math.Sqrt(variance), 1.1*privacy.LatticeClip(1, r.p.FracBits, length))
	}
}
