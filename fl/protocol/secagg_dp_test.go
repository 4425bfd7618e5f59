package protocol

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/secagg"
	"github.com/teeml/teeml/fl/strategy"
)

// TestSecAggWithLocalDP: DP-FedAvg with local noise over secure
// aggregation, six collaborators over RA-TLS, dropout tolerance 1/3 (the
// noise is calibrated for 4 survivors), a budget that allows two of four
// rounds. In round 2, col-5 and col-6 are killed after their masked
// upload. For every round: the unmasked sum minus the plain sum of the
// clipped inputs is the members' discrete Gaussian noise (the example
// count exact; the pooled variance within a factor 2 of 6·σ_L², which
// no noise or double noise would fail), the committed model is the sum
// over the fixed denominator 6, and the round's ε is the accountant's.
// The federation stops before round 3 with the one-line budget reason. An
// aggregator restarted from the round-1 checkpoint with a fresh
// DP-FedAvg redoes round 2 at the same ε and stops at the same place.
func TestSecAggWithLocalDP(t *testing.T) {
	const z, clipNorm, delta = 1.1, 0.5, 1e-5
	acc, _ := privacy.NewAccountant()
	var eps []float64
	for range 3 {
		acc.Compose(1, z, 1)
		e, _ := acc.Epsilon(delta)
		eps = append(eps, e)
	}
	budget := (eps[1] + eps[2]) / 2
	sa := scheduler.SecAgg{Dropout: 1.0 / 3, FracBits: 16, Clip: 0.5, PhaseTimeout: 3 * time.Second}
	names := []string{"col-1", "col-2", "col-3", "col-4", "col-5", "col-6"}
	dp := func() *privacy.DPFedAvg {
		d, err := privacy.NewDPFedAvg(&strategy.FedAvg{}, privacy.Config{Clients: names, SampleRate: 1, NoiseMultiplier: z,
			Noise: privacy.NoiseLocal, ClipNorm: clipNorm, Delta: delta, EpsilonBudget: budget,
			SecAgg: &privacy.SecAggDP{FracBits: sa.FracBits, MinSurvivors: 4}, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	ckpts := map[int][]byte{}
	f := newSAFed(t, 6, 4, sa, time.Minute, func(f *saFed, c *AggregatorConfig) {
		c.Strategy = dp()
		commit := c.Commit
		c.Commit = func(ctx context.Context, ck *Checkpoint) error {
			var b bytes.Buffer
			if err := EncodeCheckpoint(&b, ck); err != nil {
				return err
			}
			f.mu.Lock()
			ckpts[ck.Round] = b.Bytes()
			f.mu.Unlock()
			return commit(ctx, ck)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sums := f.runKilledAfterMasked(t, ctx, 4, 2)
	if len(sums) != 2 {
		t.Fatalf("%d rounds, want 2 (the budget stops round 3)", len(sums))
	}
	lg := f.aggLog.String()
	if !strings.Contains(lg, "privacy budget: round 3 would spend") || strings.Contains(lg, "round=3 of=4") {
		t.Errorf("aggregator log lacks the budget stop before round 3:\n%s", lg)
	}
	p := secagg.Params{N: 6, Threshold: secagg.Threshold(6, sa.Dropout), Len: saModel().NumParams() + 1, FracBits: sa.FracBits}
	sigma := privacy.LatticeSigma(z, clipNorm, sa.FracBits, saModel().NumParams(), 4)
	var s2 float64
	var count int
	for r := 1; r <= 2; r++ {
		if got := sums[r-1].Privacy[privacy.ReportEpsilon]; got != eps[r-1] {
			t.Errorf("round %d: ε %v, want %v", r, got, eps[r-1])
		}
		if !strings.Contains(lg, fmt.Sprintf("msg=\"round privacy\" component=aggregator round=%d epsilon=%v", r, eps[r-1])) {
			t.Errorf("aggregator log lacks round %d's ε %v:\n%s", r, eps[r-1], lg)
		}
		f.mu.Lock()
		got, committed := f.sums[r], f.globals[r]
		f.mu.Unlock()
		plain := f.rec.plainSum(t, p, r, names, clipNorm, sa.Clip)
		n := len(plain) - 1
		if got[n] != plain[n] {
			t.Errorf("round %d: example count %d in the sum, want %d (the count is not noised)", r, int32(got[n]), int32(plain[n]))
		}
		for i := range n {
			d := float64(int32(got[i] - plain[i]))
			s2 += d * d
			count++
		}
		f.rec.mu.Lock()
		prev := f.rec.in[r]["col-1"].global
		f.rec.mu.Unlock()
		k := 0
		for ti := range prev {
			for j, g := range prev[ti].Data {
				want := float64(g) + math.Ldexp(float64(int32(got[k])), -sa.FracBits)/6
				if d := math.Abs(float64(committed[ti].Data[j]) - want); d > 1e-5*max(1, math.Abs(want)) {
					t.Fatalf("round %d: committed %s[%d] = %v, want the sum over 6: %v", r, prev[ti].Name, j, committed[ti].Data[j], want)
				}
				k++
			}
		}
	}
	if ratio := s2 / float64(count) / (6 * sigma * sigma); ratio < 0.5 || ratio > 2 {
		t.Errorf("noise in the unmasked sums: variance %.4g, %.2f× the expected 6·σ_L² = %.4g", s2/float64(count), ratio, 6*sigma*sigma)
	}

	// Restart from round 1's checkpoint: the accountant resumes at ε_1.
	f.mu.Lock()
	ck, err := DecodeCheckpoint(bytes.NewReader(ckpts[1]))
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var log2 logBuf
	agg2, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: dp(), Initial: saModel(), Collaborators: names, Rounds: 4,
		RoundTimeout: time.Minute, RetryAfter: 50 * time.Millisecond, StatusEvery: time.Second, Logger: log2.Logger(), SecAgg: &sa,
		DoneGrace: 3 * time.Second, Resume: ck, Commit: func(context.Context, *Checkpoint) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	f.agg, f.addr = agg2, f.env.serve(agg2, log2.Logger())
	sums2, errs2 := f.run(ctx, nil)
	for i, err := range errs2 {
		if err != nil {
			t.Errorf("resumed: %s: %v", f.names[i], err)
		}
	}
	if len(sums2) != 2 || sums2[1].Privacy[privacy.ReportEpsilon] != eps[1] {
		t.Fatalf("resumed: %d rounds, last ε %v, want round 2 at ε %v", len(sums2), sums2[len(sums2)-1].Privacy[privacy.ReportEpsilon], eps[1])
	}
	if !strings.Contains(log2.String(), "privacy budget: round 3 would spend") {
		t.Errorf("resumed aggregator did not stop before round 3:\n%s", log2.String())
	}
}
