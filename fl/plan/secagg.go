package plan

import (
	"math"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/fl/scheduler"
)

// SecureAggregation is the optional secure_aggregation section
// (docs/privacy.md, fl/secagg):
//
//	secure_aggregation:
//	  enabled: true            # required
//	  dropout_tolerance: 0.3   # d in [0, 0.5): rounds survive ⌊d·n⌋ of n members dropping after the share exchange
//	  clip: 0.5                # c > 0: every coordinate of an update Δ = local − global is clipped to ±c
//	  frac_bits: 16            # optional (default 16), 0..24: fixed-point precision 2^−frac_bits
//	  phase_timeout: 1m        # optional (default 1m): bound of the advertise, share and reveal phases
//
// A plan without the section, or with enabled: false, hashes as before the
// section existed.
type SecureAggregation struct {
	Enabled      bool
	Dropout      float64
	Clip         float64
	FracBits     int
	PhaseTimeout time.Duration
}

func (ps *parser) secureAggregation(key string, v *yaml.Node) error {
	s := &ps.p.SecureAggregation
	s.FracBits, s.PhaseTimeout = 16, time.Minute
	return ps.mapping(v, key, []field{
		{"enabled", true, ps.boolean(&s.Enabled)},
		{"dropout_tolerance", true, ps.float(&s.Dropout)},
		{"clip", true, ps.float(&s.Clip)},
		{"frac_bits", false, ps.integer(&s.FracBits)},
		{"phase_timeout", false, ps.duration(&s.PhaseTimeout)},
	})
}

// maxSecAggClip is the largest clip whose fixed-point sum over the most
// members fl/secagg takes (254) cannot overflow int32.
func maxSecAggClip(fracBits int) float64 {
	return math.Ldexp(float64(math.MaxInt32/254), -fracBits)
}

// validateSecureAggregation checks the section and what it cannot work
// with: anything that needs the individual updates.
func (p *Plan) validateSecureAggregation() error {
	s := &p.SecureAggregation
	const k = "secure_aggregation."
	if !s.Enabled {
		return nil
	}
	switch {
	case !(s.Dropout >= 0 && s.Dropout < 0.5):
		return p.errf(k+"dropout_tolerance", "must be in [0, 0.5) (the Shamir threshold must stay above half the members), got %v", s.Dropout)
	case s.FracBits < 0 || s.FracBits > 24:
		return p.errf(k+"frac_bits", "must be in 0..24, got %d", s.FracBits)
	case !(s.Clip > 0):
		return p.errf(k+"clip", "must be > 0, got %v", s.Clip)
	case s.Clip > maxSecAggClip(s.FracBits):
		return p.errf(k+"clip", "%v with frac_bits %d could overflow the 32-bit fixed-point sum of 254 members: at most %v", s.Clip, s.FracBits, maxSecAggClip(s.FracBits))
	case math.Ldexp(1, -s.FracBits) > s.Clip:
		return p.errf(k+"frac_bits", "%d: the fixed-point step 2^-%d exceeds the clip %v", s.FracBits, s.FracBits, s.Clip)
	case s.PhaseTimeout < time.Second:
		return p.errf(k+"phase_timeout", "must be at least 1s, got %s", s.PhaseTimeout)
	}
	switch p.Aggregation.Strategy {
	case "median", "trimmedmean", "krum", "multikrum":
		return p.errf("aggregation.strategy", "%s needs the individual updates and secure aggregation gives the aggregator only their sum: use fedavg, fedprox, fedadam, fedyogi or fedadagrad", p.Aggregation.Strategy)
	}
	if v := p.Aggregation.Validator; v.MaxUpdateNorm > 0 || v.MaxNumExamples > 0 {
		return p.errf("aggregation.validator", "max_update_norm and max_num_examples bound individual updates, which secure aggregation hides from the aggregator (secure_aggregation.clip bounds each coordinate instead): leave them 0")
	}
	if pr := &p.Privacy; pr.Enabled() {
		switch {
		case pr.Adaptive != nil:
			return p.errf("privacy.adaptive_clipping", "not supported with secure_aggregation: the aggregator cannot count the unclipped updates it cannot see (the count would need its own masked, noised coordinate); use a fixed clip_norm")
		case pr.SampleRate != 1:
			return p.errf("privacy.sample_rate", "%v with secure_aggregation: must be 1 (client sampling under secure aggregation is not implemented: every member takes part in the round's masking)", pr.SampleRate)
		}
	}
	return nil
}

func (p *Plan) canonicalSecureAggregation(w func(indent int, key, value string)) {
	s := &p.SecureAggregation
	if !s.Enabled {
		return
	}
	w(0, "secure_aggregation", "")
	w(1, "enabled", "true")
	w(1, "dropout_tolerance", cf(s.Dropout))
	w(1, "clip", cf(s.Clip))
	w(1, "frac_bits", ci(s.FracBits))
	w(1, "phase_timeout", cq(s.PhaseTimeout.String()))
}

// SecAgg is the scheduler's secure-aggregation config, nil when the
// section is off.
func (p *Plan) SecAgg() *scheduler.SecAgg {
	s := &p.SecureAggregation
	if !s.Enabled {
		return nil
	}
	return &scheduler.SecAgg{Dropout: s.Dropout, FracBits: s.FracBits, Clip: s.Clip, PhaseTimeout: s.PhaseTimeout}
}
