package plan

import (
	"fmt"
	"math"
	"time"

	"gopkg.in/yaml.v3"
)

// Straggler policies (straggler_handling_policy.policy), after OpenFL's
// CutoffTimeBasedStragglerHandling and PercentageBasedStragglerHandling.
const (
	// StragglerCutoffTime closes a round once straggler_cutoff_time has
	// passed since it opened and at least minimum_reporting collaborators
	// have uploaded (earlier if everyone has).
	StragglerCutoffTime = "cutoff_time"
	// StragglerPercentage closes a round as soon as
	// ⌈percent_collaborators_needed · N⌉ collaborators (and at least
	// minimum_reporting) have uploaded.
	StragglerPercentage = "percentage"
)

// StragglerPolicy is the optional straggler_handling_policy section:
//
//	straggler_handling_policy:
//	  policy: cutoff_time            # cutoff_time | percentage
//	  straggler_cutoff_time: 30s     # cutoff_time only: Go duration or seconds
//	  percent_collaborators_needed: 0.5  # percentage only: in (0, 1]
//	  minimum_reporting: 1           # ≥ 1 (default 1)
//
// A round always closes when every collaborator has uploaded. The policy
// decides when it may close earlier; network.round_timeout stays the hard
// limit per round: at that point the round closes if minimum_reporting
// updates arrived and the federation stops with an error otherwise. Updates
// that arrive for a closed round are discarded. With the section present,
// minimum_reporting replaces aggregator.min_collaborators (which must then
// be 0). A plan without the section hashes as before the section existed.
type StragglerPolicy struct {
	// Policy is StragglerCutoffTime or StragglerPercentage; "" when the
	// section is absent (then the round waits for aggregator.min_collaborators
	// until network.round_timeout, as before).
	Policy string
	// CutoffTime is straggler_cutoff_time (cutoff_time only), > 0.
	CutoffTime time.Duration
	// PercentNeeded is percent_collaborators_needed (percentage only), in (0, 1].
	PercentNeeded float64
	// MinimumReporting is minimum_reporting, ≥ 1.
	MinimumReporting int
}

// Enabled reports whether the plan has a straggler_handling_policy section.
func (s *StragglerPolicy) Enabled() bool { return s.Policy != "" }

// Needed returns how many of n collaborators' updates close a round early
// under the percentage policy (⌈p·n⌉, at least MinimumReporting), or n.
func (s *StragglerPolicy) Needed(n int) int {
	if s.Policy != StragglerPercentage {
		return n
	}
	k := int(math.Ceil(s.PercentNeeded*float64(n) - 1e-9))
	return min(n, max(k, s.MinimumReporting, 1))
}

func (ps *parser) straggler(key string, v *yaml.Node) error {
	s := &ps.p.StragglerHandling
	s.MinimumReporting = 1
	return ps.mapping(v, key, []field{
		{"policy", true, ps.str(&s.Policy)},
		{"straggler_cutoff_time", false, func(key string, v *yaml.Node) error {
			// OpenFL writes seconds as a number; a Go duration is clearer.
			if v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!int" || v.ShortTag() == "!!float") {
				f, err := ps.floatv(key, v)
				if err != nil {
					return err
				}
				if f < 0 || f > 1e9 {
					return ps.errf(v, key, "must be a positive duration, got %v seconds", v.Value)
				}
				s.CutoffTime = time.Duration(f * float64(time.Second))
				if f > 0 && s.CutoffTime == 0 {
					return ps.errf(v, key, "must be a positive duration, got %v seconds", v.Value)
				}
				return nil
			}
			return ps.duration(&s.CutoffTime)(key, v)
		}},
		{"percent_collaborators_needed", false, ps.float(&s.PercentNeeded)},
		{"minimum_reporting", false, ps.integer(&s.MinimumReporting)},
	})
}

// validateStraggler checks the straggler_handling_policy section and its
// consistency with aggregator.min_collaborators, network.round_timeout and
// aggregation.validator.min_accepted.
func (p *Plan) validateStraggler() error {
	s := &p.StragglerHandling
	const key = "straggler_handling_policy"
	if !s.Enabled() {
		if s.CutoffTime != 0 || s.PercentNeeded != 0 || s.MinimumReporting != 0 {
			return p.errf(key+".policy", "must be %s or %s when other settings are given", StragglerCutoffTime, StragglerPercentage)
		}
		return nil
	}
	switch s.Policy {
	case StragglerCutoffTime:
		if s.CutoffTime <= 0 {
			return p.errf(key+".straggler_cutoff_time", "policy %s needs a positive cutoff such as \"30s\", got %v", s.Policy, s.CutoffTime)
		}
		if s.PercentNeeded != 0 {
			return p.errf(key+".percent_collaborators_needed", "only for policy %s, not %s", StragglerPercentage, s.Policy)
		}
		if rt := p.Network.RoundTimeout; rt > 0 && s.CutoffTime >= rt {
			return p.errf(key+".straggler_cutoff_time", "%v must be shorter than network.round_timeout %v", s.CutoffTime, rt)
		}
	case StragglerPercentage:
		if !(s.PercentNeeded > 0 && s.PercentNeeded <= 1) {
			return p.errf(key+".percent_collaborators_needed", "policy %s needs a value in (0, 1], got %v", s.Policy, s.PercentNeeded)
		}
		if s.CutoffTime != 0 {
			return p.errf(key+".straggler_cutoff_time", "only for policy %s, not %s", StragglerCutoffTime, s.Policy)
		}
	default:
		return p.errf(key+".policy", "must be %s or %s, got %q", StragglerCutoffTime, StragglerPercentage, s.Policy)
	}
	if s.MinimumReporting < 1 || s.MinimumReporting > 1_000_000 {
		return p.errf(key+".minimum_reporting", "must be in 1..1000000, got %d", s.MinimumReporting)
	}
	if p.Aggregator.MinCollaborators != 0 {
		return p.errf("aggregator.min_collaborators", "must be 0 when straggler_handling_policy is set (its minimum_reporting %d replaces it), got %d",
			s.MinimumReporting, p.Aggregator.MinCollaborators)
	}
	if ma := p.Aggregation.Validator.MinAccepted; ma > s.MinimumReporting {
		return p.errf("aggregation.validator.min_accepted", "%d exceeds straggler_handling_policy.minimum_reporting %d", ma, s.MinimumReporting)
	}
	return nil
}

// canonicalStraggler appends the section to the canonical encoding, only
// when present, so that plans without it keep their hash.
func (p *Plan) canonicalStraggler(w func(indent int, key, value string), q func(string) string, f func(float64) string) {
	s := &p.StragglerHandling
	if !s.Enabled() {
		return
	}
	w(0, "straggler_handling_policy", "")
	w(1, "policy", q(s.Policy))
	switch s.Policy {
	case StragglerCutoffTime:
		w(1, "straggler_cutoff_time", q(s.CutoffTime.String()))
	case StragglerPercentage:
		w(1, "percent_collaborators_needed", f(s.PercentNeeded))
	}
	w(1, "minimum_reporting", fmt.Sprint(s.MinimumReporting))
}
