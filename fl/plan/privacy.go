package plan

import (
	"fmt"
	"math"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/strategy"
)

// Privacy is the optional privacy section: DP-FedAvg (fl/privacy,
// docs/privacy.md):
//
//	privacy:
//	  noise: central              # central (aggregator) | local (each collaborator)
//	  noise_multiplier: 1.1       # z > 0: noise std over the clip norm
//	  clip_norm: 1.0              # C > 0: fixed, or the initial one with adaptive_clipping
//	  adaptive_clipping:          # optional (central only; Andrew et al. 2021)
//	    target_quantile: 0.5      # γ in (0, 1)
//	    learning_rate: 0.2        # η_C > 0
//	    count_noise_multiplier: 5 # σ_b > z/2 (suggested: expected clients per round / 20)
//	  sample_rate: 0.5            # optional, q in (0, 1] (default 1): Poisson client sampling per round
//	  sample_seed: 7              # optional (default task_runner.seed)
//	  target_delta: 1e-5          # δ in (0, 1) of the reported (ε, δ)
//	  epsilon_budget: 8           # optional ε > 0: stop before a round that would exceed it (default: no budget)
//
// A plan without the section hashes as before the section existed.
type Privacy struct {
	Noise           string // "" when the section is absent
	NoiseMultiplier float64
	ClipNorm        float64
	Adaptive        *privacy.Adaptive
	SampleRate      float64
	SampleSeed      int64
	seedSet         bool
	TargetDelta     float64
	EpsilonBudget   float64
}

// Enabled reports whether the plan has a privacy section.
func (p *Privacy) Enabled() bool { return p.Noise != "" }

func (ps *parser) privacy(key string, v *yaml.Node) error {
	pr := &ps.p.Privacy
	pr.SampleRate = 1
	if err := ps.mapping(v, key, []field{
		{"noise", true, ps.str(&pr.Noise)},
		{"noise_multiplier", true, ps.float(&pr.NoiseMultiplier)},
		{"clip_norm", true, ps.float(&pr.ClipNorm)},
		{"adaptive_clipping", false, func(key string, v *yaml.Node) error {
			a := &privacy.Adaptive{}
			pr.Adaptive = a
			return ps.mapping(v, key, []field{
				{"target_quantile", true, ps.float(&a.TargetQuantile)},
				{"learning_rate", true, ps.float(&a.LearningRate)},
				{"count_noise_multiplier", true, ps.float(&a.CountNoiseMultiplier)},
			})
		}},
		{"sample_rate", false, ps.float(&pr.SampleRate)},
		{"sample_seed", false, func(key string, v *yaml.Node) error {
			pr.seedSet = true
			return ps.seed(&pr.SampleSeed)(key, v)
		}},
		{"target_delta", true, ps.float(&pr.TargetDelta)},
		{"epsilon_budget", false, ps.float(&pr.EpsilonBudget)},
	}); err != nil {
		return err
	}
	if pr.Noise == "" {
		return ps.errf(v, key+".noise", "must be %q or %q, got \"\"", privacy.NoiseCentral, privacy.NoiseLocal)
	}
	return nil
}

// validatePrivacy checks the privacy section and its fit with the
// aggregation strategy.
func (p *Plan) validatePrivacy() error {
	pr := &p.Privacy
	const k = "privacy."
	if !pr.Enabled() {
		return nil
	}
	if !pr.seedSet { // the default, resolved once the whole plan is read
		pr.SampleSeed, pr.seedSet = p.TaskRunner.Seed, true
	}
	switch {
	case pr.Noise != privacy.NoiseCentral && pr.Noise != privacy.NoiseLocal:
		return p.errf(k+"noise", "must be %q or %q, got %q", privacy.NoiseCentral, privacy.NoiseLocal, pr.Noise)
	case !(pr.NoiseMultiplier > 0 && pr.NoiseMultiplier <= 1e6):
		return p.errf(k+"noise_multiplier", "must be in (0, 1e6], got %v", pr.NoiseMultiplier)
	case !(pr.ClipNorm > 0 && pr.ClipNorm <= 1e12):
		return p.errf(k+"clip_norm", "must be in (0, 1e12], got %v", pr.ClipNorm)
	case !(pr.SampleRate > 0 && pr.SampleRate <= 1):
		return p.errf(k+"sample_rate", "must be in (0, 1], got %v", pr.SampleRate)
	case !(pr.TargetDelta > 0 && pr.TargetDelta < 1):
		return p.errf(k+"target_delta", "must be in (0, 1), got %v", pr.TargetDelta)
	case !(pr.EpsilonBudget >= 0 && pr.EpsilonBudget <= 1e6):
		return p.errf(k+"epsilon_budget", "must be in (0, 1e6] (or absent for no budget), got %v", pr.EpsilonBudget)
	}
	if a := pr.Adaptive; a != nil {
		switch {
		case pr.Noise != privacy.NoiseCentral:
			return p.errf(k+"adaptive_clipping", "needs noise %q: the aggregator cannot see the norms of locally noised updates", privacy.NoiseCentral)
		case !(a.TargetQuantile > 0 && a.TargetQuantile < 1):
			return p.errf(k+"adaptive_clipping.target_quantile", "must be in (0, 1), got %v", a.TargetQuantile)
		case !(a.LearningRate > 0 && a.LearningRate <= 10):
			return p.errf(k+"adaptive_clipping.learning_rate", "must be in (0, 10], got %v", a.LearningRate)
		case !(a.CountNoiseMultiplier > pr.NoiseMultiplier/2) || math.IsInf(a.CountNoiseMultiplier, 0):
			return p.errf(k+"adaptive_clipping.count_noise_multiplier", "must exceed noise_multiplier/2 = %v (Andrew et al. Thm 1), got %v",
				pr.NoiseMultiplier/2, a.CountNoiseMultiplier)
		}
	}
	switch p.Aggregation.Strategy {
	case "median", "trimmedmean", "krum", "multikrum":
		return p.errf("aggregation.strategy", "%s needs the individual updates and privacy hands it one noised mean: use fedavg, fedprox, fedadam, fedyogi or fedadagrad", p.Aggregation.Strategy)
	}
	return nil
}

// canonicalPrivacy appends the section to the canonical encoding, only
// when present, so that plans without it keep their hash.
func (p *Plan) canonicalPrivacy(w func(indent int, key, value string)) {
	pr := &p.Privacy
	if !pr.Enabled() {
		return
	}
	w(0, "privacy", "")
	w(1, "noise", cq(pr.Noise))
	w(1, "noise_multiplier", cf(pr.NoiseMultiplier))
	w(1, "clip_norm", cf(pr.ClipNorm))
	if a := pr.Adaptive; a != nil {
		w(1, "adaptive_clipping", "")
		w(2, "target_quantile", cf(a.TargetQuantile))
		w(2, "learning_rate", cf(a.LearningRate))
		w(2, "count_noise_multiplier", cf(a.CountNoiseMultiplier))
	}
	w(1, "sample_rate", cf(pr.SampleRate))
	w(1, "sample_seed", ci64(pr.SampleSeed))
	w(1, "target_delta", cf(pr.TargetDelta))
	w(1, "epsilon_budget", cf(pr.EpsilonBudget))
}

// privacyStrategy wraps inner (built without a validator) in DP-FedAvg
// over the plan's collaborators.
func (p *Plan) privacyStrategy(inner strategy.Strategy, v strategy.Validator, workers int, collaborators []string) (strategy.Strategy, error) {
	pr := &p.Privacy
	sa, err := p.secAggDP(len(collaborators))
	if err != nil {
		return nil, err
	}
	d, err := privacy.NewDPFedAvg(inner, privacy.Config{SecAgg: sa,
		Clients: collaborators, SampleRate: pr.SampleRate, Seed: pr.SampleSeed,
		NoiseMultiplier: pr.NoiseMultiplier, Noise: pr.Noise, ClipNorm: pr.ClipNorm, Adaptive: pr.Adaptive,
		Delta: pr.TargetDelta, EpsilonBudget: pr.EpsilonBudget, Validator: v, Workers: workers,
	})
	if err != nil {
		return nil, fmt.Errorf("plan: privacy: %w", err)
	}
	return d, nil
}

// secAggDP is DP-FedAvg's secure-aggregation config for n collaborators
// (nil without the section), and the checks that need n:
//   - every round that closes has at least ⌈(1−d)·n⌉ masked inputs, the
//     number the local noise is calibrated for: the round's minimum
//     (aggregator.min_collaborators, or the straggler policy's
//     minimum_reporting; 0 is all) must be at least that;
//   - the per-member discrete Gaussian is wide enough that the sum of
//     discrete Gaussians is accounted as a Gaussian (privacy.MinLatticeSigma);
//   - the noised sum of n members stays inside the 32-bit fixed point.
func (p *Plan) secAggDP(n int) (*privacy.SecAggDP, error) {
	s, pr := &p.SecureAggregation, &p.Privacy
	if !s.Enabled {
		return nil, nil
	}
	kmin := n - int(math.Floor(s.Dropout*float64(n))) // ⌈(1−d)·n⌉, secagg.Threshold's first term
	least, key := p.Aggregator.MinCollaborators, "aggregator.min_collaborators"
	if p.StragglerHandling.Enabled() {
		least, key = p.StragglerHandling.MinimumReporting, "straggler_handling_policy.minimum_reporting"
	}
	if least == 0 {
		least = n
	}
	if least < kmin {
		return nil, p.errf(key, "%d with privacy and secure_aggregation.dropout_tolerance %v: a round must close with at least ⌈(1−d)·n⌉ = %d of the %d collaborators, whose noise is what the accountant counts (set min_collaborators or straggler minimum_reporting to at least %d)",
			least, s.Dropout, kmin, n, kmin)
	}
	sigma := 0.0
	if pr.Noise == privacy.NoiseLocal {
		// Without the model's size: the rounding term √dim/2 is at most
		// clip·2^f for models up to (2·clip·2^f)² parameters, so twice
		// the clip's share bounds σ_L for the range check.
		lo := pr.NoiseMultiplier * math.Ldexp(pr.ClipNorm, s.FracBits) / math.Sqrt(float64(kmin))
		if lo < privacy.MinLatticeSigma {
			return nil, p.errf("privacy.noise_multiplier", "%v with clip_norm %v and secure_aggregation.frac_bits %d gives each of %d members a discrete Gaussian of std %.3g fixed-point steps, below %d: raise frac_bits, clip_norm or noise_multiplier",
				pr.NoiseMultiplier, pr.ClipNorm, s.FracBits, kmin, lo, privacy.MinLatticeSigma)
		}
		sigma = 2 * lo
	}
	if !privacy.SecAggRangeOK(min(s.Clip, pr.ClipNorm), s.FracBits, n, sigma) {
		return nil, p.errf("secure_aggregation.frac_bits", "%d with secure_aggregation.clip %v, privacy.clip_norm %v and noise_multiplier %v: the noised sum of %d members could leave the 32-bit fixed point; lower frac_bits or clip_norm",
			s.FracBits, s.Clip, pr.ClipNorm, pr.NoiseMultiplier, n)
	}
	return &privacy.SecAggDP{FracBits: s.FracBits, MinSurvivors: kmin}, nil
}
