package privacy

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// Where the Gaussian noise is added.
const (
	// NoiseCentral: the aggregator (in its TEE) clips every sampled update,
	// averages with the fixed denominator m = q·N and adds N(0, (z·C/m)²)
	// per coordinate (McMahan et al. 2018, DP-FedAvg).
	NoiseCentral = "central"
	// NoiseLocal: every collaborator clips its own update and adds
	// N(0, (z·C)²) before upload (ClientSide); the aggregator only averages.
	NoiseLocal = "local"
)

// Fit-config keys DP-FedAvg sends to collaborators (ConfigureFit).
const (
	// KeyClipNorm is the round's clip norm C: collaborators clip their
	// update Δ = w_local − w_global to it before upload.
	KeyClipNorm = "dp_clip_norm"
	// KeyLocalNoiseStd (local noise only) is the std z·C a collaborator
	// adds to every coordinate of its clipped update.
	KeyLocalNoiseStd = "dp_local_noise_std"
)

// Adaptive configures adaptive clipping (Andrew et al. 2021, "Differentially
// Private Learning with Adaptive Clipping"): the clip norm follows the
// TargetQuantile of the update norms by the geometric rule
// C ← C·exp(−LearningRate·(b̄ − TargetQuantile)), b̄ the fraction of sampled
// updates that were not clipped, noised with CountNoiseMultiplier·… on the
// count; the update's own noise multiplier shrinks so that the total stays
// the plan's (AdaptiveNoiseSplit).
type Adaptive struct {
	TargetQuantile       float64 // γ in (0, 1), e.g. 0.5
	LearningRate         float64 // η_C > 0, e.g. 0.2
	CountNoiseMultiplier float64 // σ_b > z/2; Andrew et al. suggest m/20
}

// Config configures DP-FedAvg.
type Config struct {
	// Clients is the population N (the plan's collaborators, in order).
	Clients []string
	// SampleRate is q ∈ (0, 1]: each client joins a round's aggregate with
	// probability q (Sample, seeded by Seed and the round).
	SampleRate float64
	Seed       int64
	// NoiseMultiplier is z > 0: the noise std over the clip norm.
	NoiseMultiplier float64
	// Noise is NoiseCentral or NoiseLocal.
	Noise string
	// ClipNorm is the fixed clip norm C > 0, or the initial one with Adaptive.
	ClipNorm float64
	// Adaptive, if set, adapts ClipNorm every round (central noise only).
	Adaptive *Adaptive
	// Delta is the target δ of the reported (ε, δ); EpsilonBudget > 0 stops
	// the federation before a round that would take ε above it (BeforeRound).
	Delta         float64
	EpsilonBudget float64
	// Validator checks every update before clipping (strategy.Validator).
	Validator strategy.Validator
	Workers   int
	// Orders are the accountant's RDP orders (DefaultOrders when empty).
	Orders []float64
	// SecAgg, if set, runs DP-FedAvg over secure aggregation: the one
	// result AggregateFit gets is the survivors' unmasked mean (scheduler
	// SecAgg), collaborators clip (and, with local noise, add lattice
	// noise before masking), no sampling (SampleRate must be 1) and no
	// adaptive clipping.
	SecAgg *SecAggDP
	// NoiseKey fixes the noise generator's key (tests); nil: crypto/rand.
	NoiseKey *[32]byte
	Logger   *slog.Logger
}

// DPFedAvg wraps a strategy the way Flower's DifferentialPrivacy*Clipping
// wrappers do: it validates, samples and clips the clients' updates, adds
// the noise, accounts for the round, and hands the inner strategy one
// result, the noised mean update, as post-processing: FedAvg applies it as
// is, FedOpt's server optimisers step along it. Strategies that need the
// individual updates (median, trimmed mean, Krum) are refused. It knows
// nothing of transport: the scheduler drives it like any strategy and asks
// BeforeRound before opening a round.
type DPFedAvg struct {
	inner  strategy.Strategy
	cfg    Config
	acc    *Accountant
	noise  *Noise
	clip   float64 // current clip norm
	zDelta float64 // the update's noise multiplier (z, or less with Adaptive)
	log    *slog.Logger
}

// NewDPFedAvg wraps inner, whose own validator should be empty: cfg's
// Validator checks the raw updates, and the noised mean must not be
// rejected for its norm.
func NewDPFedAvg(inner strategy.Strategy, cfg Config) (*DPFedAvg, error) {
	switch inner.Name() {
	case "median", "trimmedmean", "krum", "multikrum":
		return nil, fmt.Errorf("privacy: strategy %s needs the individual updates, DP-FedAvg hands it one noised mean: use fedavg, fedprox or a FedOpt strategy: %w", inner.Name(), ErrParameter)
	}
	switch {
	case len(cfg.Clients) == 0:
		return nil, fmt.Errorf("privacy: no clients: %w", ErrParameter)
	case !(cfg.SampleRate > 0 && cfg.SampleRate <= 1):
		return nil, fmt.Errorf("privacy: sample rate %v: must be in (0, 1]: %w", cfg.SampleRate, ErrParameter)
	case !(cfg.NoiseMultiplier > 0) || math.IsInf(cfg.NoiseMultiplier, 0):
		return nil, fmt.Errorf("privacy: noise multiplier %v: must be finite and > 0: %w", cfg.NoiseMultiplier, ErrParameter)
	case cfg.Noise != NoiseCentral && cfg.Noise != NoiseLocal:
		return nil, fmt.Errorf("privacy: noise %q: must be %q or %q: %w", cfg.Noise, NoiseCentral, NoiseLocal, ErrParameter)
	case !(cfg.ClipNorm > 0) || math.IsInf(cfg.ClipNorm, 0):
		return nil, fmt.Errorf("privacy: clip norm %v: must be finite and > 0: %w", cfg.ClipNorm, ErrParameter)
	case !(cfg.Delta > 0 && cfg.Delta < 1):
		return nil, fmt.Errorf("privacy: target delta %v: must be in (0, 1): %w", cfg.Delta, ErrParameter)
	case !(cfg.EpsilonBudget >= 0) || math.IsInf(cfg.EpsilonBudget, 0):
		return nil, fmt.Errorf("privacy: epsilon budget %v: must be finite and ≥ 0: %w", cfg.EpsilonBudget, ErrParameter)
	case cfg.Adaptive != nil && cfg.Noise == NoiseLocal:
		return nil, fmt.Errorf("privacy: adaptive clipping needs central noise (the aggregator cannot see the norms of locally noised updates): %w", ErrParameter)
	case cfg.SecAgg != nil && cfg.Adaptive != nil:
		return nil, fmt.Errorf("privacy: adaptive clipping with secure aggregation is not supported (the unclipped count would need its own masked, noised coordinate): %w", ErrParameter)
	case cfg.SecAgg != nil && cfg.SampleRate != 1:
		return nil, fmt.Errorf("privacy: sample rate %v with secure aggregation: must be 1 (every member takes part in the round's masking): %w", cfg.SampleRate, ErrParameter)
	case cfg.SecAgg != nil && !(cfg.SecAgg.MinSurvivors >= 1 && cfg.SecAgg.MinSurvivors <= len(cfg.Clients)):
		return nil, fmt.Errorf("privacy: secure aggregation: minimum survivors %d: must be in 1..%d: %w", cfg.SecAgg.MinSurvivors, len(cfg.Clients), ErrParameter)
	}
	d := &DPFedAvg{inner: inner, cfg: cfg, clip: cfg.ClipNorm, zDelta: cfg.NoiseMultiplier, log: cfg.Logger}
	d.cfg.Clients = slices.Clone(cfg.Clients)
	if d.log == nil {
		d.log = slog.Default()
	}
	if a := cfg.Adaptive; a != nil {
		if !(a.TargetQuantile > 0 && a.TargetQuantile < 1) || !(a.LearningRate > 0) {
			return nil, fmt.Errorf("privacy: adaptive clipping: target quantile %v must be in (0, 1) and learning rate %v > 0: %w", a.TargetQuantile, a.LearningRate, ErrParameter)
		}
		z, err := AdaptiveNoiseSplit(cfg.NoiseMultiplier, a.CountNoiseMultiplier)
		if err != nil {
			return nil, fmt.Errorf("privacy: adaptive clipping: %w", err)
		}
		d.zDelta = z
	}
	var err error
	if d.acc, err = NewAccountant(cfg.Orders...); err != nil {
		return nil, fmt.Errorf("privacy: %w", err)
	}
	if d.noise, err = NewNoise(cfg.NoiseKey); err != nil {
		return nil, err
	}
	return d, nil
}

// SetLogger sends the per-round accounting lines to l (the aggregator's
// logger; default slog.Default()).
func (d *DPFedAvg) SetLogger(l *slog.Logger) {
	if l != nil {
		d.log = l
	}
}

// Name is "dp-" and the inner strategy's name.
func (d *DPFedAvg) Name() string { return "dp-" + d.inner.Name() }

// roundQ is the sampling rate the accountant charges a round: q for
// central noise; 1 for local noise, whose every release is seen by the
// aggregator, which knows who was sampled.
func (d *DPFedAvg) roundQ() float64 {
	if d.cfg.Noise == NoiseLocal {
		return 1
	}
	return d.cfg.SampleRate
}

// expected is the fixed denominator m = q·N.
func (d *DPFedAvg) expected() float64 { return d.cfg.SampleRate * float64(len(d.cfg.Clients)) }

// Epsilon is the ε spent so far at the plan's δ.
func (d *DPFedAvg) Epsilon() float64 {
	e, err := d.acc.Epsilon(d.cfg.Delta)
	if err != nil {
		return math.Inf(1)
	}
	return e
}

// Rounds is the number of rounds accounted so far.
func (d *DPFedAvg) Rounds() int { return d.acc.Steps() }

// ClipNorm is the clip norm of the next round.
func (d *DPFedAvg) ClipNorm() float64 { return d.clip }

// BudgetError is BeforeRound's refusal: round Round would spend Next > Budget.
type BudgetError struct {
	Round               int
	Spent, Next, Budget float64
	Delta               float64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("privacy budget: round %d would spend ε = %.4g > budget %.4g at δ = %.3g (spent ε = %.4g after %d rounds)",
		e.Round, e.Next, e.Budget, e.Delta, e.Spent, e.Round-1)
}

// BeforeRound refuses to open round r (a *BudgetError) when its ε would
// exceed the budget: the federation stops with the model of round r−1.
func (d *DPFedAvg) BeforeRound(r int) error {
	if d.cfg.EpsilonBudget == 0 {
		return nil
	}
	next, err := d.acc.EpsilonAfter(d.roundQ(), d.cfg.NoiseMultiplier, 1, d.cfg.Delta)
	if err != nil {
		return fmt.Errorf("privacy: round %d: %w", r, err)
	}
	if next > d.cfg.EpsilonBudget {
		return &BudgetError{Round: r, Spent: d.Epsilon(), Next: next, Budget: d.cfg.EpsilonBudget, Delta: d.cfg.Delta}
	}
	return nil
}

// ConfigureFit adds the clip norm (and, with local noise, the noise std)
// to the inner strategy's instructions.
func (d *DPFedAvg) ConfigureFit(round int, global tensor.Weights) strategy.Config {
	c := d.inner.ConfigureFit(round, global)
	c[KeyClipNorm] = d.clip
	if sa := d.cfg.SecAgg; sa != nil {
		if d.cfg.Noise == NoiseLocal {
			c[KeyLatticeSigma] = LatticeSigma(d.cfg.NoiseMultiplier, d.clip, sa.FracBits, global.NumParams(), sa.MinSurvivors)
		}
		return c
	}
	if d.cfg.Noise == NoiseLocal {
		c[KeyLocalNoiseStd] = d.cfg.NoiseMultiplier * d.clip
	}
	return c
}

// ConfigureEvaluate is the inner strategy's.
func (d *DPFedAvg) ConfigureEvaluate(round int) strategy.Config {
	return d.inner.ConfigureEvaluate(round)
}

// AggregateEvaluate is the inner strategy's.
func (d *DPFedAvg) AggregateEvaluate(round int, results []strategy.EvalResult) (float64, map[string]float64, error) {
	return d.inner.AggregateEvaluate(round, results)
}

// Privacy report keys (AggregateReport.Privacy).
const (
	ReportEpsilon         = "dp_epsilon"
	ReportDelta           = "dp_delta"
	ReportClipNorm        = "dp_clip_norm"
	ReportNoiseStd        = "dp_noise_std"
	ReportSampled         = "dp_sampled"
	ReportUnclippedFrac   = "dp_unclipped_fraction"
	ReportNoiseMultiplier = "dp_noise_multiplier"
	ReportSampleRate      = "dp_sample_rate"
	ReportRoundsAccounted = "dp_rounds"
)

// AggregateFit validates the results, keeps those of round r's sample,
// clips them (central noise), averages them over m = q·N, adds the noise,
// accounts for the round and lets the inner strategy apply the noised mean.
func (d *DPFedAvg) AggregateFit(r int, global tensor.Weights, results []strategy.FitResult) (tensor.Weights, strategy.AggregateReport, error) {
	if d.cfg.SecAgg != nil {
		return d.aggregateSecAgg(r, global, results)
	}
	acc, rep, err := d.cfg.Validator.Validate(r, global, results, d.cfg.Workers)
	if err != nil {
		return nil, rep, err
	}
	inSample := map[string]bool{}
	for _, c := range Sample(d.cfg.Clients, d.cfg.SampleRate, d.cfg.Seed, r) {
		inSample[c] = true
	}
	sum := global.ZerosLike()
	var used []string
	unclipped, examples := 0, 0
	fitMetrics := map[string][2]float64{}
	for _, i := range acc {
		res := results[i]
		if !inSample[res.Client] {
			continue
		}
		delta, err := res.Weights.Sub(global)
		if err != nil {
			return nil, rep, fmt.Errorf("privacy: round %d: update of %s: %w", r, res.Client, err)
		}
		if d.cfg.Noise == NoiseCentral {
			if norm := ClipInPlace(delta, d.clip); norm <= d.clip {
				unclipped++
			}
		}
		if err := sum.AddScaledInPlace(1, delta); err != nil {
			return nil, rep, fmt.Errorf("privacy: round %d: update of %s: %w", r, res.Client, err)
		}
		used = append(used, res.Client)
		examples += res.NumExamples
		for k, v := range res.Metrics {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				a := fitMetrics[k]
				fitMetrics[k] = [2]float64{a[0] + float64(res.NumExamples)*v, a[1] + float64(res.NumExamples)}
			}
		}
	}
	m := d.expected()
	sum.ScaleInPlace(float32(1 / m))
	std := 0.0
	if d.cfg.Noise == NoiseCentral {
		std = d.zDelta * d.clip / m
		d.noise.AddInPlace(sum, std)
	}
	clipUsed := d.clip
	priv := map[string]float64{ReportClipNorm: clipUsed, ReportNoiseStd: std, ReportSampled: float64(len(used)),
		ReportNoiseMultiplier: d.cfg.NoiseMultiplier, ReportSampleRate: d.cfg.SampleRate, ReportDelta: d.cfg.Delta}
	if a := d.cfg.Adaptive; a != nil {
		frac := (float64(unclipped) + d.noise.Normal(a.CountNoiseMultiplier)) / m
		d.clip = GeometricClipUpdate(d.clip, frac, a.TargetQuantile, a.LearningRate)
		priv[ReportUnclippedFrac] = frac
	}
	if err := d.acc.Compose(d.roundQ(), d.cfg.NoiseMultiplier, 1); err != nil {
		return nil, rep, fmt.Errorf("privacy: round %d: %w", r, err)
	}
	priv[ReportEpsilon] = d.Epsilon()
	priv[ReportRoundsAccounted] = float64(d.acc.Steps())

	next, err := d.step(r, global, sum, "dp-mean")
	if err != nil {
		return nil, rep, err
	}
	rep.Selected, rep.NumExamples, rep.Privacy = used, examples, priv
	if len(fitMetrics) > 0 {
		rep.Metrics = map[string]float64{}
		for k, a := range fitMetrics {
			rep.Metrics[k] = a[0] / a[1]
		}
	}
	d.log.Info("privacy: round accounted", "round", r, "epsilon", priv[ReportEpsilon], "delta", d.cfg.Delta,
		"sampled", len(used), "of", len(d.cfg.Clients), "clip_norm", clipUsed, "next_clip_norm", d.clip, "noise_std", std,
		"noise", d.cfg.Noise, "budget", d.cfg.EpsilonBudget)
	return next, rep, nil
}

// aggregateSecAgg is AggregateFit over secure aggregation: results is the
// scheduler's one result, global plus the unmasked sum over its k
// survivors divided by k. The sum is divided by the fixed denominator
// m = N instead (as the central path does: with add/remove neighbours k
// depends on whether the user took part, m does not); with central noise
// the aggregator adds N(0, (z·C'/m)²), C' the clip norm plus the rounding
// of the fixed point; with local noise it only checks that at least the
// calibrated number of members' noise is in the sum.
func (d *DPFedAvg) aggregateSecAgg(r int, global tensor.Weights, results []strategy.FitResult) (tensor.Weights, strategy.AggregateReport, error) {
	var rep strategy.AggregateReport
	if len(results) != 1 {
		return nil, rep, fmt.Errorf("privacy: round %d: secure aggregation: %d results, want the one unmasked sum", r, len(results))
	}
	res := results[0]
	kf, ok := res.Metrics[strategy.MetricSurvivors]
	k := int(kf)
	if !ok || kf != float64(k) || k < 1 {
		return nil, rep, fmt.Errorf("privacy: round %d: secure aggregation: the sum's result has no survivor count (metric %s)", r, strategy.MetricSurvivors)
	}
	sa := d.cfg.SecAgg
	if d.cfg.Noise == NoiseLocal && k < sa.MinSurvivors {
		return nil, rep, fmt.Errorf("privacy: round %d: %d masked inputs, fewer than the %d the local noise was calibrated for: not released", r, k, sa.MinSurvivors)
	}
	delta, err := res.Weights.Sub(global)
	if err != nil {
		return nil, rep, fmt.Errorf("privacy: round %d: unmasked mean: %w", r, err)
	}
	m := d.expected()
	delta.ScaleInPlace(float32(float64(k) / m)) // sum/k → sum/m
	dim := global.NumParams()
	std := 0.0
	if d.cfg.Noise == NoiseCentral {
		std = d.cfg.NoiseMultiplier * math.Ldexp(LatticeClip(d.clip, sa.FracBits, dim), -sa.FracBits) / m
		d.noise.AddInPlace(delta, std)
	} else {
		std = math.Ldexp(LatticeSigma(d.cfg.NoiseMultiplier, d.clip, sa.FracBits, dim, sa.MinSurvivors), -sa.FracBits) * math.Sqrt(float64(k)) / m
	}
	if err := d.acc.Compose(1, d.cfg.NoiseMultiplier, 1); err != nil {
		return nil, rep, fmt.Errorf("privacy: round %d: %w", r, err)
	}
	priv := map[string]float64{ReportClipNorm: d.clip, ReportNoiseStd: std, ReportSampled: float64(k),
		ReportNoiseMultiplier: d.cfg.NoiseMultiplier, ReportSampleRate: 1, ReportDelta: d.cfg.Delta,
		ReportEpsilon: d.Epsilon(), ReportRoundsAccounted: float64(d.acc.Steps())}
	next, err := d.step(r, global, delta, "dp-secagg-mean")
	if err != nil {
		return nil, rep, err
	}
	rep.Selected, rep.NumExamples, rep.Privacy = []string{res.Client}, res.NumExamples, priv
	d.log.Info("privacy: round accounted", "round", r, "epsilon", priv[ReportEpsilon], "delta", d.cfg.Delta,
		"survivors", k, "of", len(d.cfg.Clients), "clip_norm", d.clip, "noise_std", std,
		"noise", d.cfg.Noise, "secure_aggregation", true, "budget", d.cfg.EpsilonBudget)
	return next, rep, nil
}

// State keys of the privacy part (prefixed, next to the inner's scalars).
const (
	stateClip  = "dp/clip_norm"
	stateSteps = "dp/rounds"
	stateOrder = "dp/order/"
	stateRDP   = "dp/rdp/"
)

// step hands global + delta (the noised mean update) to the inner strategy as
// its one result, so server optimisers (FedAdam, FedYogi) see only the
// privatised mean.
func (d *DPFedAvg) step(r int, global, delta tensor.Weights, client string) (tensor.Weights, error) {
	mean := global.Clone()
	if err := mean.AddScaledInPlace(1, delta); err != nil {
		return nil, fmt.Errorf("privacy: round %d: %w", r, err)
	}
	next, _, err := d.inner.AggregateFit(r, global, []strategy.FitResult{{Client: client, Weights: mean, NumExamples: 1}})
	if err != nil {
		return nil, fmt.Errorf("privacy: round %d: %s on the noised mean: %w", r, d.inner.Name(), err)
	}
	return next, nil
}

// State is the inner strategy's state plus the accountant and clip norm.
func (d *DPFedAvg) State() (strategy.State, error) {
	s, err := d.inner.State()
	if err != nil {
		return s, err
	}
	sc := map[string]float64{}
	for k, v := range s.Scalars {
		sc[k] = v
	}
	a := d.acc.State()
	sc[stateClip] = d.clip
	sc[stateSteps] = float64(a.Steps)
	for i, o := range a.Orders {
		k := fmt.Sprintf("%04d", i)
		sc[stateOrder+k] = o
		sc[stateRDP+k] = a.RDP[i]
	}
	return strategy.State{Strategy: d.Name(), Tensors: s.Tensors, Scalars: sc}, nil
}

// Restore installs a State from State: the accountant resumes at the same
// ε and the clip norm where it was.
func (d *DPFedAvg) Restore(s strategy.State) error {
	if s.Strategy != d.Name() {
		return fmt.Errorf("privacy: restoring %s from a %q state", d.Name(), s.Strategy)
	}
	inner := strategy.State{Strategy: d.inner.Name(), Tensors: s.Tensors}
	var a State
	clip, okClip := s.Scalars[stateClip]
	steps, okSteps := s.Scalars[stateSteps]
	if !okClip || !okSteps {
		return fmt.Errorf("privacy: %s state has no accountant (keys %s, %s)", d.Name(), stateClip, stateSteps)
	}
	type pair struct{ o, r float64 }
	idx := map[int]*pair{}
	for k, v := range s.Scalars {
		var p string
		var isOrder bool
		switch {
		case strings.HasPrefix(k, stateOrder):
			p, isOrder = k[len(stateOrder):], true
		case strings.HasPrefix(k, stateRDP):
			p = k[len(stateRDP):]
		case k == stateClip || k == stateSteps:
			continue
		default:
			if inner.Scalars == nil {
				inner.Scalars = map[string]float64{}
			}
			inner.Scalars[k] = v
			continue
		}
		i, err := strconv.Atoi(p)
		if err != nil || i < 0 || i > 1<<16 {
			return fmt.Errorf("privacy: %s state: key %q: bad index", d.Name(), k)
		}
		if idx[i] == nil {
			idx[i] = &pair{o: math.NaN(), r: math.NaN()}
		}
		if isOrder {
			idx[i].o = v
		} else {
			idx[i].r = v
		}
	}
	for i := 0; i < len(idx); i++ {
		p := idx[i]
		if p == nil || math.IsNaN(p.o) || math.IsNaN(p.r) {
			return fmt.Errorf("privacy: %s state: order %d incomplete", d.Name(), i)
		}
		a.Orders = append(a.Orders, p.o)
		a.RDP = append(a.RDP, p.r)
	}
	if steps != math.Trunc(steps) || steps < 0 || steps > 1e9 {
		return fmt.Errorf("privacy: %s state: rounds %v: not a count", d.Name(), steps)
	}
	a.Steps = int(steps)
	if !(clip > 0) || math.IsInf(clip, 0) {
		return fmt.Errorf("privacy: %s state: clip norm %v: must be finite and > 0", d.Name(), clip)
	}
	if err := d.acc.Restore(a); err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	if err := d.inner.Restore(inner); err != nil {
		return err
	}
	d.clip = clip
	return nil
}

// ClientSide is the collaborator's half: given the round's fit config,
// it clips local − global to the config's clip norm and, with local noise,
// adds N(0, std²) per coordinate, returning the weights to upload. Without
// the DP keys it returns local unchanged and false.
func ClientSide(cfg strategy.Config, global, local tensor.Weights, noise *Noise) (tensor.Weights, bool, error) {
	clip, ok := cfg[KeyClipNorm]
	if !ok {
		return local, false, nil
	}
	if !(clip > 0) || math.IsInf(clip, 0) {
		return nil, false, fmt.Errorf("privacy: fit config %s = %v: must be finite and > 0", KeyClipNorm, clip)
	}
	delta, err := local.Sub(global)
	if err != nil {
		return nil, false, fmt.Errorf("privacy: local update: %w", err)
	}
	ClipInPlace(delta, clip)
	if std, ok := cfg[KeyLocalNoiseStd]; ok {
		if !(std >= 0) || math.IsInf(std, 0) {
			return nil, false, fmt.Errorf("privacy: fit config %s = %v: must be finite and ≥ 0", KeyLocalNoiseStd, std)
		}
		if noise == nil {
			return nil, false, fmt.Errorf("privacy: local noise asked for and no noise source")
		}
		noise.AddInPlace(delta, std)
	}
	out := global.Clone()
	if err := out.AddScaledInPlace(1, delta); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

var _ strategy.Strategy = (*DPFedAvg)(nil)
