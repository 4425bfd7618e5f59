// Command dpdigits measures DP-FedAvg on digits: test accuracy at
// ε = 1, 3, 8 (δ = 1e-5) against the non-private run with the same clients,
// client sampling, rounds, local training and seeds (bench/dp_digits.sh,
// docs/benchmarks.md). It runs the federation in process: fl/privacy's
// DPFedAvg around fl/strategy's FedAvg, each sampled client training the
// digits MLP on its own shard with ml (the code collaborators run), so it
// measures the algorithm, not transport.
//
// For each ε the noise multiplier z is the smallest (bisection, 1e-3) for
// which the RDP accountant gives ε after all rounds at sampling rate q.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/datasets"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dpdigits:", err)
		os.Exit(1)
	}
}

func run() error {
	clients := flag.Int("clients", 1437, "number of clients (users); digits' training split is dealt round-robin (1437: one example per user)")
	q := flag.Float64("q", 0.1, "client sampling rate per round")
	rounds := flag.Int("rounds", 60, "rounds")
	clip := flag.Float64("clip", 1, "clip norm C of a client's update")
	localEpochs := flag.Int("local-epochs", 5, "local epochs per round")
	lr := flag.Float64("lr", 0.5, "local SGD learning rate")
	serverLR := flag.Float64("server-lr", 1, "server learning rate (FedAvg steps along η·mean update)")
	epsList := flag.String("eps", "1,3,8", "target ε values (comma separated)")
	delta := flag.Float64("delta", 1e-5, "target δ")
	seed := flag.Int64("seed", 1, "seed of the split, model, sampling and local shuffles")
	noiseSeed := flag.Int("noise-seed", 0, "varies the noise keys of the secure-aggregation table (0–255) without changing split, model or training")
	sampled := flag.Bool("sampled-table", true, "run the first table (Poisson-sampled clients, central noise)")
	saClients := flag.Int("secagg-clients", 250, "clients of the secure-aggregation table (0: skip it; fl/secagg takes at most 254)")
	saRounds := flag.Int("secagg-rounds", 10, "rounds of the secure-aggregation table (every client in every round: no sampling under SecAgg)")
	saDropout := flag.Float64("secagg-dropout", 0.1, "secure_aggregation.dropout_tolerance d: the local noise is calibrated for ⌈(1−d)·N⌉ survivors")
	saFracBits := flag.Int("secagg-frac-bits", 16, "secure_aggregation.frac_bits")
	flag.Parse()

	tr, te, err := datasets.Prepare("digits", 0.2, *seed)
	if err != nil {
		return err
	}
	u, err := newUsers(tr, te, *clients, *seed, *localEpochs, *lr)
	if err != nil {
		return err
	}
	names, data, initial, train, accuracy := u.names, u.data, u.initial, u.train, u.accuracy
	fmt.Printf("digits: %d train / %d test examples, %d clients (%d–%d examples each), q = %g (≈ %.0f clients per round), %d rounds, C = %g, %d local epochs SGD lr %g, δ = %g, %d params\n",
		tr.N, te.N, *clients, data[*clients-1].N, data[0].N, *q, *q*float64(*clients), *rounds, *clip, *localEpochs, *lr, *delta, initial.NumParams())

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// federate runs the rounds with s; dp (nil for the non-private run)
	// reports ε.
	federate := func(s strategy.Strategy, dp *privacy.DPFedAvg) (acc, eps, secs float64, err error) {
		start := time.Now()
		global := initial.Clone()
		for r := 1; r <= *rounds; r++ {
			var res []strategy.FitResult
			for _, c := range privacy.Sample(names, *q, *seed, r) {
				i, _ := strconv.Atoi(c[1:])
				w, err := train(r, i, global)
				if err != nil {
					return 0, 0, 0, err
				}
				res = append(res, strategy.FitResult{Client: c, Weights: w, NumExamples: data[i].N})
			}
			if dp == nil && len(res) == 0 {
				continue
			}
			next, _, err := s.AggregateFit(r, global, res)
			if err != nil {
				return 0, 0, 0, err
			}
			if *serverLR != 1 {
				d, _ := next.Sub(global)
				next = global.Clone()
				next.AddScaledInPlace(float32(*serverLR), d)
			}
			global = next
		}
		acc, err = accuracy(global)
		if dp != nil {
			eps = dp.Epsilon()
		}
		return acc, eps, time.Since(start).Seconds(), err
	}

	if !*sampled {
		return secaggTable(*saClients, *saRounds, *saDropout, *saFracBits, *clip, *localEpochs, *lr, *delta, *seed, byte(*noiseSeed), *epsList, tr, te, quiet)
	}
	fmt.Println()
	fmt.Println("| run | noise multiplier z | ε (δ = 1e-5) | test accuracy | seconds |")
	fmt.Println("|---|---:|---:|---:|---:|")
	acc, _, secs, err := federate(&strategy.FedAvg{}, nil)
	if err != nil {
		return err
	}
	fmt.Printf("| non-private FedAvg (same sampling) | – | ∞ | %.4f | %.1f |\n", acc, secs)
	for _, f := range strings.FieldsFunc(*epsList, func(r rune) bool { return r == ',' }) {
		target, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return fmt.Errorf("-eps %q: %w", f, err)
		}
		z, err := noiseFor(target, *q, *rounds, *delta)
		if err != nil {
			return err
		}
		key := [32]byte{byte(*seed)}
		dp, err := privacy.NewDPFedAvg(&strategy.FedAvg{}, privacy.Config{Clients: names, SampleRate: *q, Seed: *seed,
			NoiseMultiplier: z, Noise: privacy.NoiseCentral, ClipNorm: *clip, Delta: *delta, NoiseKey: &key, Logger: quiet})
		if err != nil {
			return err
		}
		acc, eps, secs, err := federate(dp, dp)
		if err != nil {
			return err
		}
		fmt.Printf("| DP-FedAvg central, C = %g | %.3f | %.3f | %.4f | %.1f |\n", *clip, z, eps, acc, secs)
	}
	if *saClients == 0 {
		return nil
	}
	return secaggTable(*saClients, *saRounds, *saDropout, *saFracBits, *clip, *localEpochs, *lr, *delta, *seed, byte(*noiseSeed), *epsList, tr, te, quiet)
}

// noiseFor is the smallest z (to 1e-3) whose ε after rounds at rate q is ≤ target.
func noiseFor(target, q float64, rounds int, delta float64) (float64, error) {
	epsAt := func(z float64) (float64, error) {
		a, err := privacy.NewAccountant()
		if err != nil {
			return 0, err
		}
		if err := a.Compose(q, z, rounds); err != nil {
			return 0, err
		}
		return a.Epsilon(delta)
	}
	lo, hi := 0.05, 100.0
	if e, err := epsAt(hi); err != nil || e > target {
		return 0, fmt.Errorf("ε %v unreachable with z ≤ %v (ε %v, %v)", target, hi, e, err)
	}
	for hi-lo > 1e-3 {
		mid := (lo + hi) / 2
		e, err := epsAt(mid)
		if err != nil {
			return 0, err
		}
		if e > target {
			lo = mid
		} else {
			hi = mid
		}
	}
	if math.IsNaN(hi) {
		return 0, fmt.Errorf("no noise multiplier found")
	}
	return hi, nil
}
