// Package privacy holds the differential-privacy half of DP-FedAvg: a Rényi
// DP accountant for the (Poisson-subsampled) Gaussian mechanism, its
// conversion to (ε, δ), and the transport-free client-side pieces (update
// clipping with a fixed or adaptive norm, Gaussian noise, per-round client
// sampling) that wrap a strategy's inputs and outputs. Like fl/strategy it
// knows nothing of gRPC, attestation or files: the scheduler hands it plain
// values and stores its State in the checkpoint.
//
// # Accounting
//
// The RDP of the sampled Gaussian mechanism with sampling rate q and noise
// multiplier σ at order α is log(A_α)/(α−1) (Mironov, Talwar, Zhang 2019,
// "Rényi Differential Privacy of the Sampled Gaussian Mechanism"), computed
// in log space: for integer α as the binomial sum of Sec. 3.2, for
// fractional α as the two convergent series of Sec. 3.3 with log-erfc
// terms, signed as in Opacus and tensorflow_privacy. q = 1 is the plain Gaussian mechanism, α/(2σ²). RDP composes by
// addition over rounds. The conversion to (ε, δ) is the improved bound of
// Balle et al. 2020 ("Hypothesis Testing Interpretations and Rényi
// Differential Privacy", Prop. 12; also Asoodeh et al. 2020, Eq. 20):
//
//	ε = min over α of  RDP(α) + log1p(−1/α) − log(δ·α)/(α−1)
//
// exactly as Google's dp_accounting (rdp_privacy_accountant.compute_epsilon,
// including its KL shortcut δ² + expm1(−RDP) > 0 ⇒ ε = 0 and its α > 1.01
// floor) and Opacus (privacy_analysis.get_privacy_spent) compute it.
//
// For DP-FedAvg at the user level (McMahan et al. 2018) a round is one
// application of the mechanism: q = sampled clients / clients, σ = the
// noise multiplier z, steps = rounds.
package privacy

import (
	"errors"
	"fmt"
	"math"
)

// DefaultOrders are the RDP orders the accountant tracks unless told
// otherwise: Opacus's DEFAULT_ALPHAS (1.1 … 10.9 in steps of 0.1, then
// 12 … 63), extended with 128, 256, 512 and 1024 as dp_accounting does, so
// that very small ε (large σ) are not capped by the largest order.
func DefaultOrders() []float64 {
	o := make([]float64, 0, 99+52+4)
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512, 1024)
}

// OpacusOrders are exactly Opacus's RDPAccountant.DEFAULT_ALPHAS.
func OpacusOrders() []float64 {
	o := DefaultOrders()
	return o[:len(o)-4]
}

// ErrParameter is wrapped by every refusal of a bad mechanism parameter.
var ErrParameter = errors.New("privacy: bad parameter")

// SampledGaussianRDP returns the RDP at each order of one application of the
// Poisson-subsampled Gaussian mechanism with sampling rate q ∈ [0, 1] and
// noise multiplier sigma ≥ 0 (the noise std over the L2 sensitivity).
// Orders must be ≥ 1; +Inf is allowed (its RDP is +Inf unless q = 0).
func SampledGaussianRDP(q, sigma float64, orders []float64) ([]float64, error) {
	if !(q >= 0 && q <= 1) {
		return nil, fmt.Errorf("sampling rate %v: must be in [0, 1]: %w", q, ErrParameter)
	}
	if !(sigma >= 0) || math.IsInf(sigma, 0) {
		return nil, fmt.Errorf("noise multiplier %v: must be finite and ≥ 0: %w", sigma, ErrParameter)
	}
	out := make([]float64, len(orders))
	for i, a := range orders {
		if !(a >= 1) {
			return nil, fmt.Errorf("RDP order %v: must be ≥ 1: %w", a, ErrParameter)
		}
		switch {
		case q == 0:
			out[i] = 0
		case math.IsInf(a, 1) || sigma == 0:
			out[i] = math.Inf(1)
		case q == 1:
			out[i] = a / (2 * sigma * sigma)
		case a == 1:
			// The limit α → 1 (KL divergence) is not computed by the series;
			// like the references we leave it to the other orders.
			out[i] = math.Inf(1)
		default:
			out[i] = logA(q, sigma, a) / (a - 1)
		}
	}
	return out, nil
}

// GaussianRDP is the RDP of the plain Gaussian mechanism, α/(2σ²).
func GaussianRDP(sigma float64, orders []float64) ([]float64, error) {
	return SampledGaussianRDP(1, sigma, orders)
}

func logA(q, sigma, alpha float64) float64 {
	if alpha == math.Trunc(alpha) && alpha < 1<<20 {
		return logAInt(q, sigma, int(alpha))
	}
	return logAFrac(q, sigma, alpha)
}

// logAdd is log(exp(x) + exp(y)).
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logComb is log C(n, k) for real n ≥ k ≥ 0 via log-gamma.
func logComb(n, k float64) float64 {
	return lgamma(n+1) - lgamma(k+1) - lgamma(n-k+1)
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}

// logAInt is log(A_α) for integer α (Mironov et al. 2019, Sec. 3.2):
// A_α = Σ_i C(α,i) q^i (1−q)^(α−i) exp((i²−i)/(2σ²)).
func logAInt(q, sigma float64, alpha int) float64 {
	la := math.Inf(-1)
	lq, l1mq := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		c := logComb(float64(alpha), fi) + fi*lq + float64(alpha-i)*l1mq
		la = logAdd(la, c+(fi*fi-fi)/s2)
	}
	return la
}

// maxFracSteps bounds the fractional series; an order whose series has not
// converged by then is excluded (+Inf, which only loosens ε), never trusted.
const maxFracSteps = 1000

// logAFrac is log(A_α) for fractional α (Mironov et al. 2019, Sec. 3.3):
// the integral split at z0 = σ² log(1/q − 1) + 1/2 into two binomial
// series whose terms carry log-erfc tails. Terms are added or subtracted in
// log space by the sign of C(α, i), as Opacus's and tensorflow_privacy's
// rdp analysis do (dp_accounting since adds |terms|, an upper bound that is
// up to ~3% looser at small orders); it stops once both terms fall below
// e^-30, the references' criterion.
func logAFrac(q, sigma, alpha float64) float64 {
	a0, a1 := math.Inf(-1), math.Inf(-1)
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	lq, l1mq := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	positive := true // the sign of C(α, i)
	for i := 0; i < maxFracSteps; i++ {
		fi := float64(i)
		if i > 0 && alpha-(fi-1) < 0 {
			positive = !positive
		}
		lc := logComb(alpha, fi)
		j := alpha - fi
		t0 := lc + fi*lq + j*l1mq
		t1 := lc + j*lq + fi*l1mq
		e0 := math.Log(0.5) + logErfc((fi-z0)/(math.Sqrt2*sigma))
		e1 := math.Log(0.5) + logErfc((z0-j)/(math.Sqrt2*sigma))
		s0 := t0 + (fi*fi-fi)/s2 + e0
		s1 := t1 + (j*j-j)/s2 + e1
		if positive {
			a0 = logAdd(a0, s0)
			a1 = logAdd(a1, s1)
		} else {
			a0 = logSub(a0, s0)
			a1 = logSub(a1, s1)
		}
		if math.IsNaN(a0) || math.IsNaN(a1) {
			return math.Inf(1)
		}
		if math.Max(s0, s1) < -30 {
			return logAdd(a0, a1)
		}
	}
	return math.Inf(1)
}

// logSub is log(exp(x) − exp(y)) for x ≥ y; NaN when x < y (a series that
// went negative: the caller excludes the order).
func logSub(x, y float64) float64 {
	switch {
	case x < y:
		return math.NaN()
	case math.IsInf(y, -1):
		return x
	case x == y:
		return math.Inf(-1)
	}
	d := math.Expm1(x - y)
	if math.IsInf(d, 1) {
		return x
	}
	return math.Log(d) + y
}

// logErfc is log(erfc(x)), accurate in the far tail where erfc is
// subnormal or underflows (x > ~26.5: the Laurent series of log erfc at +∞,
// as dp_accounting's fallback; a subnormal erfc has lost its precision).
func logErfc(x float64) float64 {
	r := math.Erfc(x)
	if r >= 0x1p-1022 {
		return math.Log(r)
	}
	x2 := x * x
	return -math.Log(math.Pi)/2 - math.Log(x) - x2 -
		0.5/x2 + 0.625/(x2*x2) - 37.0/24.0/(x2*x2*x2) + 353.0/64.0/(x2*x2*x2*x2)
}

// Epsilon converts RDP values at orders into the smallest ε such that the
// mechanism is (ε, δ)-DP, and returns the order that achieved it. The bound
// is Balle et al. 2020 Prop. 12, as in dp_accounting.compute_epsilon.
func Epsilon(orders, rdp []float64, delta float64) (eps, order float64, err error) {
	if len(orders) != len(rdp) || len(orders) == 0 {
		return 0, 0, fmt.Errorf("%d orders and %d RDP values: need the same non-zero number: %w", len(orders), len(rdp), ErrParameter)
	}
	if !(delta >= 0 && delta < 1) {
		return 0, 0, fmt.Errorf("delta %v: must be in [0, 1): %w", delta, ErrParameter)
	}
	if delta == 0 {
		for _, r := range rdp {
			if r != 0 {
				return math.Inf(1), 0, nil
			}
		}
		return 0, 0, nil
	}
	best, bestOrder := math.Inf(1), orders[0]
	for i, a := range orders {
		r := rdp[i]
		if !(a >= 1) {
			return 0, 0, fmt.Errorf("RDP order %v: must be ≥ 1: %w", a, ErrParameter)
		}
		var e float64
		switch {
		case r < 0 || math.IsNaN(r):
			return 0, 0, fmt.Errorf("RDP %v at order %v: must be ≥ 0: %w", r, a, ErrParameter)
		case delta*delta+math.Expm1(-r) > 0:
			e = 0 // KL bound: δ ≤ sqrt(1 − exp(−RDP)).
		case a > 1.01:
			e = r + math.Log1p(-1/a) - math.Log(delta*a)/(a-1)
		default:
			e = math.Inf(1)
		}
		if e < best {
			best, bestOrder = e, a
		}
	}
	return math.Max(0, best), bestOrder, nil
}

// Delta is the dual of Epsilon: the smallest δ for a given ε (Balle et al.
// 2020 Prop. 12 in log space, with the KL bound for small orders), and the
// order that achieved it.
func Delta(orders, rdp []float64, eps float64) (delta, order float64, err error) {
	if len(orders) != len(rdp) || len(orders) == 0 {
		return 0, 0, fmt.Errorf("%d orders and %d RDP values: need the same non-zero number: %w", len(orders), len(rdp), ErrParameter)
	}
	if !(eps >= 0) {
		return 0, 0, fmt.Errorf("epsilon %v: must be ≥ 0: %w", eps, ErrParameter)
	}
	best, bestOrder := math.Inf(1), orders[0]
	for i, a := range orders {
		r := rdp[i]
		if !(a >= 1) || r < 0 || math.IsNaN(r) {
			return 0, 0, fmt.Errorf("RDP %v at order %v: need order ≥ 1 and RDP ≥ 0: %w", r, a, ErrParameter)
		}
		ld := math.Inf(-1)
		if r > 0 {
			ld = 0.5 * math.Log1p(-math.Exp(-r))
		}
		if a > 1.01 {
			ld = math.Min(ld, (a-1)*(r-eps+math.Log1p(-1/a))-math.Log(a))
		}
		if ld < best {
			best, bestOrder = ld, a
		}
	}
	return math.Min(math.Exp(best), 1), bestOrder, nil
}
