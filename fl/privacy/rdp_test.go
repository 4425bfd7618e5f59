package privacy

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

// References. Every expected number below is copied from a reference
// implementation's own unit test (not computed by this package):
//
//	[dpacc] google/differential-privacy,
//	        python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant_test.py
//	        at commit d986e7ffc084ba6924d37b738df31f0638c01fe0
//	[tfp]   tensorflow/privacy,
//	        tensorflow_privacy/privacy/analysis/rdp_accountant_test.py
//	        at commit 385fefc85e80dacd262cc63fb485a42062983622
//	[opacus] pytorch/opacus, opacus/tests/accountants_test.py
//	        at commit 2f4b54640c031948c4264d56b6f101baf5676490

const relTol = 1e-3 // the bar; most cases hold far tighter (see each test)

func relErr(got, want float64) float64 {
	if got == want {
		return 0
	}
	return math.Abs(got-want) / math.Abs(want)
}

func checkRel(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsInf(want, 1) {
		if !math.IsInf(got, 1) {
			t.Errorf("%s = %v, want +Inf", what, got)
		}
		return
	}
	if e := relErr(got, want); !(e <= tol) {
		t.Errorf("%s = %.12g, want %.12g (relative error %.3g > %.3g)", what, got, want, e, tol)
	} else {
		t.Logf("%s = %.12g, reference %.12g, relative error %.3g", what, got, want, e)
	}
}

// Plain Gaussian mechanism (q = 1).
func TestGaussianMechanism(t *testing.T) {
	// [dpacc] test_compute_rdp_gaussian: RDP at α = 3.14159, σ = 2.71828 is α/(2σ²).
	r, err := GaussianRDP(2.71828, []float64{3.14159})
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "RDP(α=3.14159, σ=2.71828)", r[0], 3.14159/(2*2.71828*2.71828), 1e-12)

	// [tfp] test_compute_rdp_no_sampling: compute_rdp(q=1, σ=10, steps=1, α=20) = 0.1.
	r, err = GaussianRDP(10, []float64{20})
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "RDP(q=1, σ=10, α=20)", r[0], 0.1, 1e-12)

	// [dpacc] test_compute_epsilon_delta_gaussian and [tfp]
	// test_get_privacy_spent_check_target_delta: σ = 4.530877117 is chosen to
	// give exactly (1, 1e-6)-DP over the orders 1.000, 1.001, …, 99.999.
	orders := make([]float64, 0, 99000)
	for i := 1000; i < 100000; i++ {
		orders = append(orders, 0.001*float64(i))
	}
	r, err = GaussianRDP(4.530877117, orders)
	if err != nil {
		t.Fatal(err)
	}
	eps, _, err := Epsilon(orders, r, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "ε(σ=4.530877117, δ=1e-6)", eps, 1, 1e-6)
	delta, _, err := Delta(orders, r, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "δ(σ=4.530877117, ε=1)", delta, 1e-6, 1e-4)
}

// Poisson-subsampled Gaussian mechanism, integer and fractional orders.
func TestSubsampledGaussianMechanism(t *testing.T) {
	// [tfp] test_compute_rdp_sequence: q = 0.01, σ = 2.5, 50 steps, at
	// orders 1.5, 2.5 (fractional), 5, 50, 100 (integer), +Inf; the reference
	// asserts rtol 1e-4 and so do we.
	orders := []float64{1.5, 2.5, 5, 50, 100, math.Inf(1)}
	want := []float64{6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02, math.Inf(1)}
	acc, err := NewAccountant(orders...)
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.Compose(0.01, 2.5, 50); err != nil {
		t.Fatal(err)
	}
	for i, a := range orders {
		checkRel(t, "RDP(q=0.01, σ=2.5, 50 steps, α="+ftoa(a)+")", acc.rdp[i], want[i], 1e-4)
	}
	// [dpacc] test_compute_rdp_poisson_sampled_gaussian, same case: at
	// integer orders dp_accounting agrees (to its rtol 1e-4); at fractional
	// orders it sums |terms| and is an upper bound (6.7058e-4 at α = 1.5),
	// which the signed series must not exceed.
	dpacc := []float64{6.70579741e-04, 1.08548710e-03, 2.18075656e-03, 2.38460375e-02, 1.67416308e02, math.Inf(1)}
	for i, a := range orders {
		if a == math.Trunc(a) || math.IsInf(a, 1) {
			checkRel(t, "dp_accounting RDP(α="+ftoa(a)+")", acc.rdp[i], dpacc[i], 1e-4)
		} else if !(acc.rdp[i] <= dpacc[i]) {
			t.Errorf("α=%v: RDP %v above dp_accounting's upper bound %v", a, acc.rdp[i], dpacc[i])
		}
	}

	// [tfp] test_compute_rdp_scalar: compute_rdp(q=0.1, σ=2, steps=10, α=5) = 0.07737 (places=5).
	r, err := SampledGaussianRDP(0.1, 2, []float64{5})
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "RDP(q=0.1, σ=2, 10 steps, α=5)", 10*r[0], 0.07737, 1e-4)

	// [opacus] test_rdp_accountant: σ = 1.5, q = 0.04, int(90/0.04) = 2250
	// steps, Opacus's default orders, δ = 1e-5 → ε = 7.32911117143
	// (assertAlmostEqual: 7 places).
	acc, err = NewAccountant(OpacusOrders()...)
	if err != nil {
		t.Fatal(err)
	}
	// Opacus's RDPAccountant.step merges repeated (σ, q) steps into one
	// history entry and composes them as compute_rdp(…, steps=2250).
	if err := acc.Compose(0.04, 1.5, 2250); err != nil {
		t.Fatal(err)
	}
	eps, err := acc.Epsilon(1e-5)
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "ε(q=0.04, σ=1.5, 2250 steps, δ=1e-5)", eps, 7.32911117143, 1e-7)
	if acc.Steps() != 2250 {
		t.Errorf("Steps() = %d, want 2250", acc.Steps())
	}
}

// The fractional series must agree with direct numerical integration of
// A_α = E_{z~N(0,σ²)}[((1−q) + q·exp((2z−1)/(2σ²)))^α], the definition the
// references' mpmath tests integrate (parameters from [dpacc]
// test_compute_log_a_equals_mp that are within float64 quadrature's reach).
func TestLogAMatchesIntegral(t *testing.T) {
	for _, c := range []struct{ q, sigma, alpha float64 }{
		{1e-4, 1, 1.5}, {1e-3, 1, 2}, {0.01, 10, 20}, {0.1, 100, 20.5},
		{1e-6, 1, 27}, {0.2, 1.3, 7.7}, {0.05, 2, 3.3},
		// Slowly converging series (~960 terms, erfc in its subnormal tail).
		{0.1, 1.1, 1.5},
	} {
		got := logA(c.q, c.sigma, c.alpha)
		want := math.Log(integrateA(c.q, c.sigma, c.alpha))
		// log A is tiny for small q; compare A−1 relatively via expm1.
		if e := relErr(math.Expm1(got), math.Expm1(want)); e > 1e-6 || math.IsNaN(e) {
			t.Errorf("q=%v σ=%v α=%v: log A = %.15g, integral %.15g (relative error of A−1 %.3g)", c.q, c.sigma, c.alpha, got, want, e)
		}
	}
}

// A series that has not converged within maxFracSteps excludes its order
// (+Inf: a looser ε), it never yields a wrong finite value.
func TestNonConvergingOrderIsExcluded(t *testing.T) {
	// q = 0.2, σ = 0.9, α = 1.3: the terms decay like i^-(α+2), too slowly.
	if got := logAFrac(0.2, 0.9, 1.3); !math.IsInf(got, 1) {
		t.Fatalf("log A = %v, want +Inf (not converged)", got)
	}
	r, err := SampledGaussianRDP(0.2, 0.9, []float64{1.3, 2})
	if err != nil {
		t.Fatal(err)
	}
	eps, order, err := Epsilon([]float64{1.3, 2}, r, 1e-5)
	if err != nil || order != 2 || math.IsInf(eps, 0) {
		t.Fatalf("ε = %v at order %v (err %v), want the finite order 2's bound", eps, order, err)
	}
}

// integrateA is 1 + composite Simpson of A_α − 1 over [−40σ, 40σ+α].
func integrateA(q, sigma, alpha float64) float64 {
	lo, hi := -40*sigma, 40*sigma+alpha
	n := 400000
	h := (hi - lo) / float64(n)
	f := func(z float64) float64 {
		// μ0(z)·(((1−q) + q·e^u)^α − 1), u = (2z−1)/(2σ²), without cancellation.
		logMu0 := -z*z/(2*sigma*sigma) - math.Log(sigma*math.Sqrt(2*math.Pi))
		u := (2*z - 1) / (2 * sigma * sigma)
		lv := alpha * math.Log1p(q*math.Expm1(u))
		if lv > 30 { // e^lv − 1 = e^lv to float64 precision; avoid Inf·0
			return math.Exp(logMu0 + lv)
		}
		return math.Exp(logMu0) * math.Expm1(lv)
	}
	s := f(lo) + f(hi)
	for i := 1; i < n; i++ {
		w := 2.0
		if i%2 == 1 {
			w = 4
		}
		s += w * f(lo+float64(i)*h)
	}
	return 1 + s*h/3
}

// Conversion RDP → (ε, δ) for pure DP: [dpacc] test_compute_epsilon_delta_pure_dp
// and [tfp] test_get_privacy_spent_check_target_delta.
func TestConversionPureDP(t *testing.T) {
	var orders, rdp []float64
	for a := 2; a < 33; a++ {
		orders = append(orders, float64(a))
		rdp = append(rdp, 1.1)
	}
	eps, order, err := Epsilon(orders, rdp, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "ε(constant RDP 1.1, δ=1e-5)", eps, 1.32783806176, 1e-10)
	if order != 32 {
		t.Errorf("optimal order %v, want 32", order)
	}
	delta, order, err := Delta(orders, rdp, 1.32783806176)
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "δ(constant RDP 1.1, ε=1.32783806176)", delta, 1e-5, 1e-9)
	if order != 32 {
		t.Errorf("optimal order %v, want 32", order)
	}
}

func TestEdgeCasesAndRefusals(t *testing.T) {
	// [dpacc] test_zero_poisson_sample: q = 0 spends nothing.
	acc, _ := NewAccountant(3.14159)
	if err := acc.Compose(0, 1, 1); err != nil {
		t.Fatal(err)
	}
	if e, _ := acc.Epsilon(1e-10); e != 0 {
		t.Errorf("q=0: ε = %v, want 0", e)
	}
	// [dpacc] test_epsilon_non_private_gaussian: σ = 0 is ε = +Inf.
	acc, _ = NewAccountant(3.14159)
	if err := acc.Compose(1, 0, 1); err != nil {
		t.Fatal(err)
	}
	if e, _ := acc.Epsilon(0.1); !math.IsInf(e, 1) {
		t.Errorf("σ=0: ε = %v, want +Inf", e)
	}
	for _, c := range []struct {
		name     string
		q, sigma float64
	}{{"q>1", 1.5, 1}, {"q<0", -0.1, 1}, {"q NaN", math.NaN(), 1}, {"σ<0", 0.1, -1}, {"σ Inf", 0.1, math.Inf(1)}} {
		if _, err := SampledGaussianRDP(c.q, c.sigma, []float64{2}); !errors.Is(err, ErrParameter) {
			t.Errorf("%s: err = %v, want ErrParameter", c.name, err)
		}
	}
	if _, err := NewAccountant(0.5); !errors.Is(err, ErrParameter) {
		t.Errorf("order 0.5: err = %v, want ErrParameter", err)
	}
	if _, _, err := Epsilon([]float64{2}, []float64{1}, 1.5); !errors.Is(err, ErrParameter) {
		t.Errorf("δ 1.5: err = %v, want ErrParameter", err)
	}
}

// Budget arithmetic: ε grows with rounds, EpsilonAfter predicts Compose, and
// the state round-trips through JSON (the checkpoint) to the same ε.
func TestAccountantStateRoundTrip(t *testing.T) {
	acc, _ := NewAccountant()
	prev := 0.0
	for round := 1; round <= 20; round++ {
		pred, err := acc.EpsilonAfter(0.1, 1.1, 1, 1e-5)
		if err != nil {
			t.Fatal(err)
		}
		if err := acc.Compose(0.1, 1.1, 1); err != nil {
			t.Fatal(err)
		}
		e, _ := acc.Epsilon(1e-5)
		if e != pred {
			t.Fatalf("round %d: EpsilonAfter predicted %v, Compose gave %v", round, pred, e)
		}
		if !(e > prev) {
			t.Fatalf("round %d: ε %v did not grow from %v", round, e, prev)
		}
		prev = e
	}
	acc.rdp[len(acc.rdp)-1] = math.Inf(1) // +Inf must survive JSON too
	b, err := json.Marshal(acc.State())
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	fresh, _ := NewAccountant()
	if err := fresh.Restore(s); err != nil {
		t.Fatal(err)
	}
	e1, _ := acc.Epsilon(1e-5)
	e2, _ := fresh.Epsilon(1e-5)
	if e1 != e2 || fresh.Steps() != 20 {
		t.Errorf("restored ε %v steps %d, want ε %v steps 20", e2, fresh.Steps(), e1)
	}
	other, _ := NewAccountant(2, 3)
	if err := other.Restore(s); !errors.Is(err, ErrParameter) {
		t.Errorf("restore with other orders: err = %v, want ErrParameter", err)
	}
	if err := json.Unmarshal([]byte(`{"orders":[2],"rdp":["nan"],"steps":1}`), &s); !errors.Is(err, ErrParameter) {
		t.Errorf(`rdp "nan": err = %v, want ErrParameter`, err)
	}
}

func ftoa(f float64) string {
	b, _ := json.Marshal(f)
	if math.IsInf(f, 1) {
		return "inf"
	}
	return string(b)
}
