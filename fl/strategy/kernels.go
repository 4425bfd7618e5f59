package strategy

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync/atomic"

	"github.com/teeml/teeml/ml/tensor"
)

// weightedSpan sets out[j] = float32(scale · Σ_k c[k]·xs[k][j]) and reports
// whether any output is NaN or ±Inf. Per coordinate, each product c[k]·x is
// rounded to float64 (never fused into an FMA) and the products are added in
// client order, left to right; the AVX kernel (amd64) and the generic Go
// code below compute exactly that, so they agree bit for bit. acc is scratch
// of at least len(out). xs is resliced in place.
func weightedSpan(out []float32, xs [][]float32, c []float64, scale float64, acc []float64) (nonFinite bool) {
	if useAVX && len(out) >= 16 {
		done := len(out) &^ 15
		nonFinite = wsumAVX(out[:done], xs, c, scale)
		if done == len(out) {
			return nonFinite
		}
		out = out[done:]
		for k := range xs {
			xs[k] = xs[k][done:]
		}
	}
	return weightedSpanGeneric(out, xs, c, scale, acc) || nonFinite
}

// weightedSpanGeneric is weightedSpan in plain Go: the accumulator makes a
// round trip through the (cache-resident) scratch per block of four
// clients. The explicit float64(·) conversions forbid FMA fusion.
func weightedSpanGeneric(out []float32, xs [][]float32, c []float64, scale float64, acc []float64) (nonFinite bool) {
	acc = acc[:len(out)]
	n := len(xs)
	k := 0
	switch {
	case n >= 4:
		set4(acc, xs[0], xs[1], xs[2], xs[3], c[0], c[1], c[2], c[3])
		k = 4
	case n >= 2:
		set2(acc, xs[0], xs[1], c[0], c[1])
		k = 2
	default:
		set1(acc, xs[0], c[0])
		k = 1
	}
	for ; k+4 <= n; k += 4 {
		add4(acc, xs[k], xs[k+1], xs[k+2], xs[k+3], c[k], c[k+1], c[k+2], c[k+3])
	}
	for ; k+2 <= n; k += 2 {
		add2(acc, xs[k], xs[k+1], c[k], c[k+1])
	}
	for ; k < n; k++ {
		add1(acc, xs[k], c[k])
	}
	for j, a := range acc {
		v := float32(a * scale)
		out[j] = v
		if v-v != 0 { // NaN or ±Inf
			nonFinite = true
		}
	}
	return nonFinite
}

func set4(acc []float64, a, b, c, d []float32, ca, cb, cc, cd float64) {
	a, b, c, d = a[:len(acc)], b[:len(acc)], c[:len(acc)], d[:len(acc)]
	for j := range acc {
		acc[j] = float64(ca*float64(a[j])) + float64(cb*float64(b[j])) + float64(cc*float64(c[j])) + float64(cd*float64(d[j]))
	}
}

func add4(acc []float64, a, b, c, d []float32, ca, cb, cc, cd float64) {
	a, b, c, d = a[:len(acc)], b[:len(acc)], c[:len(acc)], d[:len(acc)]
	for j := range acc {
		acc[j] = acc[j] + float64(ca*float64(a[j])) + float64(cb*float64(b[j])) + float64(cc*float64(c[j])) + float64(cd*float64(d[j]))
	}
}

func set2(acc []float64, a, b []float32, ca, cb float64) {
	a, b = a[:len(acc)], b[:len(acc)]
	for j := range acc {
		acc[j] = float64(ca*float64(a[j])) + float64(cb*float64(b[j]))
	}
}

func add2(acc []float64, a, b []float32, ca, cb float64) {
	a, b = a[:len(acc)], b[:len(acc)]
	for j := range acc {
		acc[j] = acc[j] + float64(ca*float64(a[j])) + float64(cb*float64(b[j]))
	}
}

func set1(acc []float64, a []float32, ca float64) {
	a = a[:len(acc)]
	for j := range acc {
		acc[j] = float64(ca * float64(a[j]))
	}
}

func add1(acc []float64, a []float32, ca float64) {
	a = a[:len(acc)]
	for j := range acc {
		acc[j] = acc[j] + float64(ca*float64(a[j]))
	}
}

// weightedMeanInto sets out = scale · Σ_k coef[k]·results[sel[k]].Weights,
// coordinate by coordinate, in parallel over spans. out must be compatible
// with every selected result (checked by the caller). It reports whether
// any output coordinate is non-finite.
func weightedMeanInto(out tensor.Weights, results []FitResult, sel []int, coef []float64, scale float64, workers int, p *pool) bool {
	spans := makeSpans(out)
	workers = max(1, min(workers, len(spans)))
	sc := p.get(workers, len(sel))
	var bad atomic.Bool
	runTasks(workers, len(spans), func(w, i int) {
		s := &sc[w]
		sp := spans[i]
		views(s.xs, results, sel, sp)
		if weightedSpan(out[sp.t].Data[sp.lo:sp.hi], s.xs, coef, scale, s.acc) {
			bad.Store(true)
		}
	})
	return bad.Load()
}

// WeightedMean sets dst = Σ_k coef[k]·updates[k] / Σ_k coef[k], coordinate
// by coordinate, accumulating in float64 (see the package documentation),
// on at most workers goroutines (≤ 0: GOMAXPROCS). It is FedAvg's kernel,
// exported for servers and benchmarks that do their own validation: dst and
// every update must be compatible (same names, shapes and order) and the
// coefficients finite, non-negative and not all zero. dst may not alias an
// update.
func WeightedMean(dst tensor.Weights, updates []tensor.Weights, coef []float64, workers int) error {
	if len(updates) == 0 || len(updates) != len(coef) {
		return fmt.Errorf("strategy: WeightedMean: %d updates, %d coefficients", len(updates), len(coef))
	}
	var total float64
	for k, u := range updates {
		if err := dst.Compatible(u); err != nil {
			return fmt.Errorf("strategy: WeightedMean: update %d: %w", k, err)
		}
		if !(coef[k] >= 0) || math.IsInf(coef[k], 0) {
			return fmt.Errorf("strategy: WeightedMean: coefficient %d is %v", k, coef[k])
		}
		total += coef[k]
	}
	if !(total > 0) || math.IsInf(total, 0) {
		return fmt.Errorf("strategy: WeightedMean: coefficients sum to %v", total)
	}
	results := make([]FitResult, len(updates))
	sel := make([]int, len(updates))
	for k, u := range updates {
		results[k].Weights = u
		sel[k] = k
	}
	if workers <= 0 {
		workers = (&Options{}).workers()
	}
	var p pool
	weightedMeanInto(dst, results, sel, coef, 1/total, workers, &p)
	return nil
}

// updateStats computes, for every selected result, Σ (w_i − w_global)² over
// all coordinates in float64 (NaN or +Inf when the update holds a non-finite
// value: a finite float32 difference squared cannot overflow float64).
// Partial sums are kept per span group and combined in group order, so the
// result does not depend on the number of workers.
func updateStats(global tensor.Weights, results []FitResult, sel []int, workers int) []float64 {
	spans := makeSpans(global)
	gb := groupBounds(len(spans))
	ng := len(gb) - 1
	n := len(sel)
	partial := make([]float64, ng*n)
	runTasks(workers, ng, func(_, g int) {
		part := partial[g*n : (g+1)*n]
		for _, sp := range spans[gb[g]:gb[g+1]] {
			gd := global[sp.t].Data[sp.lo:sp.hi]
			for k, i := range sel {
				part[k] += sqDiff(results[i].Weights[sp.t].Data[sp.lo:sp.hi], gd)
			}
		}
	})
	out := make([]float64, n)
	for g := range ng {
		for k := range n {
			out[k] += partial[g*n+k]
		}
	}
	return out
}

// sqDiff returns Σ (a[j] − b[j])² in float64 (differences and squares
// rounded to float64, never fused), accumulated in 16 lanes — lane l takes
// j ≡ l (mod 16) in increasing j — combined by a fixed pairwise tree. The
// AVX kernel does the lanes of whole 16-blocks; the Go loop does the rest
// (or everything), with identical results.
func sqDiff(a, b []float32) float64 {
	b = b[:len(a)]
	var s [16]float64
	j := 0
	if useAVX && len(a) >= 16 {
		j = len(a) &^ 15
		sqDiffAVX(a[:j], b[:j], &s)
	}
	for ; j+16 <= len(a); j += 16 {
		aa, bb := a[j:j+16], b[j:j+16]
		for l := range s {
			d := float64(aa[l]) - float64(bb[l])
			s[l] = s[l] + float64(d*d)
		}
	}
	for l := 0; j < len(a); j, l = j+1, l+1 {
		d := float64(a[j]) - float64(b[j])
		s[l] = s[l] + float64(d*d)
	}
	for w := 8; w >= 1; w /= 2 {
		for l := range w {
			s[l] += s[l+w]
		}
	}
	return s[0]
}

// pairwiseSqDist returns the n×n matrix (row-major) of squared Euclidean
// distances between the selected results' weights, accumulated in float64
// per span group and combined in group order.
func pairwiseSqDist(global tensor.Weights, results []FitResult, sel []int, workers int) []float64 {
	spans := makeSpans(global)
	gb := groupBounds(len(spans))
	ng := len(gb) - 1
	n := len(sel)
	partial := make([]float64, ng*n*n)
	runTasks(workers, ng, func(_, g int) {
		part := partial[g*n*n : (g+1)*n*n]
		for _, sp := range spans[gb[g]:gb[g+1]] {
			for a := 0; a < n; a++ {
				xa := results[sel[a]].Weights[sp.t].Data[sp.lo:sp.hi]
				for b := a + 1; b < n; b++ {
					part[a*n+b] += sqDiff(xa, results[sel[b]].Weights[sp.t].Data[sp.lo:sp.hi])
				}
			}
		}
	})
	d := make([]float64, n*n)
	for g := range ng {
		part := partial[g*n*n : (g+1)*n*n]
		for a := 0; a < n; a++ {
			for b := a + 1; b < n; b++ {
				d[a*n+b] += part[a*n+b]
			}
		}
	}
	for a := 0; a < n; a++ {
		for b := a + 1; b < n; b++ {
			d[b*n+a] = d[a*n+b]
		}
	}
	return d
}

// selectK partially orders s in place so that s[k] holds the value of rank
// k, s[:k] ≤ s[k] ≤ s[k+1:]. Values must not be NaN. It is a quickselect
// with median-of-three pivots, insertion sort below 16 elements and, after
// 2·log₂(n) rounds without convergence (adversarial inputs), a sort of the
// remaining range, so the worst case stays O(n log n).
func selectK(s []float32, k int) {
	lo, hi := 0, len(s)-1
	budget := 2 * bits.Len(uint(len(s)))
	for hi > lo {
		if hi-lo < 16 {
			insertionSort(s[lo : hi+1])
			return
		}
		if budget == 0 {
			slices.Sort(s[lo : hi+1])
			return
		}
		budget--
		mid := lo + (hi-lo)/2
		if s[mid] < s[lo] {
			s[mid], s[lo] = s[lo], s[mid]
		}
		if s[hi] < s[lo] {
			s[hi], s[lo] = s[lo], s[hi]
		}
		if s[hi] < s[mid] {
			s[hi], s[mid] = s[mid], s[hi]
		}
		pivot := s[mid]
		i, j := lo, hi
		for i <= j {
			for s[i] < pivot {
				i++
			}
			for s[j] > pivot {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		// Now s[lo..j] ≤ pivot ≤ s[i..hi] and s[j+1..i-1] == pivot.
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return
		}
	}
}

func insertionSort(s []float32) {
	for i := 1; i < len(s); i++ {
		v := s[i]
		j := i - 1
		for j >= 0 && s[j] > v {
			s[j+1] = s[j]
			j--
		}
		s[j+1] = v
	}
}

// medianOf returns the median of s (the mean of the two middle values for
// even len), reordering s.
func medianOf(s []float32) float32 {
	n := len(s)
	h := n / 2
	selectK(s, h)
	if n%2 == 1 {
		return s[h]
	}
	lo := s[0]
	for _, v := range s[1:h] {
		lo = max(lo, v)
	}
	return float32((float64(lo) + float64(s[h])) / 2)
}

// trimmedMeanOf returns the mean of s without its cut smallest and cut
// largest values (0 ≤ 2·cut < len(s)), reordering s.
func trimmedMeanOf(s []float32, cut int) float32 {
	n := len(s)
	if cut > 0 {
		selectK(s, cut)           // s[:cut] are the cut smallest
		selectK(s[cut:], n-2*cut) // s[cut:n-cut] are the next n-2·cut
	}
	var sum float64
	for _, v := range s[cut : n-cut] {
		sum += float64(v)
	}
	return float32(sum / float64(n-2*cut))
}

// orderStat is a per-coordinate order statistic: the median, or the mean
// after dropping the cut smallest and cut largest values.
type orderStat struct {
	median bool
	cut    int
}

// maxNetwork is the largest client count handled by the sorting network;
// above it, per-coordinate quickselect is cheaper.
const maxNetwork = 32

// orderStatInto sets every coordinate of out to the order statistic st of
// the selected results' values at that coordinate, in parallel over spans.
// Up to maxNetwork clients it sorts blocks of coordinates column-wise with a
// branchless sorting network (networkSpan); above, it copies each
// coordinate's values into per-worker scratch and selects (selectSpan).
func orderStatInto(out tensor.Weights, results []FitResult, sel []int, st orderStat, workers int, p *pool) {
	spans := makeSpans(out)
	workers = max(1, min(workers, len(spans)))
	n := len(sel)
	sc := p.get(workers, n)
	var net [][2]int32
	if n <= maxNetwork {
		net = p.network(n)
	}
	runTasks(workers, len(spans), func(w, i int) {
		s := &sc[w]
		sp := spans[i]
		views(s.xs, results, sel, sp)
		o := out[sp.t].Data[sp.lo:sp.hi]
		if net != nil || n == 1 {
			networkSpan(o, s, net, st)
		} else {
			selectSpan(o, s, st)
		}
	})
}

// selectSpan computes st coordinate by coordinate with selectK.
func selectSpan(o []float32, s *scratch, st orderStat) {
	vals := s.vals
	for j := range o {
		for k, x := range s.xs {
			vals[k] = x[j]
		}
		if st.median {
			o[j] = medianOf(vals)
		} else {
			o[j] = trimmedMeanOf(vals, st.cut)
		}
	}
}

// floatKey maps a float32 to an int32 with the same order (for non-NaN
// values; −0 sorts just below +0). It is its own inverse on the bits.
func floatKey(f float32) int32 {
	b := int32(math.Float32bits(f))
	return b ^ int32(uint32(b>>31)>>1)
}

func keyFloat(k int32) float32 {
	return math.Float32frombits(uint32(k ^ int32(uint32(k>>31)>>1)))
}

// networkSpan computes st for a span in blocks of coordinates: the n
// clients' values of a block become n rows of order-preserving int32 keys
// (cache-resident scratch), the sorting network's compare-exchanges run
// row against row with branchless min/max, after which row r holds the
// values of rank r; then the statistic is read off the rows. The result
// depends only on the multiset of values, as with selectSpan, except that
// trimmed-mean sums are taken in ascending order.
func networkSpan(o []float32, s *scratch, net [][2]int32, st orderStat) {
	n := len(s.xs)
	block := len(s.keys) / n
	for b0 := 0; b0 < len(o); b0 += block {
		m := min(block, len(o)-b0)
		row := func(r int) []int32 { return s.keys[r*block : r*block+m] }
		for k, x := range s.xs {
			kr, xb := row(k), x[b0:b0+m]
			xb = xb[:len(kr)]
			for t := range kr {
				kr[t] = floatKey(xb[t])
			}
		}
		for _, c := range net {
			ri, rj := row(int(c[0])), row(int(c[1]))
			rj = rj[:len(ri)]
			for t := range ri {
				a, b := ri[t], rj[t]
				ri[t], rj[t] = min(a, b), max(a, b)
			}
		}
		ob := o[b0 : b0+m]
		switch {
		case st.median && n%2 == 1:
			mid := row(n / 2)
			mid = mid[:len(ob)]
			for t := range ob {
				ob[t] = keyFloat(mid[t])
			}
		case st.median:
			lo, hi := row(n/2-1), row(n/2)
			lo, hi = lo[:len(ob)], hi[:len(ob)]
			for t := range ob {
				ob[t] = float32((float64(keyFloat(lo[t])) + float64(keyFloat(hi[t]))) / 2)
			}
		default:
			acc := s.acc[:m]
			for t := range acc {
				acc[t] = 0
			}
			for r := st.cut; r < n-st.cut; r++ {
				kr := row(r)
				kr = kr[:len(acc)]
				for t := range acc {
					acc[t] += float64(keyFloat(kr[t]))
				}
			}
			inv := float64(n - 2*st.cut)
			for t := range ob {
				ob[t] = float32(acc[t] / inv)
			}
		}
	}
}

// batcherNetwork returns the compare-exchanges (i < j: the smaller value to
// i) of Batcher's odd–even merge sort for n inputs: the network for the next
// power of two with the comparators touching indices ≥ n dropped (as if
// those inputs were +∞, which such comparators never move).
func batcherNetwork(n int) [][2]int32 {
	p2 := 1
	for p2 < n {
		p2 <<= 1
	}
	var out [][2]int32
	for p := 1; p < p2; p <<= 1 {
		for k := p; k >= 1; k >>= 1 {
			for j := k % p; j+k < p2; j += 2 * k {
				for i := 0; i < min(k, p2-j-k); i++ {
					if (i+j)/(2*p) == (i+j+k)/(2*p) && i+j+k < n {
						out = append(out, [2]int32{int32(i + j), int32(i + j + k)})
					}
				}
			}
		}
	}
	return out
}
