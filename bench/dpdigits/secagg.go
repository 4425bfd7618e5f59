package main

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/secagg"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/datasets"
)

// secaggTable is the second table: N clients (fl/secagg takes at most
// 254), every one in every round (no sampling under secure aggregation),
// with three aggregations side by side for each ε:
//   - non-private FedAvg over the same clients;
//   - DP-FedAvg with central noise in the aggregator (no SecAgg);
//   - DP-FedAvg over secure aggregation with local noise: each client
//     clips, quantises to the fixed point, adds its discrete Gaussian
//     share (calibrated for ⌈(1−d)·N⌉ survivors) and the aggregator gets
//     the fixed-point sum, divided by N.
//
// The pairwise masks are left out: they cancel exactly in the sum
// (fl/secagg and fl/protocol test the unmasked sum bit for bit against
// the plain fixed-point sum computed here), and 250 clients masking
// 17 226 parameters pairwise would only add time.
func secaggTable(n, rounds int, dropout float64, fracBits int, clip float64, localEpochs int, lr, delta float64, seed int64, noiseSeed byte,
	epsList string, tr, te *datasets.Dataset, quiet *slog.Logger) error {
	u, err := newUsers(tr, te, n, seed, localEpochs, lr)
	if err != nil {
		return err
	}
	names, data, initial := u.names, u.data, u.initial
	dim := initial.NumParams()
	kmin := n - int(math.Floor(dropout*float64(n)))
	p := secagg.Params{N: n, Threshold: secagg.Threshold(n, dropout), Len: dim + 1, FracBits: fracBits}
	fmt.Printf("\nsecure aggregation: %d clients (%d–%d examples each), all in every round, %d rounds, C = %g, frac_bits %d, dropout tolerance %g (noise calibrated for %d survivors; all %d survive)\n",
		n, data[n-1].N, data[0].N, rounds, clip, fracBits, dropout, kmin, n)
	train, accuracy := u.train, u.accuracy
	noiseKey := [32]byte{byte(seed), 's', noiseSeed}
	noise, err := privacy.NewNoise(&noiseKey)
	if err != nil {
		return err
	}
	// federate: withSecAgg sums the clients' noised fixed-point inputs
	// and hands s the one result, as the scheduler does.
	federate := func(s strategy.Strategy, withSecAgg bool) (float64, float64, error) {
		start := time.Now()
		global := initial.Clone()
		for r := 1; r <= rounds; r++ {
			cfg := s.ConfigureFit(r, global)
			var res []strategy.FitResult
			sum := make([]uint32, p.Len)
			for i := range names {
				w, err := train(r, i, global)
				if err != nil {
					return 0, 0, err
				}
				if !withSecAgg {
					res = append(res, strategy.FitResult{Client: names[i], Weights: w, NumExamples: data[i].N})
					continue
				}
				up, _, err := privacy.ClientSide(cfg, global, w, nil)
				if err != nil {
					return 0, 0, err
				}
				x, err := scheduler.ClientInput(p, global, up, data[i].N, clip)
				if err != nil {
					return 0, 0, err
				}
				if sigma := cfg[privacy.KeyLatticeSigma]; sigma > 0 {
					if err := noise.AddLattice(x[:dim], sigma); err != nil {
						return 0, 0, err
					}
				}
				for j, v := range x {
					sum[j] += v
				}
			}
			if withSecAgg {
				one, err := scheduler.MeanFromSum(p, global, sum, n)
				if err != nil {
					return 0, 0, err
				}
				res = []strategy.FitResult{one}
			}
			next, _, err := s.AggregateFit(r, global, res)
			if err != nil {
				return 0, 0, err
			}
			global = next
		}
		acc, err := accuracy(global)
		return acc, time.Since(start).Seconds(), err
	}
	fmt.Println()
	fmt.Println("| run | noise multiplier z | ε (δ = 1e-5) | test accuracy | seconds |")
	fmt.Println("|---|---:|---:|---:|---:|")
	acc, secs, err := federate(&strategy.FedAvg{}, false)
	if err != nil {
		return err
	}
	fmt.Printf("| non-private FedAvg, %d clients | – | ∞ | %.4f | %.1f |\n", n, acc, secs)
	for _, f := range strings.FieldsFunc(epsList, func(r rune) bool { return r == ',' }) {
		target, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return fmt.Errorf("-eps %q: %w", f, err)
		}
		z, err := noiseFor(target, 1, rounds, delta)
		if err != nil {
			return err
		}
		for _, withSecAgg := range []bool{false, true} {
			key := [32]byte{byte(seed), 'c', noiseSeed}
			cfg := privacy.Config{Clients: names, SampleRate: 1, Seed: seed, NoiseMultiplier: z, Noise: privacy.NoiseCentral,
				ClipNorm: clip, Delta: delta, NoiseKey: &key, Logger: quiet}
			label := fmt.Sprintf("DP-FedAvg central, C = %g", clip)
			if withSecAgg {
				cfg.Noise, cfg.SecAgg = privacy.NoiseLocal, &privacy.SecAggDP{FracBits: fracBits, MinSurvivors: kmin}
				label = fmt.Sprintf("DP-FedAvg local discrete Gaussian + SecAgg, C = %g, d = %g", clip, dropout)
			}
			dp, err := privacy.NewDPFedAvg(&strategy.FedAvg{}, cfg)
			if err != nil {
				return err
			}
			acc, secs, err := federate(dp, withSecAgg)
			if err != nil {
				return err
			}
			fmt.Printf("| %s | %.3f | %.3f | %.4f | %.1f |\n", label, z, dp.Epsilon(), acc, secs)
		}
	}
	return nil
}
