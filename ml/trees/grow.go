package trees

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
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

// binFeatures fits bin edges on x (n rows of d features) and bins it.
// cat marks categorical columns, whose values are category indices.
func binFeatures(x []float32, n, d int, cat []bool) *binned {
	b := &binned{n: n, d: d, bins: make([][]uint8, d), numBins: make([]int, d), upper: make([][]float64, d), isCat: make([]bool, d)}
	vals := make([]float64, 0, n)
	for f := range d {
		vals = vals[:0]
		for i := range n {
			if v := float64(x[i*d+f]); !math.IsNaN(v) {
				vals = append(vals, v)
			}
		}
		slices.Sort(vals)
		if f < len(cat) && cat[f] {
			b.isCat[f] = true
			nb := 1
			if len(vals) > 0 {
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
	maxFeatures int   // per node; 0: all allowed features
	features    []int // allowed features for this tree
	rng         *rand.Rand
}

// split is the best split found for a leaf.
type split struct {
	gain        float64
	feature     int
	bin         int  // numerical: left takes bins <= bin
	defaultLeft bool // numerical: NaN goes left
	catLeft     []int
	leftRows    []int
}

type leafState struct {
	rows   []int
	depth  int
	parent int // internal node, -1 for the root
	isLeft bool
	sumG   []float64
	sumH   float64
	best   *split
}

// grower builds one tree on binned data with per-row gradients g (n*m,
// m outputs) and hessians h (n).
type grower struct {
	b    *binned
	g    []float64
	h    []float64
	m    int
	p    growParams
	hg   []float64 // histogram scratch: (bin)*m + k
	hh   []float64
	hc   []int
	cand []int
}

// grow returns the tree structure and per-leaf output values (m each).
func (gr *grower) grow(rows []int) (*Tree, [][]float64) {
	t := &Tree{}
	root := gr.newLeaf(rows, 0, -1, false)
	leaves := []*leafState{root}
	for gr.p.maxLeaves == 0 || len(leaves) < gr.p.maxLeaves {
		bi := -1
		for i, l := range leaves {
			if l.best != nil && (bi < 0 || l.best.gain > leaves[bi].best.gain) {
				bi = i
			}
		}
		if bi < 0 {
			break
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
		left, right := gr.partition(l.rows, s)
		leaves[bi] = gr.newLeaf(left, l.depth+1, node, true)
		leaves = append(leaves, gr.newLeaf(right, l.depth+1, node, false))
	}
	vals := make([][]float64, len(leaves))
	t.LeafValue = make([]float64, len(leaves))
	t.LeafCount = make([]int, len(leaves))
	for i, l := range leaves {
		vals[i] = make([]float64, gr.m)
		for k := range gr.m {
			vals[i][k] = -l.sumG[k] / (l.sumH + gr.p.lambda) * gr.p.shrinkage
		}
		t.LeafValue[i] = vals[i][0]
		t.LeafCount[i] = len(l.rows)
	}
	return t, vals
}

func (gr *grower) partition(rows []int, s *split) (left, right []int) {
	f := s.feature
	col := gr.b.bins[f]
	nan := gr.b.numBins[f]
	var goLeft []bool
	if gr.b.isCat[f] {
		goLeft = make([]bool, nan+1)
		for _, c := range s.catLeft {
			goLeft[c] = true
		}
	}
	for _, r := range rows {
		bin := int(col[r])
		var l bool
		switch {
		case goLeft != nil:
			l = goLeft[bin]
		case bin == nan:
			l = s.defaultLeft
		default:
			l = bin <= s.bin
		}
		if l {
			left = append(left, r)
		} else {
			right = append(right, r)
		}
	}
	return left, right
}

func (gr *grower) newLeaf(rows []int, depth, parent int, isLeft bool) *leafState {
	l := &leafState{rows: rows, depth: depth, parent: parent, isLeft: isLeft, sumG: make([]float64, gr.m)}
	for _, r := range rows {
		for k := range gr.m {
			l.sumG[k] += gr.g[r*gr.m+k]
		}
		l.sumH += gr.h[r]
	}
	if len(rows) >= 2*max(gr.p.minLeaf, 1) && (gr.p.maxDepth == 0 || depth < gr.p.maxDepth) {
		l.best = gr.findSplit(l)
	}
	return l
}

func (gr *grower) score(g []float64, h float64) float64 {
	s := 0.0
	for _, v := range g {
		s += v * v
	}
	return s / (h + gr.p.lambda)
}

func (gr *grower) findSplit(l *leafState) *split {
	feats := gr.p.features
	if mf := gr.p.maxFeatures; mf > 0 && mf < len(feats) {
		gr.cand = append(gr.cand[:0], feats...)
		for i := range mf {
			j := i + gr.p.rng.IntN(len(gr.cand)-i)
			gr.cand[i], gr.cand[j] = gr.cand[j], gr.cand[i]
		}
		feats = gr.cand[:mf]
		slices.Sort(feats)
	}
	m := gr.m
	parent := gr.score(l.sumG, l.sumH)
	minLeaf := max(gr.p.minLeaf, 1)
	var best *split
	lg := make([]float64, m)
	rg := make([]float64, m)
	consider := func(gain float64, mk func() *split) {
		if gain > 1e-12 && (best == nil || gain > best.gain) {
			best = mk()
		}
	}
	for _, f := range feats {
		nb := gr.b.numBins[f]
		size := nb + 1
		if cap(gr.hg) < size*m {
			gr.hg = make([]float64, size*m)
			gr.hh = make([]float64, size)
			gr.hc = make([]int, size)
		}
		hg, hh, hc := gr.hg[:size*m], gr.hh[:size], gr.hc[:size]
		clear(hg)
		clear(hh)
		clear(hc)
		col := gr.b.bins[f]
		for _, r := range l.rows {
			bin := int(col[r])
			for k := range m {
				hg[bin*m+k] += gr.g[r*m+k]
			}
			hh[bin] += gr.h[r]
			hc[bin]++
		}
		if gr.b.isCat[f] {
			gr.catSplit(f, l, hg, hh, hc, parent, minLeaf, consider)
			continue
		}
		nanC, nanH := hc[nb], hh[nb]
		nanG := hg[nb*m : nb*m+m]
		clear(lg)
		var lh float64
		var lc int
		for b := 0; b+1 < nb; b++ {
			for k := range m {
				lg[k] += hg[b*m+k]
			}
			lh += hh[b]
			lc += hc[b]
			for _, nanLeft := range []bool{false, true} {
				if nanLeft && nanC == 0 {
					continue
				}
				cl, hl := lc, lh
				if nanLeft {
					cl += nanC
					hl += nanH
				}
				cr, hr := len(l.rows)-cl, l.sumH-hl
				if cl < minLeaf || cr < minLeaf || hl < gr.p.minHess || hr < gr.p.minHess {
					continue
				}
				for k := range m {
					gl := lg[k]
					if nanLeft {
						gl += nanG[k]
					}
					rg[k] = l.sumG[k] - gl
				}
				var gain float64
				if nanLeft {
					tmp := make([]float64, m)
					for k := range m {
						tmp[k] = lg[k] + nanG[k]
					}
					gain = gr.score(tmp, hl) + gr.score(rg, hr) - parent
				} else {
					gain = gr.score(lg, hl) + gr.score(rg, hr) - parent
				}
				bb, nl := b, nanLeft
				consider(gain, func() *split { return &split{gain: gain, feature: f, bin: bb, defaultLeft: nl} })
			}
		}
	}
	return best
}

// catSplit is LightGBM's sorted-gradient categorical split: categories
// ordered by G/H (of the first output), then the best prefix goes left;
// missing values go right.
func (gr *grower) catSplit(f int, l *leafState, hg, hh []float64, hc []int, parent float64, minLeaf int, consider func(float64, func() *split)) {
	m := gr.m
	nb := gr.b.numBins[f]
	var cats []int
	for c := range nb {
		if hc[c] > 0 {
			cats = append(cats, c)
		}
	}
	if len(cats) < 2 {
		return
	}
	const smooth = 10.0
	slices.SortStableFunc(cats, func(a, b int) int {
		return cmp.Compare(hg[a*m]/(hh[a]+smooth), hg[b*m]/(hh[b]+smooth))
	})
	lg := make([]float64, m)
	rg := make([]float64, m)
	var lh float64
	var lc int
	for i := 0; i+1 < len(cats); i++ {
		c := cats[i]
		for k := range m {
			lg[k] += hg[c*m+k]
		}
		lh += hh[c]
		lc += hc[c]
		cr, hr := len(l.rows)-lc, l.sumH-lh
		if lc < minLeaf || cr < minLeaf || lh < gr.p.minHess || hr < gr.p.minHess {
			continue
		}
		for k := range m {
			rg[k] = l.sumG[k] - lg[k]
		}
		gain := gr.score(lg, lh) + gr.score(rg, hr) - parent
		n := i + 1
		consider(gain, func() *split {
			left := slices.Clone(cats[:n])
			slices.Sort(left)
			return &split{gain: gain, feature: f, catLeft: left}
		})
	}
}
