package trees

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
)

// MaxBin is the number of histogram bins per feature, the missing-value bin
// included.
const MaxBin = 255

// binned is a feature matrix turned into bin indices, column-major.
type binned struct {
	n, d    int
	bins    [][]uint8   // [feature][row]
	numBins []int       // value bins per feature; bin numBins[f] holds NaN
	upper   [][]float64 // numerical: bin b holds upper[b-1] < x <= upper[b]
	isCat   []bool
}

// binSample is how many rows bin edges are fitted on at most (LightGBM's
// bin_construct_sample_cnt): larger inputs fit them on an evenly spaced
// subset of this many rows, then bin every row.
const binSample = 200_000

// binFeatures fits bin edges on x (n rows of d features) and bins it,
// features spread over threads goroutines (the result does not depend on
// threads). cat marks categorical columns, whose values are category
// indices.
func binFeatures(x []float32, n, d int, cat []bool, threads int) *binned {
	b := &binned{n: n, d: d, bins: make([][]uint8, d), numBins: make([]int, d), upper: make([][]float64, d), isCat: make([]bool, d)}
	sample := n
	if n > binSample {
		sample = binSample
	}
	threads = max(1, min(threads, d))
	var wg sync.WaitGroup
	for w := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]float64, 0, sample)
			for f := w; f < d; f += threads {
				vals = vals[:0]
				for s := range sample {
					i := s
					if sample < n {
						i = int(int64(s) * int64(n) / int64(sample))
					}
					if v := float64(x[i*d+f]); !math.IsNaN(v) {
						vals = append(vals, v)
					}
				}
				slices.Sort(vals)
				if f < len(cat) && cat[f] {
					b.isCat[f] = true
					nb := 1
					if sample < n {
						// categories seen only outside the sample still get a bin
						for i := range n {
							if v := float64(x[i*d+f]); !math.IsNaN(v) {
								nb = max(nb, min(int(v)+1, MaxBin-1))
							}
						}
					} else if len(vals) > 0 {
						nb = min(int(vals[len(vals)-1])+1, MaxBin-1)
					}
					b.numBins[f] = max(nb, 1)
				} else {
					b.upper[f] = binEdges(vals)
					b.numBins[f] = len(b.upper[f])
				}
				col := make([]uint8, n)
				for i := range n {
					col[i] = uint8(b.binOf(f, x[i*d+f]))
				}
				b.bins[f] = col
			}
		}()
	}
	wg.Wait()
	return b
}

// binEdges returns the upper edges of at most MaxBin-1 bins over sorted
// values, the last one +Inf.
func binEdges(sorted []float64) []float64 {
	uniq := slices.Compact(slices.Clone(sorted))
	if len(uniq) <= 1 {
		return []float64{math.Inf(1)}
	}
	var edges []float64
	if len(uniq) <= MaxBin-1 {
		for i := 0; i+1 < len(uniq); i++ {
			edges = append(edges, midpoint(uniq[i], uniq[i+1]))
		}
	} else {
		nb := MaxBin - 1
		for k := 1; k < nb; k++ {
			q := sorted[k*len(sorted)/nb]
			// edge between q and the next larger distinct value
			j := sort.SearchFloat64s(uniq, q)
			if j+1 < len(uniq) {
				e := midpoint(uniq[j], uniq[j+1])
				if len(edges) == 0 || e > edges[len(edges)-1] {
					edges = append(edges, e)
				}
			}
		}
	}
	return append(edges, math.Inf(1))
}

// row is row i's bin of feature f.
func (b *binned) row(i, f int) uint8 { return b.bins[f][i] }

func midpoint(a, b float64) float64 {
	m := a + (b-a)/2
	if m >= b {
		m = a
	}
	return m
}

func (b *binned) binOf(f int, v32 float32) int {
	v := float64(v32)
	if math.IsNaN(v) {
		return b.numBins[f]
	}
	if b.isCat[f] {
		c := int(v)
		if v < 0 {
			return b.numBins[f]
		}
		return min(c, b.numBins[f]-1)
	}
	return sort.SearchFloat64s(b.upper[f], v)
}

// growParams bound one tree.
type growParams struct {
	maxLeaves   int // 0: unbounded
	maxDepth    int // 0: unbounded
	minLeaf     int
	minHess     float64
	lambda      float64
	shrinkage   float64
	maxFeatures int // per node; 0: all allowed features
	// lgbCat (boosting) applies LightGBM's categorical rules in full:
	// one-vs-rest for at most maxCatToOneHot categories, cat_l2, both scan
	// directions, max_cat_threshold, min_data_per_group (catSplit).
	lgbCat   bool
	features []int // allowed features for this tree
	rng      *rand.Rand
}

// split is the best split found for a leaf.
type split struct {
	gain        float64
	feature     int
	bin         int  // numerical: left takes bins <= bin
	defaultLeft bool // numerical: NaN goes left
	catLeft     []int
}

// hist is one leaf's gradient histograms, all features side by side:
// feature f's bins start at grower.off[f].
type hist struct {
	g []float64 // bin*m + k
	h []float64
	c []int32
}

type leafState struct {
	rows   []int // a window of the rows being grown
	depth  int
	parent int // internal node, -1 for the root
	isLeft bool
	sumG   []float64
	sumH   float64
	best   *split
	hist   *hist // subtraction mode: this leaf's histograms while it may still split
}

// grower builds trees on binned data with per-row gradients g (n*m, m
// outputs) and hessians h (n). With all features allowed at every node
// (boosting), each leaf keeps its histograms and a split builds only the
// smaller child's, deriving the sibling's as parent minus smaller;
// with per-node feature sampling (forests) each node builds the
// histograms of its sampled features. Histogram building and split search
// spread over threads goroutines by feature; the result does not depend
// on threads. A grower is reused across trees by one goroutine.
type grower struct {
	b *binned
	g []float64
	h []float64
	// cls, when set, stands for g (forest classification): row r's
	// gradient is -h[r] for output cls[r] and 0 for the others.
	cls     []int32
	m       int
	p       growParams
	threads int

	off     []int // feature f's bins: off[f] .. off[f+1]-1 (the last is NaN)
	pool    []*hist
	node    *hist // forest mode scratch
	og, oh  []float64
	scratch []int
	parts   []partWindow
	cand    []int
	fbest   []split
	fok     []bool
	lg, rg  [][]float64 // per worker, m each
	// leafRows, after grow, are each leaf's rows (windows of the rows
	// passed to grow, which grow reorders).
	leafRows [][]int
}

func (gr *grower) init() {
	if gr.off != nil {
		return
	}
	d := gr.b.d
	gr.off = make([]int, d+1)
	for f := range d {
		gr.off[f+1] = gr.off[f] + gr.b.numBins[f] + 1
	}
	gr.threads = max(gr.threads, 1)
	gr.lg = make([][]float64, gr.threads)
	gr.rg = make([][]float64, gr.threads)
	for w := range gr.threads {
		gr.lg[w] = make([]float64, 2*gr.m)
		gr.rg[w] = make([]float64, gr.m)
	}
}

func (gr *grower) subtraction() bool {
	return gr.p.maxFeatures <= 0 || gr.p.maxFeatures >= len(gr.p.features)
}

func (gr *grower) getHist() *hist {
	if n := len(gr.pool); n > 0 {
		h := gr.pool[n-1]
		gr.pool = gr.pool[:n-1]
		return h
	}
	t := gr.off[len(gr.off)-1]
	return &hist{g: make([]float64, t*gr.m), h: make([]float64, t), c: make([]int32, t)}
}

func (gr *grower) putHist(l *leafState) {
	if l.hist != nil {
		gr.pool = append(gr.pool, l.hist)
		l.hist = nil
	}
}

// grow returns the tree structure and per-leaf output values (m each).
// It reorders rows.
func (gr *grower) grow(rows []int) (*Tree, [][]float64) {
	gr.init()
	if cap(gr.scratch) < len(rows) {
		gr.scratch = make([]int, len(rows))
		gr.og = make([]float64, len(rows)*gr.m)
		gr.oh = make([]float64, len(rows))
	}
	sub := gr.subtraction()
	t := &Tree{}
	root := gr.newLeaf(rows, 0, -1, false, nil)
	if gr.canSplit(root) {
		if sub {
			root.hist = gr.getHist()
			gr.build(root.hist, rows, gr.p.features)
		}
		gr.findSplit(root)
	}
	leaves := []*leafState{root}
	// Unbounded trees (forests) grow depth first from a stack of the
	// leaves that can split, so the leaves waiting hold few histograms;
	// bounded ones (boosting) split the leaf of largest gain first.
	var stack []int
	if root.best != nil {
		stack = append(stack, 0)
	}
	for gr.p.maxLeaves == 0 || len(leaves) < gr.p.maxLeaves {
		bi := -1
		if gr.p.maxLeaves == 0 {
			if len(stack) == 0 {
				break
			}
			bi = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
		} else {
			for i, l := range leaves {
				if l.best != nil && (bi < 0 || l.best.gain > leaves[bi].best.gain) {
					bi = i
				}
			}
			if bi < 0 {
				break
			}
		}
		l := leaves[bi]
		s := l.best
		node := len(t.SplitFeature)
		t.SplitFeature = append(t.SplitFeature, s.feature)
		t.SplitGain = append(t.SplitGain, s.gain)
		dt := decMissingNaN
		var thr float64
		if gr.b.isCat[s.feature] {
			dt |= decCategorical
			if len(t.CatBoundaries) == 0 {
				t.CatBoundaries = []int{0}
			}
			thr = float64(len(t.CatBoundaries) - 1)
			words := make([]uint32, slices.Max(s.catLeft)/32+1)
			for _, c := range s.catLeft {
				words[c/32] |= 1 << (c % 32)
			}
			t.CatThreshold = append(t.CatThreshold, words...)
			t.CatBoundaries = append(t.CatBoundaries, len(t.CatThreshold))
		} else {
			thr = gr.b.upper[s.feature][s.bin]
			if s.defaultLeft {
				dt |= decDefaultLeft
			}
		}
		t.Threshold = append(t.Threshold, thr)
		t.DecisionType = append(t.DecisionType, dt)
		t.Left = append(t.Left, ^bi)
		t.Right = append(t.Right, ^len(leaves))
		if l.parent >= 0 {
			if l.isLeft {
				t.Left[l.parent] = node
			} else {
				t.Right[l.parent] = node
			}
		}
		left, right, sums := gr.partition(l.rows, s)
		var lsum, rsum *[2]float64
		if sums != nil {
			lsum, rsum = &sums[0], &sums[1]
		}
		ll := gr.newLeaf(left, l.depth+1, node, true, lsum)
		rl := gr.newLeaf(right, l.depth+1, node, false, rsum)
		leaves[bi] = ll
		leaves = append(leaves, rl)
		if gr.p.maxLeaves > 0 && len(leaves) >= gr.p.maxLeaves {
			gr.putHist(l)
			break // no further split: the children's candidates are not needed
		}
		lok, rok := gr.canSplit(ll), gr.canSplit(rl)
		if sub && (lok || rok) {
			small, large := ll, rl
			if len(right) < len(left) {
				small, large = rl, ll
			}
			small.hist = gr.getHist()
			gr.build(small.hist, small.rows, gr.p.features)
			large.hist, l.hist = l.hist, nil
			gr.subtract(large.hist, small.hist)
		}
		gr.putHist(l)
		if lok {
			gr.findSplit(ll)
		}
		if rok {
			gr.findSplit(rl)
		}
		if ll.best == nil {
			gr.putHist(ll)
		}
		if rl.best == nil {
			gr.putHist(rl)
		} else {
			stack = append(stack, len(leaves)-1)
		}
		if ll.best != nil {
			stack = append(stack, bi)
		}
	}
	vals := make([][]float64, len(leaves))
	t.LeafValue = make([]float64, len(leaves))
	t.LeafCount = make([]int, len(leaves))
	gr.leafRows = gr.leafRows[:0]
	for i, l := range leaves {
		gr.putHist(l)
		vals[i] = make([]float64, gr.m)
		for k := range gr.m {
			vals[i][k] = -l.sumG[k] / (l.sumH + gr.p.lambda) * gr.p.shrinkage
		}
		t.LeafValue[i] = vals[i][0]
		t.LeafCount[i] = len(l.rows)
		gr.leafRows = append(gr.leafRows, l.rows)
	}
	return t, vals
}

// partChunk is the size of the row windows partition splits a leaf
// into; the windows (a function of the leaf's size alone, so results do
// not depend on threads) are partitioned in parallel, then joined.
const partChunk = 1 << 16

// partWindow is one window's result in partition.
type partWindow struct {
	nl, nr int
	sum    [2][2]float64 // left, right: (sum g, sum h)
}

// partition splits rows in place, stably: the left rows first. With one
// output and explicit gradients (boosting) it also returns each side's
// sums of g and h (added in row order within each window, then over the
// windows in order).
func (gr *grower) partition(rows []int, s *split) (left, right []int, sums *[2][2]float64) {
	f := s.feature
	col := gr.b.bins[f]
	nan := gr.b.numBins[f]
	var goLeft [MaxBin + 1]bool
	if gr.b.isCat[f] {
		for _, c := range s.catLeft {
			goLeft[c] = true
		}
	} else {
		for b := 0; b <= s.bin; b++ {
			goLeft[b] = true
		}
		goLeft[nan] = s.defaultLeft
	}
	withSums := gr.cls == nil && gr.m == 1
	nc := max(1, len(rows)/partChunk)
	if len(gr.parts) < nc {
		gr.parts = make([]partWindow, nc)
	}
	parts := gr.parts[:nc]
	scratch := gr.scratch[:len(rows)]
	gr.spread(nc, len(rows), func(_, c int) {
		lo, hi := c*partChunk, (c+1)*partChunk
		if c == nc-1 {
			hi = len(rows)
		}
		win, rs := rows[lo:hi], scratch[lo:hi]
		nl, nr := 0, 0
		if withSums {
			g, h := gr.g, gr.h
			var lg, lh, rg, rh float64
			for _, r := range win {
				if goLeft[col[r]] {
					win[nl] = r
					nl++
					lg += g[r]
					lh += h[r]
				} else {
					rs[nr] = r
					nr++
					rg += g[r]
					rh += h[r]
				}
			}
			parts[c].sum = [2][2]float64{{lg, lh}, {rg, rh}}
		} else {
			for _, r := range win {
				if goLeft[col[r]] {
					win[nl] = r
					nl++
				} else {
					rs[nr] = r
					nr++
				}
			}
		}
		parts[c].nl, parts[c].nr = nl, nr
	})
	// Join: the windows' left rows slide down (each destination lies at
	// or below its source), then the right rows follow from the scratch.
	nl := 0
	var tot [2][2]float64
	for c := range parts {
		lo := c * partChunk
		copy(rows[nl:], rows[lo:lo+parts[c].nl])
		nl += parts[c].nl
		for i := range 2 {
			tot[i][0] += parts[c].sum[i][0]
			tot[i][1] += parts[c].sum[i][1]
		}
	}
	at := nl
	for c := range parts {
		lo := c * partChunk
		at += copy(rows[at:], scratch[lo:lo+parts[c].nr])
	}
	if withSums {
		sums = &tot
	}
	return rows[:nl:nl], rows[nl:], sums
}

// newLeaf is a leaf of rows; sum, when set, is their (sum g, sum h).
func (gr *grower) newLeaf(rows []int, depth, parent int, isLeft bool, sum *[2]float64) *leafState {
	l := &leafState{rows: rows, depth: depth, parent: parent, isLeft: isLeft, sumG: make([]float64, gr.m)}
	if sum != nil {
		l.sumG[0], l.sumH = sum[0], sum[1]
		return l
	}
	m := gr.m
	switch {
	case gr.cls != nil:
		for _, r := range rows {
			l.sumG[gr.cls[r]] -= gr.h[r]
		}
	case m == 1:
		s := 0.0
		for _, r := range rows {
			s += gr.g[r]
		}
		l.sumG[0] = s
	default:
		for _, r := range rows {
			for k := range m {
				l.sumG[k] += gr.g[r*m+k]
			}
		}
	}
	for _, r := range rows {
		l.sumH += gr.h[r]
	}
	return l
}

func (gr *grower) canSplit(l *leafState) bool {
	return len(l.rows) >= 2*max(gr.p.minLeaf, 1) && (gr.p.maxDepth == 0 || l.depth < gr.p.maxDepth)
}

// spread runs f(w, i) for i in [0, n) on up to gr.threads goroutines,
// worker w taking i = w, w+T, ...; serial when the work is small.
func (gr *grower) spread(n, work int, f func(w, i int)) {
	t := min(gr.threads, n)
	if t <= 1 || work < 1<<16 {
		for i := range n {
			f(0, i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range t {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += t {
				f(w, i)
			}
		}()
	}
	wg.Wait()
}

// ranges runs f over [0, n) cut into up to threads contiguous ranges,
// one goroutine each; serial when n is small. For element-wise work, so
// the result does not depend on the cut.
func ranges(n, threads int, f func(lo, hi int)) {
	t := max(1, min(threads, n/(1<<14)))
	if t == 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range t {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(w*n/t, (w+1)*n/t)
		}()
	}
	wg.Wait()
}

// build fills H's bins of feats from rows.
func (gr *grower) build(H *hist, rows []int, feats []int) {
	m := gr.m
	og, oh := gr.og[:len(rows)*m], gr.oh[:len(rows)]
	if gr.cls != nil {
		for i, r := range rows {
			oh[i] = gr.h[r]
		}
		gr.spread(len(feats), len(rows)*len(feats), func(_, i int) {
			f := feats[i]
			lo, hi := gr.off[f], gr.off[f+1]
			hg, hh, hc := H.g[lo*m:hi*m], H.h[lo:hi], H.c[lo:hi]
			clear(hg)
			clear(hh)
			clear(hc)
			col := gr.b.bins[f]
			for j, r := range rows {
				b := int(col[r])
				hg[b*m+int(gr.cls[r])] -= oh[j]
				hh[b] += oh[j]
				hc[b]++
			}
		})
		return
	}
	// all: rows are every row in order (the root without bagging); rows
	// are otherwise ascending windows, as partition keeps them.
	all := len(rows) == gr.b.n && (len(rows) == 0 || rows[len(rows)-1] == len(rows)-1)
	switch {
	case all && m == 1:
		og, oh = gr.g[:len(rows)], gr.h[:len(rows)]
	case m == 1:
		ranges(len(rows), gr.threads, func(lo, hi int) {
			g, h := gr.g, gr.h
			for i, r := range rows[lo:hi] {
				og[lo+i] = g[r]
				oh[lo+i] = h[r]
			}
		})
	default:
		for i, r := range rows {
			copy(og[i*m:(i+1)*m], gr.g[r*m:(r+1)*m])
			oh[i] = gr.h[r]
		}
	}
	if m == 1 {
		// Features in blocks of four: one pass over the rows and their
		// gradients fills four histograms (each feature's bins still add
		// in row order, so the sums do not depend on the blocking).
		nblk := (len(feats) + histBlock - 1) / histBlock
		gr.spread(nblk, len(rows)*len(feats), func(_, bi int) {
			fs := feats[bi*histBlock : min((bi+1)*histBlock, len(feats))]
			gr.buildBlock(H, rows, fs, og, oh, all)
		})
		return
	}
	gr.spread(len(feats), len(rows)*len(feats), func(_, i int) {
		f := feats[i]
		lo, hi := gr.off[f], gr.off[f+1]
		hg, hh, hc := H.g[lo*m:hi*m], H.h[lo:hi], H.c[lo:hi]
		clear(hg)
		clear(hh)
		clear(hc)
		col := gr.b.bins[f]
		for j, r := range rows {
			b := int(col[r])
			dst := hg[b*m : b*m+m]
			for k, v := range og[j*m : j*m+m] {
				dst[k] += v
			}
			hh[b] += oh[j]
			hc[b]++
		}
	})
}

// histBlock is how many features one pass over a leaf's rows fills.
const histBlock = 4

// binAcc is one feature's histogram while it is built: (g, h) side by
// side in a bin (one cache line, not two), and the counts.
type binAcc struct {
	gh  [MaxBin + 1][2]float64
	cnt [MaxBin + 1]int32
}

// buildBlock fills H's bins of the (at most histBlock) features fs from
// rows, whose gradients og, oh are gathered in row order (all: rows are
// 0..n-1).
func (gr *grower) buildBlock(H *hist, rows []int, fs []int, og, oh []float64, all bool) {
	var acc [histBlock]binAcc
	if len(fs) == histBlock {
		c0, c1, c2, c3 := gr.b.bins[fs[0]], gr.b.bins[fs[1]], gr.b.bins[fs[2]], gr.b.bins[fs[3]]
		a0, a1, a2, a3 := &acc[0], &acc[1], &acc[2], &acc[3]
		if all {
			n := len(og)
			c0, c1, c2, c3, oh = c0[:n], c1[:n], c2[:n], c3[:n], oh[:n]
			for j, g := range og {
				h := oh[j]
				b0, b1, b2, b3 := c0[j], c1[j], c2[j], c3[j]
				a0.gh[b0][0] += g
				a0.gh[b0][1] += h
				a0.cnt[b0]++
				a1.gh[b1][0] += g
				a1.gh[b1][1] += h
				a1.cnt[b1]++
				a2.gh[b2][0] += g
				a2.gh[b2][1] += h
				a2.cnt[b2]++
				a3.gh[b3][0] += g
				a3.gh[b3][1] += h
				a3.cnt[b3]++
			}
		} else {
			og, oh = og[:len(rows)], oh[:len(rows)]
			for j, r := range rows {
				g, h := og[j], oh[j]
				b0, b1, b2, b3 := c0[r], c1[r], c2[r], c3[r]
				a0.gh[b0][0] += g
				a0.gh[b0][1] += h
				a0.cnt[b0]++
				a1.gh[b1][0] += g
				a1.gh[b1][1] += h
				a1.cnt[b1]++
				a2.gh[b2][0] += g
				a2.gh[b2][1] += h
				a2.cnt[b2]++
				a3.gh[b3][0] += g
				a3.gh[b3][1] += h
				a3.cnt[b3]++
			}
		}
	} else {
		for k, f := range fs {
			a, col := &acc[k], gr.b.bins[f]
			if all {
				col = col[:len(og)]
				for j, b := range col {
					a.gh[b][0] += og[j]
					a.gh[b][1] += oh[j]
					a.cnt[b]++
				}
			} else {
				for j, r := range rows {
					b := col[r]
					a.gh[b][0] += og[j]
					a.gh[b][1] += oh[j]
					a.cnt[b]++
				}
			}
		}
	}
	for k, f := range fs {
		lo, hi := gr.off[f], gr.off[f+1]
		hg, hh, hc := H.g[lo:hi], H.h[lo:hi], H.c[lo:hi]
		a := &acc[k]
		for b := range hg {
			hg[b], hh[b], hc[b] = a.gh[b][0], a.gh[b][1], a.cnt[b]
		}
	}
}

// subtract sets large = large - small over the tree's features. A bin the
// larger child has no rows in is set to exact zeros: rounding noise there
// would break the ties between equivalent thresholds around empty bins,
// which a direct build resolves to the lowest.
func (gr *grower) subtract(large, small *hist) {
	m := gr.m
	for _, f := range gr.p.features {
		for b := gr.off[f]; b < gr.off[f+1]; b++ {
			c := large.c[b] - small.c[b]
			large.c[b] = c
			lg := large.g[b*m : b*m+m]
			if c == 0 {
				clear(lg)
				large.h[b] = 0
				continue
			}
			for k, v := range small.g[b*m : b*m+m] {
				lg[k] -= v
			}
			large.h[b] -= small.h[b]
		}
	}
}

func (gr *grower) score(g []float64, h float64) float64 {
	s := 0.0
	for _, v := range g {
		s += v * v
	}
	return s / (h + gr.p.lambda)
}

// findSplit sets l.best: the best split over the allowed (or, with
// per-node sampling, sampled) features, the first such feature on ties.
func (gr *grower) findSplit(l *leafState) {
	feats := gr.p.features
	H := l.hist
	if !gr.subtraction() {
		mf := gr.p.maxFeatures
		gr.cand = append(gr.cand[:0], feats...)
		for i := range mf {
			j := i + gr.p.rng.IntN(len(gr.cand)-i)
			gr.cand[i], gr.cand[j] = gr.cand[j], gr.cand[i]
		}
		feats = gr.cand[:mf]
		slices.Sort(feats)
		if gr.node == nil {
			gr.node = gr.getHist()
		}
		H = gr.node
		gr.build(H, l.rows, feats)
	}
	if cap(gr.fbest) < len(feats) {
		gr.fbest = make([]split, len(feats))
		gr.fok = make([]bool, len(feats))
	}
	fbest, fok := gr.fbest[:len(feats)], gr.fok[:len(feats)]
	parent := gr.score(l.sumG, l.sumH)
	gr.spread(len(feats), 4*gr.m*gr.off[len(gr.off)-1], func(w, i int) {
		fbest[i], fok[i] = gr.featureSplit(w, feats[i], l, H, parent)
	})
	var best *split
	for i := range feats {
		if fok[i] && (best == nil || fbest[i].gain > best.gain) {
			s := fbest[i]
			best = &s
		}
	}
	l.best = best
}

// featureSplit is the best split of l on feature f, if any gains.
func (gr *grower) featureSplit(w, f int, l *leafState, H *hist, parent float64) (split, bool) {
	m := gr.m
	lo, hi := gr.off[f], gr.off[f+1]
	hg, hh, hc := H.g[lo*m:hi*m], H.h[lo:hi], H.c[lo:hi]
	minLeaf := max(gr.p.minLeaf, 1)
	if gr.b.isCat[f] {
		return gr.catSplit(f, l, hg, hh, hc, parent, minLeaf)
	}
	nb := gr.b.numBins[f]
	n := len(l.rows)
	nanC, nanH := int(hc[nb]), hh[nb]
	minHess, lambda := gr.p.minHess, gr.p.lambda
	var best split
	ok := false
	if m == 1 {
		G, Hs := l.sumG[0], l.sumH
		nanG := hg[nb]
		var lg, lh float64
		var lc int
		for b := 0; b+1 < nb; b++ {
			lg += hg[b]
			lh += hh[b]
			lc += int(hc[b])
			for nl := 0; nl < 2; nl++ {
				cl, hl, gl := lc, lh, lg
				if nl == 1 {
					if nanC == 0 {
						break
					}
					cl, hl, gl = cl+nanC, hl+nanH, gl+nanG
				}
				cr, hr := n-cl, Hs-hl
				if cl < minLeaf || cr < minLeaf || hl < minHess || hr < minHess {
					continue
				}
				gRight := G - gl
				gain := gl*gl/(hl+lambda) + gRight*gRight/(hr+lambda) - parent
				if gain > 1e-12 && (!ok || gain > best.gain) {
					best, ok = split{gain: gain, feature: f, bin: b, defaultLeft: nl == 1}, true
				}
			}
		}
		return best, ok
	}
	lg, tmp := gr.lg[w][:m], gr.lg[w][m:2*m]
	rg := gr.rg[w]
	nanG := hg[nb*m : nb*m+m]
	clear(lg)
	var lh float64
	var lc int
	for b := 0; b+1 < nb; b++ {
		for k := range m {
			lg[k] += hg[b*m+k]
		}
		lh += hh[b]
		lc += int(hc[b])
		for nl := 0; nl < 2; nl++ {
			cl, hl, gl := lc, lh, lg
			if nl == 1 {
				if nanC == 0 {
					break
				}
				cl, hl = cl+nanC, hl+nanH
				for k := range m {
					tmp[k] = lg[k] + nanG[k]
				}
				gl = tmp
			}
			cr, hr := n-cl, l.sumH-hl
			if cl < minLeaf || cr < minLeaf || hl < minHess || hr < minHess {
				continue
			}
			for k := range m {
				rg[k] = l.sumG[k] - gl[k]
			}
			gain := gr.score(gl, hl) + gr.score(rg, hr) - parent
			if gain > 1e-12 && (!ok || gain > best.gain) {
				best, ok = split{gain: gain, feature: f, bin: b, defaultLeft: nl == 1}, true
			}
		}
	}
	return best, ok
}

// LightGBM's categorical split parameters (its defaults).
const (
	catSmooth       = 10.0 // cat_smooth
	catL2           = 10.0 // cat_l2
	maxCatToOneHot  = 4    // max_cat_to_onehot
	maxCatThreshold = 32   // max_cat_threshold
	minDataPerGroup = 100  // min_data_per_group
)

// catSplit is LightGBM's sorted-gradient categorical split: categories
// ordered by G/(H+cat_smooth) (of the first output), then the best prefix
// goes left; missing values go right. With lgbCat (boosting) it follows
// LightGBM's FindBestThresholdCategorical in full: at most
// max_cat_to_onehot categories give one-vs-rest splits; otherwise only
// categories with at least cat_smooth rows are sorted, the gain uses
// λ + cat_l2, prefixes are scanned from both ends, each side holds at
// least min_data_per_group rows, and at most max_cat_threshold
// categories go left.
func (gr *grower) catSplit(f int, l *leafState, hg, hh []float64, hc []int32, parent float64, minLeaf int) (split, bool) {
	if gr.p.lgbCat {
		return gr.catSplitLGB(f, l, hg, hh, hc, minLeaf)
	}
	m := gr.m
	nb := gr.b.numBins[f]
	var cats []int
	for c := range nb {
		if hc[c] > 0 {
			cats = append(cats, c)
		}
	}
	if len(cats) < 2 {
		return split{}, false
	}
	const smooth = 10.0
	slices.SortStableFunc(cats, func(a, b int) int {
		return cmp.Compare(hg[a*m]/(hh[a]+smooth), hg[b*m]/(hh[b]+smooth))
	})
	lg := make([]float64, m)
	rg := make([]float64, m)
	var lh float64
	var lc int
	bestN, bestGain := 0, 0.0
	for i := 0; i+1 < len(cats); i++ {
		c := cats[i]
		for k := range m {
			lg[k] += hg[c*m+k]
		}
		lh += hh[c]
		lc += int(hc[c])
		cr, hr := len(l.rows)-lc, l.sumH-lh
		if lc < minLeaf || cr < minLeaf || lh < gr.p.minHess || hr < gr.p.minHess {
			continue
		}
		for k := range m {
			rg[k] = l.sumG[k] - lg[k]
		}
		gain := gr.score(lg, lh) + gr.score(rg, hr) - parent
		if gain > 1e-12 && (bestN == 0 || gain > bestGain) {
			bestN, bestGain = i+1, gain
		}
	}
	if bestN == 0 {
		return split{}, false
	}
	left := slices.Clone(cats[:bestN])
	slices.Sort(left)
	return split{gain: bestGain, feature: f, catLeft: left}, true
}

// catSplitLGB is catSplit with LightGBM's rules (one output: boosting).
func (gr *grower) catSplitLGB(f int, l *leafState, hg, hh []float64, hc []int32, minLeaf int) (split, bool) {
	nb := gr.b.numBins[f]
	minHess := gr.p.minHess
	sumG, sumH, n := l.sumG[0], l.sumH, len(l.rows)
	used := 0
	for c := range nb {
		if hc[c] > 0 {
			used++
		}
	}
	if used < 2 {
		return split{}, false
	}
	if nb <= maxCatToOneHot {
		// One category left, everything else (and missing) right.
		lambda := gr.p.lambda
		parent := sumG * sumG / (sumH + lambda)
		best, bestGain := -1, 0.0
		for c := range nb {
			lc, lh, lg := int(hc[c]), hh[c], hg[c]
			rc, rh := n-lc, sumH-lh
			if lc < minLeaf || rc < minLeaf || lh < minHess || rh < minHess {
				continue
			}
			rg := sumG - lg
			gain := lg*lg/(lh+lambda) + rg*rg/(rh+lambda) - parent
			if gain > 1e-12 && (best < 0 || gain > bestGain) {
				best, bestGain = c, gain
			}
		}
		if best < 0 {
			return split{}, false
		}
		return split{gain: bestGain, feature: f, catLeft: []int{best}}, true
	}
	lambda := gr.p.lambda + catL2
	parent := sumG * sumG / (sumH + lambda)
	var cats []int
	for c := range nb {
		if float64(hc[c]) >= catSmooth {
			cats = append(cats, c)
		}
	}
	if len(cats) < 2 {
		return split{}, false
	}
	slices.SortStableFunc(cats, func(a, b int) int {
		return cmp.Compare(hg[a]/(hh[a]+catSmooth), hg[b]/(hh[b]+catSmooth))
	})
	minGroup := max(minDataPerGroup, minLeaf)
	maxLeft := min(maxCatThreshold, (len(cats)+1)/2)
	var best []int
	bestGain := 0.0
	for _, fromEnd := range []bool{false, true} {
		var lg, lh float64
		var lc, group int
		for i := 0; i < len(cats) && i < maxLeft; i++ {
			c := cats[i]
			if fromEnd {
				c = cats[len(cats)-1-i]
			}
			lg, lh, lc, group = lg+hg[c], lh+hh[c], lc+int(hc[c]), group+int(hc[c])
			if lc < minLeaf || lh < minHess {
				continue
			}
			rc, rh := n-lc, sumH-lh
			if rc < minLeaf || rh < minHess || rc < minGroup {
				break
			}
			if group < minGroup {
				continue
			}
			group = 0
			rg := sumG - lg
			gain := lg*lg/(lh+lambda) + rg*rg/(rh+lambda) - parent
			if gain > 1e-12 && (best == nil || gain > bestGain) {
				bestGain = gain
				if fromEnd {
					best = slices.Clone(cats[len(cats)-1-i:])
				} else {
					best = slices.Clone(cats[:i+1])
				}
			}
		}
	}
	if best == nil {
		return split{}, false
	}
	slices.Sort(best)
	return split{gain: bestGain, feature: f, catLeft: best}, true
}
