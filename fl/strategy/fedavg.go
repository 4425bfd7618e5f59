package strategy

import (
	"fmt"
	"sync"

	"github.com/teeml/teeml/ml/tensor"
)

// FedAvg is federated averaging (McMahan et al. 2017): the next global
// model is Σ n_i·w_i / Σ n_i over the accepted results, n_i = NumExamples.
// The zero value is ready to use.
//
// Without a norm bound (Validator.MaxUpdateNorm, NormFactor) the updates are read once: the weighted
// mean is computed optimistically, and NaN/±Inf inputs are detected from the
// result (a mean of finite values is finite); only then is the finite check
// run to find the offending clients, which are rejected before recomputing.
type FedAvg struct {
	Options
	mu   sync.Mutex
	pool pool
}

// Name implements Strategy.
func (s *FedAvg) Name() string { return "fedavg" }

// AggregateFit implements Strategy.
func (s *FedAvg) AggregateFit(round int, global tensor.Weights, results []FitResult) (tensor.Weights, AggregateReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fedAvg(&s.Options, &s.pool, round, global, results)
}

// State implements Strategy (FedAvg is stateless).
func (s *FedAvg) State() (State, error) { return statelessState(s.Name()) }

// Restore implements Strategy.
func (s *FedAvg) Restore(st State) error { return statelessRestore(s.Name(), st) }

// examplesCoef returns the FedAvg coefficients (NumExamples, exact in
// float64) and the scale 1/Σ NumExamples.
func examplesCoef(results []FitResult, sel []int) ([]float64, float64) {
	coef := make([]float64, len(sel))
	var total float64
	for k, i := range sel {
		coef[k] = float64(results[i].NumExamples)
		total += coef[k]
	}
	return coef, 1 / total
}

// fedAvg validates and averages; see FedAvg for the single-pass scheme.
func fedAvg(o *Options, p *pool, round int, global tensor.Weights, results []FitResult) (tensor.Weights, AggregateReport, error) {
	rep := AggregateReport{Round: round, Rejected: map[string]string{}}
	if err := checkGlobal(global); err != nil {
		return nil, rep, err
	}
	v := &o.Validator
	workers := o.workers()
	acc := v.structural(global, results, &rep)
	if v.normBounded() {
		rep.UpdateNorms = map[string]float64{}
		acc = v.values(global, results, acc, workers, &rep, rep.UpdateNorms)
	}
	out := global.ZerosLike()
	for {
		rep.Accepted = clientsOf(results, acc)
		if err := v.enough(acc, len(results), &rep, 0, ""); err != nil {
			return nil, rep, err
		}
		coef, scale := examplesCoef(results, acc)
		if !weightedMeanInto(out, results, acc, coef, scale, workers, p) {
			break
		}
		// Some accepted update holds a NaN or ±Inf: find it, reject, redo.
		keep := v.values(global, results, acc, workers, &rep, nil)
		if len(keep) == len(acc) {
			return nil, rep, fmt.Errorf("strategy: round %d: weighted mean is not finite although every update is", round)
		}
		acc = keep
	}
	finishReport(&rep, results, acc)
	return out, rep, nil
}

// FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous
// Networks") aggregates like FedAvg; its difference is on the clients, which
// minimise their local loss plus the proximal term (μ/2)‖w − w_global‖². The
// server sends μ in every ConfigureFit under KeyProximalMu; a client applies
// it with AddProximalGradient (see there for where it plugs in).
type FedProx struct {
	FedAvg
	// Mu is the proximal coefficient μ ≥ 0 (the paper tunes it over
	// {0.001, 0.01, 0.1, 1}; μ = 0 is FedAvg).
	Mu float64
}

// Name implements Strategy.
func (s *FedProx) Name() string { return "fedprox" }

// ConfigureFit implements Strategy: FedAvg's config plus "proximal_mu".
func (s *FedProx) ConfigureFit(round int, _ tensor.Weights) Config {
	return s.fitConfig(round, KeyProximalMu, s.Mu)
}

// State implements Strategy (FedProx is stateless).
func (s *FedProx) State() (State, error) { return statelessState(s.Name()) }

// Restore implements Strategy.
func (s *FedProx) Restore(st State) error { return statelessRestore(s.Name(), st) }

// AddProximalGradient adds the gradient of FedProx's proximal term
// (μ/2)‖w − w_global‖² to grad: grad ← grad + μ·(w − w_global), coordinate by
// coordinate. grad, w and global must be compatible.
//
// Where it plugs in: in the client's local training step, after the loss
// gradient ∇F(w) is computed for a mini-batch and before the optimiser
// (SGD/Adam) consumes it — exactly where an L2 weight decay λ·w is added,
// which is the special case w_global = 0. w_global is the model received at
// the start of the round and stays fixed during local training. A trainer
// that computes gradients inside a compiled graph (ml.Model.Train) needs the
// same term inside its train step: grad += μ·(w − w_global), with w_global
// passed in as a constant input.
func AddProximalGradient(grad, w, global tensor.Weights, mu float64) error {
	if err := w.Compatible(global); err != nil {
		return fmt.Errorf("strategy: proximal gradient: weights vs global: %w", err)
	}
	if err := grad.Compatible(w); err != nil {
		return fmt.Errorf("strategy: proximal gradient: gradient vs weights: %w", err)
	}
	for i, t := range grad {
		wd, gd := w[i].Data, global[i].Data
		for j := range t.Data {
			t.Data[j] = float32(float64(t.Data[j]) + mu*(float64(wd[j])-float64(gd[j])))
		}
	}
	return nil
}

// ProximalTerm returns FedProx's proximal term (μ/2)‖w − w_global‖², the
// amount to add to a client's reported local loss.
func ProximalTerm(w, global tensor.Weights, mu float64) (float64, error) {
	if err := w.Compatible(global); err != nil {
		return 0, fmt.Errorf("strategy: proximal term: %w", err)
	}
	var s float64
	for i, t := range w {
		s += sqDiff(t.Data, global[i].Data)
	}
	return mu / 2 * s, nil
}
