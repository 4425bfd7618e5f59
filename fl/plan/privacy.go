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
	d, err := privacy.NewDPFedAvg(inner, privacy.Config{
		Clients: collaborators, SampleRate: pr.SampleRate, Seed: pr.SampleSeed,
		NoiseMultiplier: pr.NoiseMultiplier, Noise: pr.Noise, ClipNorm: pr.ClipNorm, Adaptive: pr.Adaptive,
		Delta: pr.TargetDelta, EpsilonBudget: pr.EpsilonBudget, Validator: v, Workers: workers,
	})
	if err != nil {
		return nil, fmt.Errorf("plan: privacy: %w", err)
	}
	return d, nil
}
