package privacy_test

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"

	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/secagg"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// TestSecAggPathMatchesCentral runs one round of 250 clients through the
// central path (DP-FedAvg clipping and noising in the aggregator) and
// through the SecAgg path (each client clips, quantises and adds its
// discrete Gaussian share; the scheduler's MeanFromSum; DP-FedAvg's SecAgg
// aggregation over the fixed denominator). Without noise the two models
// agree to the fixed point's rounding (2^−f/√n rms); with all-zero updates the output is
// the noise alone, whose std must be z·C'/m for both (within 8%, 5
// standard errors over 2000 coordinates).
func TestSecAggPathMatchesCentral(t *testing.T) {
	const n, dim = 250, 2000
	g := tensor.Weights{{Name: "w", Shape: []int{dim}, Data: make([]float32, dim)}}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprint("c", i)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := secagg.Params{N: n, Threshold: secagg.Threshold(n, 0), Len: dim + 1, FracBits: 16}
	round := func(z float64, updates []tensor.Weights) (central, viaSecAgg tensor.Weights) {
		t.Helper()
		mk := func(sa bool) *privacy.DPFedAvg {
			key := [32]byte{1}
			c := privacy.Config{Clients: names, SampleRate: 1, NoiseMultiplier: z, Noise: privacy.NoiseCentral, ClipNorm: 1,
				Delta: 1e-5, NoiseKey: &key, Logger: quiet}
			if sa {
				c.Noise, c.SecAgg = privacy.NoiseLocal, &privacy.SecAggDP{FracBits: p.FracBits, MinSurvivors: n}
			}
			d, err := privacy.NewDPFedAvg(&strategy.FedAvg{}, c)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		var res []strategy.FitResult
		for i, w := range updates {
			res = append(res, strategy.FitResult{Client: names[i], Weights: w, NumExamples: 1})
		}
		central, _, err := mk(false).AggregateFit(1, g, res)
		if err != nil {
			t.Fatal(err)
		}
		d := mk(true)
		cfg := d.ConfigureFit(1, g)
		key := [32]byte{2}
		noise, _ := privacy.NewNoise(&key)
		sum := make([]uint32, p.Len)
		for _, w := range updates {
			up, _, err := privacy.ClientSide(cfg, g, w, nil)
			if err != nil {
				t.Fatal(err)
			}
			x, err := scheduler.ClientInput(p, g, up, 1, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := noise.AddLattice(x[:dim], cfg[privacy.KeyLatticeSigma]); err != nil {
				t.Fatal(err)
			}
			for j, v := range x {
				sum[j] += v
			}
		}
		one, err := scheduler.MeanFromSum(p, g, sum, n)
		if err != nil {
			t.Fatal(err)
		}
		viaSecAgg, _, err = d.AggregateFit(1, g, []strategy.FitResult{one})
		if err != nil {
			t.Fatal(err)
		}
		return central, viaSecAgg
	}
	rms := func(a, b tensor.Weights) float64 {
		s := 0.0
		for j, v := range a[0].Data {
			d := float64(v)
			if b != nil {
				d -= float64(b[0].Data[j])
			}
			s += d * d
		}
		return math.Sqrt(s / dim)
	}
	// Updates of norm ≈ 1.6 (clipped to 1), almost no noise.
	var updates []tensor.Weights
	for i := range n {
		w := g.Clone()
		for j := range w[0].Data {
			w[0].Data[j] = float32(math.Sin(float64(i*dim+j)))*0.05 + 0.02
		}
		updates = append(updates, w)
	}
	c, s := round(1e-9, updates)
	// Each client's rounding is at most half a step: the mean of n moves
	// by about 2^−f/√(12n) rms; allow 2^−f/√n.
	if d, signal := rms(c, s), rms(c, nil); d > math.Ldexp(1, -p.FracBits)/math.Sqrt(n) || signal < 0.01 {
		t.Errorf("without noise: the paths differ by %.3g rms on a mean of %.3g rms", d, signal)
	}
	// Zero updates: the output is the noise.
	zeros := make([]tensor.Weights, n)
	for i := range zeros {
		zeros[i] = g.Clone()
	}
	const z = 12.8
	c, s = round(z, zeros)
	want := z * math.Ldexp(privacy.LatticeClip(1, p.FracBits, dim), -p.FracBits) / n
	for name, w := range map[string]tensor.Weights{"central": c, "secagg": s} {
		if got := rms(w, nil); math.Abs(got/want-1) > 0.08 {
			t.Errorf("%s: noise std %.4g, want z·C'/m = %.4g", name, got, want)
		}
	}
}
