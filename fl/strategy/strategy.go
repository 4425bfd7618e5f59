// Package strategy holds the server-side aggregation strategies of horizontal
// federated learning, in the shape of Flower's Strategy: a strategy tells
// clients what to do in a round (ConfigureFit / ConfigureEvaluate), turns the
// clients' returned weights into the next global model (AggregateFit) and
// their evaluation results into one loss and set of metrics
// (AggregateEvaluate). It knows nothing of transport, attestation, client
// selection or bookkeeping: the server loop hands it plain values.
//
// Strategies:
//
//   - FedAvg: the examples-weighted mean of the client weights (McMahan et al. 2017).
//   - FedProx: FedAvg aggregation; ConfigureFit carries "proximal_mu", and
//     AddProximalGradient / ProximalTerm are the client-side half (Li et al. 2020).
//   - FedOpt (NewFedAdam, NewFedYogi, NewFedAdagrad): a server optimiser
//     stepping along the pseudo-gradient Δ = avg(w_i) − w_global (Reddi et
//     al. 2021, "Adaptive Federated Optimization"), defaults as in Flower.
//   - Median: coordinate-wise median (Yin et al. 2018).
//   - TrimmedMean: coordinate-wise mean after dropping the ⌊β·n⌋ smallest
//     and largest values (Yin et al. 2018).
//   - Krum / Multi-Krum (Blanchard et al. 2017): the update(s) with the
//     smallest sum of squared distances to their n−f−2 nearest neighbours.
//
// Every strategy first runs the same update validation (Validator): results
// with the wrong tensor names/shapes/order, NaN or ±Inf values, NumExamples ≤ 0,
// duplicate or empty client ids, or (when configured) an update norm
// ‖w_i − w_global‖ above a bound are rejected, one line of reason per client
// in AggregateReport.Rejected, and the round fails if fewer than a minimum
// remain.
//
// # Numerics and performance
//
// Aggregation runs over fixed-size spans of each tensor (spanSize elements)
// on a bounded pool of Options.Workers goroutines (default GOMAXPROCS). Sums
// over clients are accumulated per coordinate in float64, in client order,
// and rounded to float32 once: with float32 inputs and integer NumExamples
// weights every product c·x is exact in float64, and the float64 rounding
// error of a sum of n terms (≤ n·2⁻⁵³ of Σ|c·x|) is far below half a
// float32 ulp of the result for any realistic n, so no compensated (Kahan)
// or pairwise summation is needed: the result is the exact weighted mean
// rounded to float32, to within one ulp. Reductions over coordinates
// (update norms, Krum's pairwise distances) are accumulated in float64 in
// 16 interleaved lanes per span, and spans in fixed groups combined in
// order: results are bit-identical whatever the number of workers. On amd64
// with AVX the weighted sum and the squared distances run in assembly
// kernels (kernels_amd64.s) that perform exactly the same float64
// operations in the same order as the Go code (no FMA contraction), so they
// agree bit for bit with the pure-Go build (-tags purego, other
// architectures). FedAvg's kernel runs at memory read bandwidth.
//
// Per-coordinate order statistics (median, trimmed mean) for up to 32
// clients sort blocks of coordinates column-wise: each client's values
// become a row of order-preserving int32 keys in per-worker scratch and
// Batcher's odd–even merge sorting network runs row against row with
// branchless min/max. Above 32 clients each coordinate's values are copied
// into per-worker scratch and selected in place (quickselect, insertion sort
// for short ranges, a sort fallback bounding the worst case). Neither
// allocates per coordinate.
//
// Strategies are safe for concurrent use (methods serialise on a mutex),
// but a server normally drives one strategy from one loop.
package strategy

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"github.com/teeml/teeml/ml/tensor"
)

// Config is a per-round instruction set for clients: plain named numbers
// (learning rates, epochs, proximal μ, the round number), easy to serialise
// into any transport. Well-known keys are the Key* constants.
type Config map[string]float64

// Well-known Config keys.
const (
	// KeyRound is the 1-based server round, set by every strategy.
	KeyRound = "server_round"
	// KeyProximalMu is FedProx's μ: the client adds (μ/2)‖w − w_global‖² to
	// its local loss (see AddProximalGradient).
	KeyProximalMu = "proximal_mu"
	// KeyEtaL is the client learning rate η_l of Reddi et al. that the
	// FedOpt strategies were tuned with (meant for local SGD).
	KeyEtaL = "eta_l"
)

// MetricSurvivors is the metric of a FitResult that is already the mean
// of several clients' updates (secure aggregation's one unmasked result):
// how many masked inputs the mean is over. DP-FedAvg rescales it to its
// fixed denominator with this count.
const MetricSurvivors = "secagg_survivors"

// FitResult is one client's answer to a fit round: its locally trained
// weights (a full model, not a delta), the number of training examples it
// used, and optional metrics (e.g. "loss", "accuracy").
type FitResult struct {
	Client      string
	Weights     tensor.Weights
	NumExamples int
	Metrics     map[string]float64
}

// EvalResult is one client's evaluation of the global model on its data.
type EvalResult struct {
	Client      string
	NumExamples int
	Loss        float64
	Metrics     map[string]float64
}

// AggregateReport says what a strategy did with a round's results.
type AggregateReport struct {
	Round int
	// Accepted are the clients whose results passed validation, in input order.
	Accepted []string
	// Rejected maps each rejected client to a one-line reason naming the
	// client and the failed check. Results without a client id are keyed "#i"
	// (their index in the input).
	Rejected map[string]string
	// Selected are the clients whose weights went into the aggregate: the
	// accepted ones, except for Krum, which keeps only the best scored.
	Selected []string
	// NumExamples is the total NumExamples of the selected clients.
	NumExamples int
	// Metrics is the NumExamples-weighted mean, over the selected clients, of
	// each fit metric they reported (non-finite values ignored).
	Metrics map[string]float64
	// UpdateNorms holds ‖w_i − w_global‖₂ of the accepted clients. Every
	// strategy fills it except FedAvg and FedProx without a norm bound
	// (Validator.MaxUpdateNorm or NormFactor), which never compute it
	// (single-pass path).
	UpdateNorms map[string]float64
	// Scores holds Krum's score of every accepted client (smaller is better).
	Scores map[string]float64
	// Privacy holds a differentially private wrapper's accounting of the
	// round (fl/privacy: dp_epsilon, dp_delta, dp_clip_norm, …); nil otherwise.
	Privacy map[string]float64
}

// State is a strategy's mutable state (server-optimiser moments and step
// count), for crash-safe resume: save it after a round, Restore it into a
// freshly built strategy with the same options. Tensors can be written with
// ml/safetensors; Scalars into its metadata.
type State struct {
	Strategy string // Name() of the strategy that produced it
	Tensors  tensor.Weights
	Scalars  map[string]float64
}

// Strategy is a federated aggregation strategy. round is 1-based.
type Strategy interface {
	// Name is a short identifier such as "fedavg" or "krum".
	Name() string
	// ConfigureFit returns the instructions for every client training in
	// this round, starting from global.
	ConfigureFit(round int, global tensor.Weights) Config
	// ConfigureEvaluate returns the instructions for clients evaluating
	// the global model in this round.
	ConfigureEvaluate(round int) Config
	// AggregateFit validates the clients' results against global and
	// returns the next global weights (newly allocated; the inputs are not
	// modified or retained). The report is filled even when err != nil, so
	// rejections are visible when too few results were accepted.
	AggregateFit(round int, global tensor.Weights, results []FitResult) (tensor.Weights, AggregateReport, error)
	// AggregateEvaluate combines evaluation results into the
	// NumExamples-weighted mean loss and metrics. Results with
	// NumExamples ≤ 0 or a non-finite loss are ignored; none left is an error.
	AggregateEvaluate(round int, results []EvalResult) (loss float64, metrics map[string]float64, err error)
	// State returns a deep copy of the strategy's mutable state (empty for
	// stateless strategies).
	State() (State, error)
	// Restore replaces the mutable state with a copy of s, which must come
	// from a strategy of the same Name.
	Restore(s State) error
}

// Evaluator is the optional server-side evaluation of a strategy (Flower's
// Strategy.evaluate): after AggregateFit, the round's new global model is
// evaluated on data the server holds (a held-out test split), and the
// result reported as its own phase, apart from the aggregation. A strategy
// may implement it, or the server loop may be given one next to the
// strategy (fl/scheduler.Config.Evaluator). An error is reported and does
// not fail the round.
type Evaluator interface {
	// Evaluate evaluates global, the model aggregated in round, and
	// returns its metrics (e.g. test_loss, test_accuracy).
	Evaluate(ctx context.Context, round int, global tensor.Weights) (map[string]float64, error)
}

// ShapeFree is implemented by a strategy whose models change shape from
// round to round (fl/treefed: the bytes of a model file), and by the
// matching collaborator trainers. Updates must then carry the initial
// model's tensor names, in order, each with its rank and at most
// MaxElements elements, instead of its exact shapes; the strategy
// validates their contents itself.
type ShapeFree interface {
	MaxElements() int
}

// SameNames reports the first difference between w and the names and
// ranks of initial, or a tensor of w above maxElements elements: the
// check that replaces Weights.Compatible for a ShapeFree model.
func SameNames(initial, w tensor.Weights, maxElements int) error {
	if len(initial) != len(w) {
		return fmt.Errorf("%d tensors, the model has %d", len(w), len(initial))
	}
	for i := range initial {
		switch {
		case initial[i].Name != w[i].Name:
			return fmt.Errorf("tensor %d is %q, the model has %q", i, w[i].Name, initial[i].Name)
		case len(initial[i].Shape) != len(w[i].Shape):
			return fmt.Errorf("tensor %q has shape %v, the model's has rank %d", w[i].Name, w[i].Shape, len(initial[i].Shape))
		case tensor.NumElements(w[i].Shape) > maxElements:
			return fmt.Errorf("tensor %q has shape %v, more than %d elements", w[i].Name, w[i].Shape, maxElements)
		}
	}
	return nil
}

// Options are shared by all strategies.
type Options struct {
	// Validator configures the checks run on every FitResult before
	// aggregation.
	Validator Validator
	// Workers bounds the goroutines used to aggregate; ≤ 0 means
	// runtime.GOMAXPROCS(0). Results do not depend on it.
	Workers int
	// FitConfig, if set, adds keys to every ConfigureFit result (Flower's
	// on_fit_config_fn), e.g. local epochs. Strategy keys win on conflict.
	FitConfig func(round int) Config
	// EvaluateConfig, if set, adds keys to every ConfigureEvaluate result.
	EvaluateConfig func(round int) Config
}

// ConfigureFit implements Strategy for every strategy that sends only
// {"server_round": round} plus FitConfig (FedProx and FedOpt add their own).
func (o *Options) ConfigureFit(round int, _ tensor.Weights) Config { return o.fitConfig(round) }

// ConfigureEvaluate implements Strategy: {"server_round": round} plus
// EvaluateConfig.
func (o *Options) ConfigureEvaluate(round int) Config { return o.evaluateConfig(round) }

// AggregateEvaluate implements Strategy: the example-weighted mean loss and
// metrics, the same for every strategy.
func (o *Options) AggregateEvaluate(_ int, results []EvalResult) (float64, map[string]float64, error) {
	return aggregateEvaluate(results)
}

func (o *Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// fitConfig builds a Config from the user hook, the round and strategy keys.
func (o *Options) fitConfig(round int, kv ...any) Config {
	return buildConfig(o.FitConfig, round, kv)
}

func (o *Options) evaluateConfig(round int) Config {
	return buildConfig(o.EvaluateConfig, round, nil)
}

func buildConfig(hook func(int) Config, round int, kv []any) Config {
	c := Config{}
	if hook != nil {
		for k, v := range hook(round) {
			c[k] = v
		}
	}
	c[KeyRound] = float64(round)
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1].(float64)
	}
	return c
}

// Names lists the strategy names accepted by New.
func Names() []string {
	return []string{"fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "median", "trimmedmean", "krum", "multikrum"}
}

// New builds a strategy by name with default hyperparameters: FedProx
// μ = 0.01; FedAdam/FedYogi/FedAdagrad with Flower's defaults; TrimmedMean
// β = 0.2; Krum and Multi-Krum with f = 1 (Multi-Krum keeps n − f).
// Callers needing other values build the strategy directly.
func New(name string, o Options) (Strategy, error) {
	switch name {
	case "fedavg":
		return &FedAvg{Options: o}, nil
	case "fedprox":
		return &FedProx{FedAvg: FedAvg{Options: o}, Mu: 0.01}, nil
	case "fedadam":
		return NewFedAdam(o), nil
	case "fedyogi":
		return NewFedYogi(o), nil
	case "fedadagrad":
		return NewFedAdagrad(o), nil
	case "median":
		return &Median{Options: o}, nil
	case "trimmedmean":
		return &TrimmedMean{Options: o, Beta: 0.2}, nil
	case "krum":
		return &Krum{Options: o, F: 1, M: 1}, nil
	case "multikrum":
		return &Krum{Options: o, F: 1, M: KeepAll}, nil
	}
	return nil, fmt.Errorf("strategy: unknown strategy %q (want one of %v)", name, Names())
}

var (
	_ Strategy = (*FedAvg)(nil)
	_ Strategy = (*FedProx)(nil)
	_ Strategy = (*FedOpt)(nil)
	_ Strategy = (*Median)(nil)
	_ Strategy = (*TrimmedMean)(nil)
	_ Strategy = (*Krum)(nil)
)

// aggregateEvaluate is AggregateEvaluate for every strategy: the
// NumExamples-weighted mean of the losses and of each metric.
func aggregateEvaluate(results []EvalResult) (float64, map[string]float64, error) {
	var loss, total float64
	type acc struct{ sum, w float64 }
	ms := map[string]*acc{}
	used := 0
	for _, r := range results {
		if r.NumExamples <= 0 || math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
			continue
		}
		used++
		w := float64(r.NumExamples)
		loss += w * r.Loss
		total += w
		for k, v := range r.Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			a := ms[k]
			if a == nil {
				a = &acc{}
				ms[k] = a
			}
			a.sum += w * v
			a.w += w
		}
	}
	if used == 0 {
		return math.NaN(), nil, fmt.Errorf("strategy: no usable evaluation results (%d given; need NumExamples > 0 and a finite loss)", len(results))
	}
	out := make(map[string]float64, len(ms))
	for k, a := range ms {
		out[k] = a.sum / a.w
	}
	return loss / total, out, nil
}

// fitMetrics is the NumExamples-weighted mean of each fit metric over the
// selected results.
func fitMetrics(results []FitResult, sel []int) map[string]float64 {
	type acc struct{ sum, w float64 }
	ms := map[string]*acc{}
	for _, i := range sel {
		w := float64(results[i].NumExamples)
		for k, v := range results[i].Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			a := ms[k]
			if a == nil {
				a = &acc{}
				ms[k] = a
			}
			a.sum += w * v
			a.w += w
		}
	}
	if len(ms) == 0 {
		return nil
	}
	out := make(map[string]float64, len(ms))
	for k, a := range ms {
		out[k] = a.sum / a.w
	}
	return out
}

// finishReport fills Selected, NumExamples and Metrics.
func finishReport(rep *AggregateReport, results []FitResult, sel []int) {
	rep.Selected = make([]string, len(sel))
	rep.NumExamples = 0
	for j, i := range sel {
		rep.Selected[j] = results[i].Client
		rep.NumExamples += results[i].NumExamples
	}
	rep.Metrics = fitMetrics(results, sel)
}

// statelessState / statelessRestore implement State and Restore for the
// strategies without mutable state.
func statelessState(name string) (State, error) { return State{Strategy: name}, nil }

func statelessRestore(name string, s State) error {
	if s.Strategy != name {
		return fmt.Errorf("strategy: restoring %s from a %q state", name, s.Strategy)
	}
	if len(s.Tensors) != 0 || len(s.Scalars) != 0 {
		return fmt.Errorf("strategy: %s is stateless, state has %d tensors and %d scalars", name, len(s.Tensors), len(s.Scalars))
	}
	return nil
}
