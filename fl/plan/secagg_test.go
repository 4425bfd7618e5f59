package plan_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/ml/tensor"
)

const secaggSection = `secure_aggregation:
  enabled: true
  dropout_tolerance: 0.3
  clip: 0.5
  frac_bits: 18
  phase_timeout: 90s
`

func TestSecureAggregationSectionParses(t *testing.T) {
	p := mustParse(t, withPrivacy(t, secaggSection))
	s := p.SecureAggregation
	if s != (plan.SecureAggregation{Enabled: true, Dropout: 0.3, Clip: 0.5, FracBits: 18, PhaseTimeout: 90 * time.Second}) {
		t.Fatalf("secure_aggregation %+v", s)
	}
	if c := p.SecAgg(); c == nil || c.Dropout != 0.3 || c.Clip != 0.5 || c.FracBits != 18 || c.PhaseTimeout != 90*time.Second {
		t.Fatalf("scheduler config %+v", c)
	}
	q := mustParse(t, p.Canonical())
	if q.Hash() != p.Hash() || q.SecureAggregation != s {
		t.Errorf("canonical round trip changed the section: %+v vs %+v", q.SecureAggregation, s)
	}
	base := mustParse(t, template(t, "digits_mlp"))
	if base.Hash() == p.Hash() {
		t.Error("secure_aggregation does not change the hash")
	}
	// Changing any setting changes the hash.
	other := mustParse(t, withPrivacy(t, strings.Replace(secaggSection, "clip: 0.5", "clip: 0.25", 1)))
	if other.Hash() == p.Hash() {
		t.Error("clip is not part of the hash")
	}
	// Defaults; enabled: false is the same plan as no section.
	d := mustParse(t, withPrivacy(t, "secure_aggregation:\n  enabled: true\n  dropout_tolerance: 0\n  clip: 1\n"))
	if d.SecureAggregation.FracBits != 16 || d.SecureAggregation.PhaseTimeout != time.Minute {
		t.Errorf("defaults %+v", d.SecureAggregation)
	}
	off := mustParse(t, withPrivacy(t, strings.Replace(secaggSection, "enabled: true", "enabled: false", 1)))
	if off.Hash() != base.Hash() || off.SecAgg() != nil {
		t.Error("enabled: false differs from no section")
	}
}

// Bad settings and what secure aggregation cannot work with: one line,
// file:line: key: reason.
func TestSecureAggregationSectionErrors(t *testing.T) {
	line := func(data []byte, key string) int {
		for i, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), key+":") && i > strings.Count(string(template(t, "digits_mlp")), "\n") {
				return i + 1
			}
		}
		return 0
	}
	for _, c := range []struct{ name, from, to, key, reason string }{
		{"dropout", "dropout_tolerance: 0.3", "dropout_tolerance: 0.5", "dropout_tolerance", "must be in [0, 0.5)"},
		{"clip", "clip: 0.5", "clip: 0", "clip", "must be > 0, got 0"},
		{"overflow", "clip: 0.5", "clip: 200", "clip", "could overflow the 32-bit fixed-point sum"},
		{"bits", "frac_bits: 18", "frac_bits: 25", "frac_bits", "must be in 0..24, got 25"},
		{"step", "frac_bits: 18", "frac_bits: 0", "frac_bits", "exceeds the clip 0.5"},
		{"phase", "phase_timeout: 90s", "phase_timeout: 10ms", "phase_timeout", "must be at least 1s"},
		{"type", "enabled: true", "enabled: yes please", "enabled", "must be"},
		{"unknown", "clip: 0.5", "clip: 0.5\n  threshold: 3", "threshold", "unknown"},
	} {
		data := withPrivacy(t, strings.Replace(secaggSection, c.from, c.to, 1))
		_, err := plan.Parse(data, "plan.yaml")
		var ye *yamlx.Error
		if err == nil || !errors.As(err, &ye) {
			t.Errorf("%s: err = %v, want a *yamlx.Error", c.name, err)
			continue
		}
		want := "plan.yaml:" + strconv.Itoa(line(data, c.key)) + ": secure_aggregation." + c.key
		if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, c.reason) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q, want one line starting %q: %s", c.name, msg, want, c.reason)
		}
	}
	for _, s := range []string{"krum", "multikrum", "median", "trimmedmean"} {
		data := regexp.MustCompile(`(?m)^  strategy: \S+`).ReplaceAll(withPrivacy(t, secaggSection), []byte("  strategy: "+s))
		_, err := plan.Parse(data, "plan.yaml")
		if err == nil || !strings.Contains(err.Error(), "aggregation.strategy: "+s+" needs the individual updates and secure aggregation gives the aggregator only their sum") ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("%s with secure aggregation: err = %v", s, err)
		}
	}
	// What DP-FedAvg under secure aggregation cannot do: adaptive
	// clipping and client sampling.
	data := withPrivacy(t, privacySection+secaggSection)
	if _, err := plan.Parse(data, "plan.yaml"); err == nil || !strings.Contains(err.Error(), "privacy.adaptive_clipping: not supported with secure_aggregation") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("adaptive clipping with secure aggregation: err = %v", err)
	}
	data = withPrivacy(t, strings.Replace(dpSecAggSection, "sample_rate: 1", "sample_rate: 0.5", 1)+secaggSection)
	if _, err := plan.Parse(data, "plan.yaml"); err == nil || !strings.Contains(err.Error(), "privacy.sample_rate: 0.5 with secure_aggregation: must be 1") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("sampling with secure aggregation: err = %v", err)
	}
}

const dpSecAggSection = `privacy:
  noise: local
  noise_multiplier: 1.1
  clip_norm: 0.5
  sample_rate: 1
  target_delta: 1e-5
  epsilon_budget: 8
`

// DP-FedAvg over secure aggregation: the plan builds it for N
// collaborators (the noise is calibrated for ⌈(1−d)·N⌉ survivors), and
// refuses, one line each, a round minimum below that, per-member noise
// too narrow for the sum bound, and a noised sum that could overflow.
func TestPrivacyWithSecureAggregation(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, noise := range []string{"local", "central"} {
		p := mustParse(t, withPrivacy(t, strings.Replace(dpSecAggSection, "noise: local", "noise: "+noise, 1)+secaggSection))
		s, err := p.StrategyFor(1, names)
		if err != nil {
			t.Fatalf("%s: %v", noise, err)
		}
		d, ok := s.(*privacy.DPFedAvg)
		if !ok {
			t.Fatalf("%s: strategy %T", noise, s)
		}
		cfg := d.ConfigureFit(1, saModel())
		sigma, has := cfg[privacy.KeyLatticeSigma]
		if noise == "central" {
			if has {
				t.Errorf("central: lattice noise %v sent to the collaborators", sigma)
			}
			continue
		}
		// d = 0.3 of 10: at least 7 survivors.
		if want := privacy.LatticeSigma(1.1, 0.5, 18, saModel().NumParams(), 7); sigma != want {
			t.Errorf("local: lattice sigma %v, want %v", sigma, want)
		}
		if _, ok := cfg[privacy.KeyLocalNoiseStd]; ok {
			t.Error("local: continuous noise asked for on top of the lattice noise")
		}
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"minimum", "min_collaborators: 0 ", "min_collaborators: 6 ", "aggregator.min_collaborators: 6 with privacy and secure_aggregation.dropout_tolerance 0.3: a round must close with at least ⌈(1−d)·n⌉ = 7 of the 10"},
		{"narrow", "noise_multiplier: 1.1", "noise_multiplier: 0.0001", "privacy.noise_multiplier: 0.0001 with clip_norm 0.5 and secure_aggregation.frac_bits 18"},
		{"range", "noise_multiplier: 1.1", "noise_multiplier: 1000", "secure_aggregation.frac_bits: 18 with secure_aggregation.clip 0.5, privacy.clip_norm 0.5 and noise_multiplier 1000: the noised sum of 10 members could leave"},
	} {
		data := withPrivacy(t, dpSecAggSection+secaggSection)
		data = []byte(strings.Replace(string(data), c.from, c.to, 1))
		p := mustParse(t, data)
		_, err := p.StrategyFor(1, names)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line with %q", c.name, err, c.want)
		}
	}
}

func saModel() tensor.Weights {
	return tensor.Weights{{Name: "w", Shape: []int{64, 10}, Data: make([]float32, 640)}}
}
