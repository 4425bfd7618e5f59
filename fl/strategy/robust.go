package strategy

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/teeml/teeml/ml/tensor"
)

// Median is the coordinate-wise median of the accepted results (Yin et al.
// 2018, "Byzantine-Robust Distributed Learning"), unweighted: every accepted
// client counts once whatever its NumExamples. For an even number of results
// a coordinate is the mean of its two middle values. It tolerates fewer than
// half of the results being arbitrary. The zero value is ready to use.
type Median struct {
	Options
	mu   sync.Mutex
	pool pool
}

// Name implements Strategy.
func (s *Median) Name() string { return "median" }

// AggregateFit implements Strategy.
func (s *Median) AggregateFit(round int, global tensor.Weights, results []FitResult) (tensor.Weights, AggregateReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	workers := s.workers()
	acc, rep, err := s.Validator.Validate(round, global, results, workers)
	if err != nil {
		return nil, rep, err
	}
	out := global.ZerosLike()
	orderStatInto(out, results, acc, orderStat{median: true}, workers, &s.pool)
	finishReport(&rep, results, acc)
	return out, rep, nil
}

// State implements Strategy (Median is stateless).
func (s *Median) State() (State, error) { return statelessState(s.Name()) }

// Restore implements Strategy.
func (s *Median) Restore(st State) error { return statelessRestore(s.Name(), st) }

// TrimmedMean is the coordinate-wise trimmed mean (Yin et al. 2018): for
// each coordinate, the ⌊Beta·n⌋ smallest and ⌊Beta·n⌋ largest of the n
// accepted values are dropped and the rest averaged, unweighted (as Flower's
// FedTrimmedAvg / scipy.stats.trim_mean).
type TrimmedMean struct {
	Options
	// Beta is the fraction trimmed at each end, 0 ≤ Beta < 0.5.
	Beta float64
	mu   sync.Mutex
	pool pool
}

// Name implements Strategy.
func (s *TrimmedMean) Name() string { return "trimmedmean" }

// AggregateFit implements Strategy.
func (s *TrimmedMean) AggregateFit(round int, global tensor.Weights, results []FitResult) (tensor.Weights, AggregateReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !(s.Beta >= 0 && s.Beta < 0.5) {
		return nil, AggregateReport{Round: round}, fmt.Errorf("strategy: trimmedmean: need 0 ≤ β < 0.5, have %v", s.Beta)
	}
	workers := s.workers()
	acc, rep, err := s.Validator.Validate(round, global, results, workers)
	if err != nil {
		return nil, rep, err
	}
	cut := int(math.Floor(s.Beta * float64(len(acc))))
	out := global.ZerosLike()
	orderStatInto(out, results, acc, orderStat{cut: cut}, workers, &s.pool)
	finishReport(&rep, results, acc)
	return out, rep, nil
}

// State implements Strategy (TrimmedMean is stateless).
func (s *TrimmedMean) State() (State, error) { return statelessState(s.Name()) }

// Restore implements Strategy.
func (s *TrimmedMean) Restore(st State) error { return statelessRestore(s.Name(), st) }

// KeepAll as Krum.M keeps n − f updates (the usual Multi-Krum choice).
const KeepAll = -1

// Krum is Krum / Multi-Krum (Blanchard et al. 2017, "Machine Learning with
// Adversaries: Byzantine Tolerant Gradient Descent"). With n accepted
// results of which at most F are Byzantine, each result i is scored by the
// sum of squared Euclidean distances from w_i to its n − F − 2 nearest
// other results; Krum (M ≤ 1) returns the weights of the best-scored result,
// Multi-Krum (M ≥ 2, or KeepAll for n − F) the NumExamples-weighted mean of
// the M best (as Flower's Krum). Ties are broken by input order. It needs
// n > 2F + 2 accepted results. Distances between weights equal distances
// between updates w_i − w_global.
type Krum struct {
	Options
	// F is the number of Byzantine clients tolerated.
	F int
	// M is the number of best-scored results averaged: ≤ 1 Krum, KeepAll n − F.
	M    int
	mu   sync.Mutex
	pool pool
}

// Name implements Strategy: "krum", or "multikrum" when M ≠ 0, 1.
func (s *Krum) Name() string {
	if s.M == 0 || s.M == 1 {
		return "krum"
	}
	return "multikrum"
}

// AggregateFit implements Strategy. Report.Scores holds every accepted
// client's score, Report.UpdateNorms their update norms.
func (s *Krum) AggregateFit(round int, global tensor.Weights, results []FitResult) (tensor.Weights, AggregateReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.F < 0 || (s.M < 0 && s.M != KeepAll) {
		return nil, AggregateReport{Round: round}, fmt.Errorf("strategy: %s: need f ≥ 0 and m ≥ 0 or KeepAll, have f = %d, m = %d", s.Name(), s.F, s.M)
	}
	workers := s.workers()
	v := s.Validator
	rep := AggregateReport{Round: round, Rejected: map[string]string{}, UpdateNorms: map[string]float64{}}
	if err := checkGlobal(global); err != nil {
		return nil, rep, err
	}
	acc := v.structural(global, results, &rep)
	acc = v.values(global, results, acc, workers, &rep, rep.UpdateNorms)
	rep.Accepted = clientsOf(results, acc)
	n := len(acc)
	if err := v.enough(acc, len(results), &rep, 2*s.F+3, fmt.Sprintf("krum with f = %d", s.F)); err != nil {
		return nil, rep, err
	}
	keep := s.M
	switch {
	case keep == KeepAll:
		keep = n - s.F
	case keep <= 1:
		keep = 1
	case keep > n:
		return nil, rep, fmt.Errorf("strategy: %s: m = %d exceeds the %d accepted results", s.Name(), keep, n)
	}

	d := pairwiseSqDist(global, results, acc, workers)
	scores := make([]float64, n)
	row := make([]float64, 0, n-1)
	nearest := n - s.F - 2
	rep.Scores = make(map[string]float64, n)
	for a := range n {
		row = row[:0]
		for b := range n {
			if b != a {
				row = append(row, d[a*n+b])
			}
		}
		slices.Sort(row)
		var sc float64
		for _, x := range row[:nearest] {
			sc += x
		}
		scores[a] = sc
		rep.Scores[results[acc[a]].Client] = sc
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	sel := make([]int, keep)
	for k := range keep {
		sel[k] = acc[order[k]]
	}
	slices.Sort(sel) // input order, so Multi-Krum sums in a fixed order

	var out tensor.Weights
	if keep == 1 {
		out = results[sel[0]].Weights.Clone()
	} else {
		out = global.ZerosLike()
		coef, scale := examplesCoef(results, sel)
		weightedMeanInto(out, results, sel, coef, scale, workers, &s.pool)
	}
	finishReport(&rep, results, sel)
	return out, rep, nil
}

// State implements Strategy (Krum is stateless).
func (s *Krum) State() (State, error) { return statelessState(s.Name()) }

// Restore implements Strategy.
func (s *Krum) Restore(st State) error { return statelessRestore(s.Name(), st) }
