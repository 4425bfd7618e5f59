package strategy

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/teeml/teeml/ml/tensor"
)

// FedOpt variants.
const (
	VariantAdam    = "adam"
	VariantYogi    = "yogi"
	VariantAdagrad = "adagrad"
)

// FedOpt is adaptive federated optimisation (Reddi et al. 2021, "Adaptive
// Federated Optimization", Algorithm 2): the server treats the pseudo-
// gradient Δ = avg(w_i) − w_global, with avg the FedAvg (examples-weighted)
// mean of the accepted results, as a gradient step and applies an adaptive
// optimiser to it, coordinate-wise:
//
//	m ← β₁·m + (1 − β₁)·Δ
//	v ← β₂·v + (1 − β₂)·Δ²                 (Adam)
//	v ← v − (1 − β₂)·Δ²·sign(v − Δ²)       (Yogi)
//	v ← v + Δ²                             (Adagrad)
//	w_global ← w_global + η·m / (√v + τ)
//
// m and v start at zero (as in Flower; the paper allows v₀ ≥ τ²) and there is
// no bias correction, as in the paper and Flower's implementation. m and v
// are kept in float32 (like the weights), the update is computed in float64.
// They are the strategy's State. Build with NewFedAdam, NewFedYogi or
// NewFedAdagrad (Flower's default hyperparameters) and adjust the fields
// before the first round if needed.
type FedOpt struct {
	Options
	// Variant is VariantAdam, VariantYogi or VariantAdagrad.
	Variant string
	// Eta is the server learning rate η.
	Eta float64
	// EtaL is the client learning rate η_l the defaults were tuned with
	// (for local SGD); it is sent to clients under KeyEtaL when > 0.
	EtaL float64
	// Beta1 is the momentum β₁ ∈ [0, 1); Beta2 is β₂ ∈ [0, 1) (Adam, Yogi).
	Beta1, Beta2 float64
	// Tau is the adaptivity τ > 0 added to √v.
	Tau float64

	mu   sync.Mutex
	pool pool
	m, v tensor.Weights // nil until the first round (or Restore)
	step int            // server steps taken
}

// NewFedAdam returns FedAdam with Flower's defaults: η = 0.1, η_l = 0.1,
// β₁ = 0.9, β₂ = 0.99, τ = 1e-9.
func NewFedAdam(o Options) *FedOpt {
	return &FedOpt{Options: o, Variant: VariantAdam, Eta: 1e-1, EtaL: 1e-1, Beta1: 0.9, Beta2: 0.99, Tau: 1e-9}
}

// NewFedYogi returns FedYogi with Flower's defaults: η = 0.01,
// η_l = 0.0316, β₁ = 0.9, β₂ = 0.99, τ = 1e-3.
func NewFedYogi(o Options) *FedOpt {
	return &FedOpt{Options: o, Variant: VariantYogi, Eta: 1e-2, EtaL: 0.0316, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}
}

// NewFedAdagrad returns FedAdagrad with Flower's defaults: η = 0.1,
// η_l = 0.1, τ = 1e-9 and no momentum (β₁ = 0; β₂ is unused).
func NewFedAdagrad(o Options) *FedOpt {
	return &FedOpt{Options: o, Variant: VariantAdagrad, Eta: 1e-1, EtaL: 1e-1, Beta1: 0, Beta2: 0, Tau: 1e-9}
}

// Name implements Strategy: "fedadam", "fedyogi" or "fedadagrad".
func (s *FedOpt) Name() string { return "fed" + s.Variant }

// ConfigureFit implements Strategy: the round, and η_l under KeyEtaL.
func (s *FedOpt) ConfigureFit(round int, _ tensor.Weights) Config {
	if s.EtaL > 0 {
		return s.fitConfig(round, KeyEtaL, s.EtaL)
	}
	return s.fitConfig(round)
}

func (s *FedOpt) checkParams() error {
	switch s.Variant {
	case VariantAdam, VariantYogi, VariantAdagrad:
	default:
		return fmt.Errorf("strategy: FedOpt: unknown variant %q (want adam, yogi or adagrad)", s.Variant)
	}
	ok := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	if !(s.Eta > 0) || !ok(s.Eta) || !(s.Tau > 0) || !ok(s.Tau) {
		return fmt.Errorf("strategy: %s: need η > 0 and τ > 0, have η = %v, τ = %v", s.Name(), s.Eta, s.Tau)
	}
	if !(s.Beta1 >= 0 && s.Beta1 < 1) || !(s.Beta2 >= 0 && s.Beta2 < 1) {
		return fmt.Errorf("strategy: %s: need β₁, β₂ in [0, 1), have %v, %v", s.Name(), s.Beta1, s.Beta2)
	}
	return nil
}

// AggregateFit implements Strategy. The updates are validated (one pass),
// then averaged and the optimiser step applied in a second, fused pass; the
// moments change only when the round succeeds.
func (s *FedOpt) AggregateFit(round int, global tensor.Weights, results []FitResult) (tensor.Weights, AggregateReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkParams(); err != nil {
		return nil, AggregateReport{Round: round}, err
	}
	workers := s.workers()
	acc, rep, err := s.Validator.Validate(round, global, results, workers)
	if err != nil {
		return nil, rep, err
	}
	if s.m == nil {
		s.m, s.v = global.ZerosLike(), global.ZerosLike()
	} else if err := global.Compatible(s.m); err != nil {
		return nil, rep, fmt.Errorf("strategy: %s: global weights do not match the optimiser state: %w", s.Name(), err)
	}
	out := global.ZerosLike()
	coef, scale := examplesCoef(results, acc)
	spans := makeSpans(out)
	workers = max(1, min(workers, len(spans)))
	sc := s.pool.get(workers, len(acc))
	p := optParams{variant: s.Variant, eta: s.Eta, b1: s.Beta1, b2: s.Beta2, tau: s.Tau}
	runTasks(workers, len(spans), func(w, i int) {
		sw := &sc[w]
		sp := spans[i]
		views(sw.xs, results, acc, sp)
		o := out[sp.t].Data[sp.lo:sp.hi]
		weightedSpan(o, sw.xs, coef, scale, sw.acc)
		p.apply(o, global[sp.t].Data[sp.lo:sp.hi], s.m[sp.t].Data[sp.lo:sp.hi], s.v[sp.t].Data[sp.lo:sp.hi])
	})
	s.step++
	finishReport(&rep, results, acc)
	return out, rep, nil
}

type optParams struct {
	variant          string
	eta, b1, b2, tau float64
}

// apply turns avg (the weighted mean, in place) into the new weights and
// updates the moments m, v, for one span.
func (p *optParams) apply(avg, g, m, v []float32) {
	g, m, v = g[:len(avg)], m[:len(avg)], v[:len(avg)]
	b1, b2, eta, tau := p.b1, p.b2, p.eta, p.tau
	for j := range avg {
		gj := float64(g[j])
		d := float64(avg[j]) - gj
		mj := b1*float64(m[j]) + (1-b1)*d
		vj := float64(v[j])
		d2 := d * d
		switch p.variant {
		case VariantAdam:
			vj = b2*vj + (1-b2)*d2
		case VariantYogi:
			switch {
			case vj > d2:
				vj -= (1 - b2) * d2
			case vj < d2:
				vj += (1 - b2) * d2
			}
		default: // adagrad
			vj += d2
		}
		m[j], v[j] = float32(mj), float32(vj)
		avg[j] = float32(gj + eta*mj/(math.Sqrt(vj)+tau))
	}
}

// State implements Strategy: tensors "m/<name>" and "v/<name>" (empty
// before the first round) and the scalar "step".
func (s *FedOpt) State() (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Strategy: s.Name(), Scalars: map[string]float64{"step": float64(s.step)}}
	for _, part := range []struct {
		prefix string
		w      tensor.Weights
	}{{"m/", s.m}, {"v/", s.v}} {
		for _, t := range part.w {
			c := t.Clone()
			c.Name = part.prefix + t.Name
			st.Tensors = append(st.Tensors, c)
		}
	}
	return st, nil
}

// Restore implements Strategy.
func (s *FedOpt) Restore(st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.Strategy != s.Name() {
		return fmt.Errorf("strategy: restoring %s from a %q state", s.Name(), st.Strategy)
	}
	step, ok := st.Scalars["step"]
	if !ok || step < 0 || step != math.Trunc(step) {
		return fmt.Errorf("strategy: %s state: bad or missing step %v", s.Name(), st.Scalars["step"])
	}
	if err := st.Tensors.Validate(); err != nil {
		return fmt.Errorf("strategy: %s state: %w", s.Name(), err)
	}
	if len(st.Tensors)%2 != 0 {
		return fmt.Errorf("strategy: %s state: %d tensors, want m/ and v/ pairs", s.Name(), len(st.Tensors))
	}
	h := len(st.Tensors) / 2
	var m, v tensor.Weights
	for i, t := range st.Tensors {
		prefix := "m/"
		if i >= h {
			prefix = "v/"
		}
		name, found := strings.CutPrefix(t.Name, prefix)
		if !found {
			return fmt.Errorf("strategy: %s state: tensor %d is %q, want a %q name", s.Name(), i, t.Name, prefix)
		}
		c := t.Clone()
		c.Name = name
		if i < h {
			m = append(m, c)
		} else {
			v = append(v, c)
		}
	}
	if err := m.Compatible(v); err != nil {
		return fmt.Errorf("strategy: %s state: m vs v: %w", s.Name(), err)
	}
	if err := m.AllFinite(); err != nil {
		return fmt.Errorf("strategy: %s state: m: %w", s.Name(), err)
	}
	if err := v.AllFinite(); err != nil {
		return fmt.Errorf("strategy: %s state: v: %w", s.Name(), err)
	}
	s.m, s.v, s.step = m, v, int(step)
	if h == 0 {
		s.m, s.v = nil, nil
	}
	return nil
}
