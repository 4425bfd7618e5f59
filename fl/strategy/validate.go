package strategy

import (
	"fmt"
	"math"
	"slices"

	"github.com/teeml/teeml/ml/tensor"
)

// Validator holds the update checks every strategy runs before
// aggregating. A FitResult is rejected (and reported, never aggregated) when
//
//   - its Client id is empty, or another result has the same id (all results
//     of a duplicated id are rejected);
//   - NumExamples ≤ 0, or above MaxNumExamples when that is set;
//   - its weights do not have the global model's names, shapes and order
//     (tensor.Weights.Compatible);
//   - it holds a NaN or ±Inf;
//   - MaxUpdateNorm > 0 and ‖w_i − w_global‖₂ > MaxUpdateNorm;
//   - MaxUpdateNorm = 0, NormFactor > 0, at least MinNormSample finite
//     candidates, and ‖w_i − w_global‖₂ > NormFactor × their median norm
//     (the bound derived from the round itself: with a minority of
//     attackers the median is an honest client's norm).
//
// Too few accepted results (fewer than MinAccepted, or what the strategy
// itself needs, e.g. n > 2f+2 for Krum) fail the round with an error.
type Validator struct {
	// MaxUpdateNorm bounds the L2 norm of an update w_i − w_global; 0 means
	// no bound. Checking it costs one extra pass over the updates.
	MaxUpdateNorm float64
	// NormFactor, when MaxUpdateNorm is 0, bounds each update's norm by
	// NormFactor × the median norm of the round's finite updates; 0 means
	// no derived bound. It needs MinNormSample updates: below that the
	// median can be an attacker's and no derived bound applies.
	NormFactor float64
	// MaxNumExamples bounds a client's claimed NumExamples (which weights
	// its update in FedAvg-style means); 0 means no bound.
	MaxNumExamples int
	// MinAccepted is the minimum number of accepted results; ≤ 0 means 1.
	MinAccepted int
}

func (v *Validator) minAccepted() int { return max(1, v.MinAccepted) }

// MinNormSample is the fewest finite updates from which NormFactor derives
// a bound: with 3, one attacker can be neither the median nor move it.
const MinNormSample = 3

// normBounded reports whether the values pass checks norms (an explicit or
// a derived bound).
func (v *Validator) normBounded() bool { return v.MaxUpdateNorm > 0 || v.NormFactor > 0 }

// normBound is the bound on update norms given the candidates' norms
// (NaN/±Inf ones are ignored), and how it was set; 0 means none.
func (v *Validator) normBound(norms []float64) (float64, string) {
	if v.MaxUpdateNorm > 0 {
		return v.MaxUpdateNorm, ""
	}
	if v.NormFactor <= 0 {
		return 0, ""
	}
	var fin []float64
	for _, n := range norms {
		if !math.IsNaN(n) && !math.IsInf(n, 0) {
			fin = append(fin, n)
		}
	}
	if len(fin) < MinNormSample {
		return 0, ""
	}
	slices.Sort(fin)
	med := fin[len(fin)/2]
	if len(fin)%2 == 0 {
		med = (fin[len(fin)/2-1] + fin[len(fin)/2]) / 2
	}
	return v.NormFactor * med, fmt.Sprintf(" (%g × the round's median norm %.6g)", v.NormFactor, med)
}

// resultKey names result i in the report: its client id, or "#i" when empty.
func resultKey(results []FitResult, i int) string {
	if results[i].Client == "" {
		return fmt.Sprintf("#%d", i)
	}
	return results[i].Client
}

// structural runs the checks that do not read the weight values. It returns
// the indices of the surviving results, in input order, and fills
// rep.Rejected. global must itself be valid (tensor.Weights.Validate).
func (v *Validator) structural(global tensor.Weights, results []FitResult, rep *AggregateReport) []int {
	if rep.Rejected == nil {
		rep.Rejected = map[string]string{}
	}
	count := make(map[string]int, len(results))
	for _, r := range results {
		count[r.Client]++
	}
	var cand []int
	for i, r := range results {
		key := resultKey(results, i)
		switch {
		case r.Client == "":
			rep.Rejected[key] = fmt.Sprintf("result %d: id check: empty client id", i)
		case count[r.Client] > 1:
			rep.Rejected[key] = fmt.Sprintf("client %q: id check: %d results with this client id in one round", r.Client, count[r.Client])
		case r.NumExamples <= 0:
			rep.Rejected[key] = fmt.Sprintf("client %q: examples check: NumExamples = %d, want > 0", r.Client, r.NumExamples)
		case v.MaxNumExamples > 0 && r.NumExamples > v.MaxNumExamples:
			rep.Rejected[key] = fmt.Sprintf("client %q: examples check: NumExamples = %d exceeds the bound %d", r.Client, r.NumExamples, v.MaxNumExamples)
		default:
			if err := global.Compatible(r.Weights); err != nil {
				rep.Rejected[key] = fmt.Sprintf("client %q: shape check: %v (global vs update)", r.Client, err)
			} else {
				cand = append(cand, i)
			}
		}
	}
	return cand
}

// values runs the checks that read the weights (finite values, update norm)
// over the candidates in one parallel pass and returns the survivors. When
// norms is non-nil, the update norms of the survivors are stored in it.
func (v *Validator) values(global tensor.Weights, results []FitResult, cand []int, workers int, rep *AggregateReport, norms map[string]float64) []int {
	if len(cand) == 0 {
		return cand
	}
	sq := updateStats(global, results, cand, workers)
	ns := make([]float64, len(sq))
	for k := range sq {
		ns[k] = math.Sqrt(sq[k])
	}
	bound, how := v.normBound(ns)
	var keep []int
	for k, i := range cand {
		r := results[i]
		n := ns[k]
		switch {
		case math.IsNaN(n) || math.IsInf(n, 0):
			rep.Rejected[r.Client] = fmt.Sprintf("client %q: finite check: %v", r.Client, firstNonFinite(r.Weights))
		case bound > 0 && n > bound:
			rep.Rejected[r.Client] = fmt.Sprintf("client %q: norm check: update norm ‖w − w_global‖ = %.6g exceeds the bound %.6g%s", r.Client, n, bound, how)
		default:
			keep = append(keep, i)
			if norms != nil {
				norms[r.Client] = n
			}
		}
	}
	return keep
}

// firstNonFinite describes the first NaN/±Inf of w (or, if w is finite,
// says the global weights must be at fault).
func firstNonFinite(w tensor.Weights) string {
	if err := w.AllFinite(); err != nil {
		return err.Error()
	}
	return "update is finite but its difference to the global weights is not (non-finite global weights?)"
}

// checkGlobal validates the global weights the server passed in.
func checkGlobal(global tensor.Weights) error {
	if len(global) == 0 {
		return fmt.Errorf("strategy: empty global weights")
	}
	if err := global.Validate(); err != nil {
		return fmt.Errorf("strategy: global weights: %w", err)
	}
	return nil
}

// Validate runs all of v's checks on results against global and returns
// the indices of the accepted results (in input order) and a report with
// Round, Accepted, Rejected and UpdateNorms filled. It fails when fewer than MinAccepted results are accepted. The
// strategies call it (or an equivalent fused path) first; it is exported for
// custom strategies.
func (v Validator) Validate(round int, global tensor.Weights, results []FitResult, workers int) ([]int, AggregateReport, error) {
	rep := AggregateReport{Round: round, Rejected: map[string]string{}}
	if err := checkGlobal(global); err != nil {
		return nil, rep, err
	}
	if workers <= 0 {
		workers = (&Options{}).workers()
	}
	cand := v.structural(global, results, &rep)
	rep.UpdateNorms = map[string]float64{}
	acc := v.values(global, results, cand, workers, &rep, rep.UpdateNorms)
	rep.Accepted = clientsOf(results, acc)
	if err := v.enough(acc, len(results), &rep, 0, ""); err != nil {
		return acc, rep, err
	}
	return acc, rep, nil
}

// enough fails when fewer than max(MinAccepted, need) results were accepted.
func (v *Validator) enough(acc []int, total int, rep *AggregateReport, need int, why string) error {
	minN := v.minAccepted()
	if len(acc) >= minN && len(acc) >= need {
		return nil
	}
	if len(acc) < minN {
		return fmt.Errorf("strategy: round %d: %d of %d results accepted, need at least %d (rejected: %d)", rep.Round, len(acc), total, minN, len(rep.Rejected))
	}
	return fmt.Errorf("strategy: round %d: %d of %d results accepted, %s needs at least %d (rejected: %d)", rep.Round, len(acc), total, why, need, len(rep.Rejected))
}

func clientsOf(results []FitResult, idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = results[i].Client
	}
	return out
}
