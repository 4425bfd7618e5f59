package privacy

import (
	"fmt"
	"math"
)

// Distributed DP under secure aggregation (docs/privacy.md, "DP with
// secure aggregation"). The aggregator learns only the sum of the
// members' fixed-point updates, so with local noise each member adds a
// share of the noise: a discrete Gaussian N_Z(0, σ_L²) on the integer
// lattice of the fixed point (Canonne, Kamath, Steinke 2020), after its
// clipped update was rounded to that lattice. The sum of the survivors'
// noise is then a sum of independent discrete Gaussians, whose privacy
// Kairouz, Liu, Steinke 2021 ("The Distributed Discrete Gaussian
// Mechanism") bound.

// Fit-config keys of DP under secure aggregation.
const (
	// KeyLatticeSigma is σ_L, the std in fixed-point units (steps of
	// 2^−frac_bits) of the discrete Gaussian each member adds to every
	// coordinate of its quantised update before masking.
	KeyLatticeSigma = "dp_secagg_lattice_sigma"
)

// MinLatticeSigma is the smallest per-member σ_L accepted: at σ_L ≥ 10,
// the deviation term of Kairouz et al.'s bound,
// τ = 10·Σ_{k=1}^{n−1} exp(−2π²σ_L²·k/(k+1)), is below e^−980, zero in
// float64, so the sum of n members' noise is accounted as a Gaussian of
// std √n·σ_L with nothing added.
const MinLatticeSigma = 10

// SecAggDP configures DP-FedAvg over secure aggregation.
type SecAggDP struct {
	// FracBits is the fixed point's precision (scheduler.SecAgg.FracBits).
	FracBits int
	// MinSurvivors is the fewest masked inputs a round's sum can have
	// (⌈(1−dropout_tolerance)·N⌉, which the plan makes the round's
	// minimum): local noise is calibrated so that this many members'
	// noise alone reaches std z·C.
	MinSurvivors int
}

// LatticeClip is the L2 sensitivity, in fixed-point units, of one
// member's quantised update: its clipped Δ (‖Δ‖ ≤ clip) scaled by 2^f and
// rounded coordinate by coordinate moves by at most √dim/2.
func LatticeClip(clip float64, fracBits, dim int) float64 {
	return math.Ldexp(clip, fracBits) + math.Sqrt(float64(dim))/2
}

// LatticeSigma is σ_L = z·LatticeClip/√minSurvivors: any minSurvivors
// members' noise sums to std ≥ z times the sensitivity of the sum.
func LatticeSigma(z, clip float64, fracBits, dim, minSurvivors int) float64 {
	return z * LatticeClip(clip, fracBits, dim) / math.Sqrt(float64(minSurvivors))
}

// DiscreteGaussian draws one N_Z(0, σ²), P(x) ∝ exp(−x²/(2σ²)) on the
// integers: Canonne, Kamath, Steinke 2020, Algorithm 3 (rejection from a
// discrete Laplace of scale t = ⌊σ⌋+1), in float64 arithmetic rather than
// their exact rational one (docs/privacy.md, caveats). sigma must be > 0.
func (n *Noise) DiscreteGaussian(sigma float64) int64 {
	t := math.Floor(sigma) + 1
	s2 := sigma * sigma
	for {
		y := n.discreteLaplace(t)
		d := math.Abs(float64(y)) - s2/t
		if n.r.Float64() < math.Exp(-d*d/(2*s2)) {
			return y
		}
	}
}

// discreteLaplace draws P(y) ∝ exp(−|y|/t) on the integers (CKS 2020
// Algorithm 2): a geometric magnitude and a sign, (−, 0) rejected so that
// 0 is not counted twice.
func (n *Noise) discreteLaplace(t float64) int64 {
	for {
		u := 1 - n.r.Float64()            // (0, 1]
		g := math.Floor(-t * math.Log(u)) // P(g ≥ k) = e^{−k/t}
		neg := n.r.Uint64()&1 == 1
		if neg && g == 0 {
			continue
		}
		if neg {
			return -int64(g)
		}
		return int64(g)
	}
}

// AddLattice adds an independent N_Z(0, σ²) to every value of y, mod 2³²
// (the fixed point's two's complement).
func (n *Noise) AddLattice(y []uint32, sigma float64) error {
	if !(sigma > 0) || math.IsInf(sigma, 0) {
		return fmt.Errorf("privacy: lattice noise std %v: must be finite and > 0: %w", sigma, ErrParameter)
	}
	for i := range y {
		y[i] += uint32(n.DiscreteGaussian(sigma))
	}
	return nil
}

// SecAggRangeOK reports whether the noised fixed-point sum of n members
// stays inside int32 with overwhelming probability: n coordinates of at
// most coord (each already ≤ the L2 clip) plus half a step of rounding,
// plus 20 standard deviations of the summed noise (std √n·sigma; the
// discrete Gaussian is sub-Gaussian with its σ, CKS 2020 Cor. 23, so a
// coordinate leaves that band with probability below 2·e^−200).
func SecAggRangeOK(coord float64, fracBits, n int, sigma float64) bool {
	det := float64(n) * (math.Ldexp(coord, fracBits) + 0.5)
	return det+20*sigma*math.Sqrt(float64(n)) <= math.MaxInt32
}
