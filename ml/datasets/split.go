package datasets

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Each consumer of randomness gets its own PCG stream so that, for the same
// seed, a split and a partition do not draw correlated numbers.
const (
	streamSplit     = 0x7465656d6c2d7370 // "teeml-sp"
	streamIID       = 0x7465656d6c2d6969 // "teeml-ii"
	streamDirichlet = 0x7465656d6c2d6469 // "teeml-di"
)

func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}

// Split divides ds into train and test sets with round(testFraction*n) test
// rows; for classification the rounding is done per class, so every class
// keeps its proportion in both parts (stratified). The same seed always gives
// the same split. Rows keep their original order within each part. It panics
// if testFraction is outside [0, 1], like rand.IntN does for a bad argument.
func Split(ds *Dataset, testFraction float64, seed int64) (train, test *Dataset) {
	if !(testFraction >= 0 && testFraction <= 1) {
		panic(fmt.Sprintf("datasets: Split: test fraction %v outside [0, 1]", testFraction))
	}
	rng := newRand(seed, streamSplit)
	var groups [][]int
	if ds.Task == Classification && ds.Y != nil {
		groups = classRows(ds)
	} else {
		groups = [][]int{seq(ds.N)}
	}
	isTest := make([]bool, ds.N)
	for _, g := range groups {
		rng.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
		k := int(math.Round(testFraction * float64(len(g))))
		for _, i := range g[:k] {
			isTest[i] = true
		}
	}
	var trainRows, testRows []int
	for i, t := range isTest {
		if t {
			testRows = append(testRows, i)
		} else {
			trainRows = append(trainRows, i)
		}
	}
	return ds.subset(trainRows), ds.subset(testRows)
}

// classRows groups row indices by class label (index = class), each group in
// row order. Labels outside 0..NumClasses-1 get groups of their own too, so
// no row is ever dropped.
func classRows(ds *Dataset) [][]int {
	groups := make([][]int, max(ds.NumClasses, 0))
	for i, y := range ds.Y {
		c := int(y)
		if c < 0 || float32(c) != y {
			c = len(groups) // not a class index; keep the row anyway
		}
		for c >= len(groups) {
			groups = append(groups, nil)
		}
		groups[c] = append(groups[c], i)
	}
	return groups
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// PartitionIID shuffles the rows and deals them into n shards whose sizes
// differ by at most one: the "independent and identically distributed"
// baseline for horizontal federated learning. Every row lands in exactly one
// shard; within a shard rows keep their original order.
func PartitionIID(ds *Dataset, n int, seed int64) ([]*Dataset, error) {
	if err := checkShards(ds, n); err != nil {
		return nil, err
	}
	perm := seq(ds.N)
	rng := newRand(seed, streamIID)
	rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	shards := make([][]int, n)
	for k, i := range perm {
		shards[k%n] = append(shards[k%n], i)
	}
	return buildShards(ds, shards), nil
}

// PartitionDirichlet makes label-skewed (non-IID) shards, the usual way of
// simulating clients that each see mostly a few classes: for every class, the
// share of its rows given to each of the n shards is drawn from a symmetric
// Dirichlet(alpha). Small alpha (0.1) gives shards dominated by one or two
// classes; large alpha (100) approaches an IID split. Every row lands in
// exactly one shard and no shard is empty: draws leaving a shard empty are
// retried, and if that keeps failing rows are moved one at a time from the
// largest shard, all driven by the seed so the result is reproducible.
func PartitionDirichlet(ds *Dataset, n int, alpha float64, seed int64) ([]*Dataset, error) {
	if err := checkShards(ds, n); err != nil {
		return nil, err
	}
	if ds.Task != Classification || ds.Y == nil {
		return nil, fmt.Errorf("datasets: dirichlet partition of %s: needs a labelled classification dataset, task is %q", ds.Name, ds.Task)
	}
	if !(alpha > 0) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("datasets: dirichlet partition of %s: alpha %v must be positive and finite", ds.Name, alpha)
	}
	rng := newRand(seed, streamDirichlet)
	groups := classRows(ds)
	var shards [][]int
	const attempts = 100
	for range attempts {
		shards = make([][]int, n)
		for _, g := range groups {
			g = slices.Clone(g)
			rng.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
			p := dirichlet(rng, n, alpha)
			// Cut points from cumulative proportions: exact coverage, no
			// row counted twice, whatever the rounding.
			start, cum := 0, 0.0
			for s := range n {
				cum += p[s]
				end := int(math.Round(cum * float64(len(g))))
				if s == n-1 {
					end = len(g)
				}
				end = min(max(end, start), len(g))
				shards[s] = append(shards[s], g[start:end]...)
				start = end
			}
		}
		if !slices.ContainsFunc(shards, func(s []int) bool { return len(s) == 0 }) {
			break
		}
	}
	// Still an empty shard after all attempts (tiny datasets, many shards,
	// very small alpha): give it a row from the currently largest shard.
	for s := range shards {
		if len(shards[s]) > 0 {
			continue
		}
		big := 0
		for t := range shards {
			if len(shards[t]) > len(shards[big]) {
				big = t
			}
		}
		last := len(shards[big]) - 1
		shards[s] = append(shards[s], shards[big][last])
		shards[big] = shards[big][:last]
	}
	return buildShards(ds, shards), nil
}

func checkShards(ds *Dataset, n int) error {
	if n < 1 {
		return fmt.Errorf("datasets: partition of %s: %d shards, want at least 1", ds.Name, n)
	}
	if n > ds.N {
		return fmt.Errorf("datasets: partition of %s: %d shards for %d rows would leave shards empty", ds.Name, n, ds.N)
	}
	return nil
}

func buildShards(ds *Dataset, shards [][]int) []*Dataset {
	out := make([]*Dataset, len(shards))
	for s, rows := range shards {
		slices.Sort(rows)
		out[s] = ds.subset(rows)
	}
	return out
}

// dirichlet draws a point from a symmetric Dirichlet(alpha) over n
// categories by normalising n Gamma(alpha, 1) draws.
func dirichlet(rng *rand.Rand, n int, alpha float64) []float64 {
	p := make([]float64, n)
	for {
		sum := 0.0
		for i := range p {
			p[i] = gamma(rng, alpha)
			sum += p[i]
		}
		// With alpha << 1 every draw can underflow to 0; draw again.
		if sum > 0 && !math.IsInf(sum, 0) {
			for i := range p {
				p[i] /= sum
			}
			return p
		}
	}
}

// gamma draws from Gamma(alpha, 1) with Marsaglia and Tsang's method (2000);
// for alpha < 1 it uses Gamma(alpha+1) * U^(1/alpha).
func gamma(rng *rand.Rand, alpha float64) float64 {
	if alpha < 1 {
		u := rng.Float64()
		return gamma(rng, alpha+1) * math.Pow(u, 1/alpha)
	}
	d := alpha - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// SplitColumns divides ds by columns for vertical federated learning: party A
// gets the columns named in partyA plus the labels, party B gets the columns
// in partyB and no labels (Y nil, Task empty, NumClasses 0). Both keep the row
// IDs, which is how the parties later align rows. Every column of ds must be
// named exactly once across the two lists. Party A may have no columns (a
// label-only party); party B must have at least one.
func SplitColumns(ds *Dataset, partyA []string, partyB []string) (a, b *Dataset, err error) {
	owner := map[string]string{}
	for _, p := range []struct {
		name string
		cols []string
	}{{"A", partyA}, {"B", partyB}} {
		for _, c := range p.cols {
			if ds.ColumnIndex(c) < 0 {
				return nil, nil, fmt.Errorf("datasets: split columns of %s: party %s: unknown column %q", ds.Name, p.name, c)
			}
			if prev, ok := owner[c]; ok {
				if prev == p.name {
					return nil, nil, fmt.Errorf("datasets: split columns of %s: party %s lists column %q twice", ds.Name, p.name, c)
				}
				return nil, nil, fmt.Errorf("datasets: split columns of %s: column %q given to both parties", ds.Name, c)
			}
			owner[c] = p.name
		}
	}
	var missing []string
	for _, c := range ds.Columns {
		if _, ok := owner[c.Name]; !ok {
			missing = append(missing, c.Name)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("datasets: split columns of %s: %d columns given to neither party: %q", ds.Name, len(missing), missing)
	}
	if len(partyB) == 0 {
		return nil, nil, errors.New("datasets: split columns of " + ds.Name + ": party B has no columns")
	}
	a = ds.selectColumns(partyA)
	b = ds.selectColumns(partyB)
	b.Y, b.Task, b.NumClasses, b.ClassNames = nil, "", 0, nil
	return a, b, nil
}

// selectColumns returns a copy of ds with only the named columns, in that
// order. A column subset is no longer an image, so ImageShape is dropped.
func (d *Dataset) selectColumns(names []string) *Dataset {
	out := d.cloneMeta()
	out.N = d.N
	out.Y = slices.Clone(d.Y)
	out.IDs = slices.Clone(d.IDs)
	out.ImageShape = nil
	idx := make([]int, len(names))
	out.Columns = make([]Column, len(names))
	for k, name := range names {
		idx[k] = d.ColumnIndex(name)
		out.Columns[k] = Column{Name: name, Categories: slices.Clone(d.Columns[idx[k]].Categories)}
	}
	out.D = len(names)
	out.X = make([]float32, d.N*out.D)
	for i := range d.N {
		row := d.Row(i)
		for k, j := range idx {
			out.X[i*out.D+k] = row[j]
		}
	}
	return out
}
