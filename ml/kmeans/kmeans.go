// Package kmeans clusters rows with k-means: k-means++ seeding, Lloyd
// iterations (with Hamerly's bounds, which skip the distance computations
// that cannot change an assignment), several restarts keeping the lowest
// inertia, restarts run in parallel. It knows nothing
// of the CLI; models are a small JSON document (Write, Parse).
package kmeans

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Config configures Fit.
type Config struct {
	K       int
	NInit   int     // restarts, default 10
	MaxIter int     // Lloyd iterations per restart, default 300
	Tol     float64 // stop when no centre moves more than this (squared), default 1e-4
	Seed    int64
	Threads int // restarts run at once; 0: GOMAXPROCS. The result does not depend on it.
}

// Model is k centres of d features.
type Model struct {
	K, D    int
	Centers []float64 // K*D
	Inertia float64   // sum of squared distances to the nearest centre on the training rows
	Iter    int       // Lloyd iterations of the kept restart
}

// Fit clusters n rows of d features in x (row-major, no NaN).
func Fit(ctx context.Context, x []float32, n, d int, c Config) (*Model, error) {
	if c.K < 1 || n < c.K || d < 1 || len(x) != n*d {
		return nil, fmt.Errorf("kmeans: k %d, %d rows of %d features (%d values): want 1 <= k <= rows", c.K, n, d, len(x))
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("kmeans: row %d feature %d is %v: impute missing values first", i/d, i%d, v)
		}
	}
	if c.NInit <= 0 {
		c.NInit = 10
	}
	if c.MaxIter <= 0 {
		c.MaxIter = 300
	}
	if c.Tol <= 0 {
		c.Tol = 1e-4
	}
	if c.Threads <= 0 {
		c.Threads = runtime.GOMAXPROCS(0)
	}
	xs := make([]float64, len(x))
	for i, v := range x {
		xs[i] = float64(v)
	}
	// Restart r has its own random stream, so restarts run in any order.
	runs := make([]*Model, c.NInit)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(c.Threads, c.NInit) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x6b6d65616e73+uint64(r)))
				m := &Model{K: c.K, D: d, Centers: plusPlus(x, n, d, c.K, rng)}
				m.lloyd(xs, n, c.MaxIter, c.Tol)
				runs[r] = m
			}
		}()
	}
	var err error
	for r := range c.NInit {
		if err = ctx.Err(); err != nil {
			break
		}
		next <- r
	}
	close(next)
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("kmeans: %w", err)
	}
	best := runs[0]
	for _, m := range runs[1:] {
		if m.Inertia < best.Inertia {
			best = m
		}
	}
	return best, nil
}

func dist2(a []float32, c []float64) float64 {
	s := 0.0
	for j, v := range a {
		t := float64(v) - c[j]
		s += t * t
	}
	return s
}

// plusPlus is k-means++ seeding (Arthur and Vassilvitskii 2007).
func plusPlus(x []float32, n, d, k int, rng *rand.Rand) []float64 {
	cs := make([]float64, 0, k*d)
	add := func(i int) {
		for _, v := range x[i*d : (i+1)*d] {
			cs = append(cs, float64(v))
		}
	}
	add(rng.IntN(n))
	dd := make([]float64, n)
	for i := range n {
		dd[i] = dist2(x[i*d:(i+1)*d], cs[:d])
	}
	for c := 1; c < k; c++ {
		sum := 0.0
		for _, v := range dd {
			sum += v
		}
		pick := n - 1
		if sum > 0 {
			r := rng.Float64() * sum
			for i, v := range dd {
				if r -= v; r < 0 {
					pick = i
					break
				}
			}
		} else {
			pick = rng.IntN(n)
		}
		add(pick)
		for i := range n {
			dd[i] = min(dd[i], dist2(x[i*d:(i+1)*d], cs[c*d:(c+1)*d]))
		}
	}
	return cs
}

// lloyd runs Lloyd iterations from m.Centers on xs (n rows, float64)
// with Hamerly's bounds (Hamerly 2010): per row an upper bound on the
// distance to its centre and a lower bound on the distance to any other;
// a row whose upper bound is below both its lower bound and half the
// distance from its centre to the nearest other centre keeps its centre
// without computing distances. Assignments are those of plain Lloyd
// (up to ties).
func (m *Model) lloyd(xs []float64, n, maxIter int, tol float64) {
	d, k := m.D, m.K
	assign := make([]int, n)
	upper := make([]float64, n)
	lower := make([]float64, n)
	sums := make([]float64, k*d)
	counts := make([]int, k)
	moved := make([]float64, k)
	half := make([]float64, k)
	full := func(i int) {
		row := xs[i*d : (i+1)*d]
		b1, b2 := math.Inf(1), math.Inf(1)
		bc := 0
		for c := range k {
			v := sqdist(row, m.Centers[c*d:(c+1)*d])
			if v < b1 {
				b2, b1, bc = b1, v, c
			} else if v < b2 {
				b2 = v
			}
		}
		assign[i], upper[i], lower[i] = bc, math.Sqrt(b1), math.Sqrt(b2)
	}
	for i := range n {
		full(i)
	}
	for it := 1; ; it++ {
		m.Iter = it
		clear(sums)
		clear(counts)
		for i := range n {
			c := assign[i]
			counts[c]++
			s := sums[c*d : (c+1)*d]
			for j, v := range xs[i*d : (i+1)*d] {
				s[j] += v
			}
		}
		shift := 0.0
		for c := range k {
			moved[c] = 0
			if counts[c] == 0 {
				continue // an empty cluster keeps its centre
			}
			s := 0.0
			for j := range d {
				v := sums[c*d+j] / float64(counts[c])
				t := v - m.Centers[c*d+j]
				s += t * t
				m.Centers[c*d+j] = v
			}
			moved[c] = math.Sqrt(s)
			shift = max(shift, s)
		}
		if shift <= tol || it >= maxIter {
			break
		}
		// The bounds follow the centres' moves.
		far, p1, p2 := 0, 0.0, 0.0
		for c, p := range moved {
			if p > p1 {
				far, p2, p1 = c, p1, p
			} else if p > p2 {
				p2 = p
			}
		}
		for i := range n {
			upper[i] += moved[assign[i]]
			if assign[i] == far {
				lower[i] -= p2
			} else {
				lower[i] -= p1
			}
		}
		for c := range k {
			h := math.Inf(1)
			for o := range k {
				if o != c {
					h = min(h, sqdist(m.Centers[c*d:(c+1)*d], m.Centers[o*d:(o+1)*d]))
				}
			}
			half[c] = math.Sqrt(h) / 2
		}
		for i := range n {
			z := max(half[assign[i]], lower[i])
			if upper[i] <= z {
				continue
			}
			c := assign[i]
			upper[i] = math.Sqrt(sqdist(xs[i*d:(i+1)*d], m.Centers[c*d:(c+1)*d]))
			if upper[i] <= z {
				continue
			}
			full(i)
		}
	}
	// inertia for the final centres
	m.Inertia = 0
	for i := range n {
		row := xs[i*d : (i+1)*d]
		bd := math.Inf(1)
		for c := range k {
			bd = min(bd, sqdist(row, m.Centers[c*d:(c+1)*d]))
		}
		m.Inertia += bd
	}
}

func sqdist(a, b []float64) float64 {
	b = b[:len(a)]
	s := 0.0
	for j, v := range a {
		t := v - b[j]
		s += t * t
	}
	return s
}

func (m *Model) nearest(row []float32) (int, float64) {
	best, bd := 0, math.Inf(1)
	for c := range m.K {
		if v := dist2(row, m.Centers[c*m.D:(c+1)*m.D]); v < bd {
			best, bd = c, v
		}
	}
	return best, bd
}

// Predict returns the nearest centre of each of the n rows in x.
func (m *Model) Predict(x []float32, n int) []int {
	out := make([]int, n)
	for i := range n {
		out[i], _ = m.nearest(x[i*m.D : (i+1)*m.D])
	}
	return out
}

// ARI is the adjusted Rand index of two labelings (Hubert and Arabie
// 1985): 1 for identical partitions, about 0 for random ones.
func ARI(a, b []int) float64 {
	type pair struct{ a, b int }
	nij := map[pair]float64{}
	ai := map[int]float64{}
	bj := map[int]float64{}
	for i := range a {
		nij[pair{a[i], b[i]}]++
		ai[a[i]]++
		bj[b[i]]++
	}
	c2 := func(x float64) float64 { return x * (x - 1) / 2 }
	var sij, sa, sb float64
	for _, v := range nij {
		sij += c2(v)
	}
	for _, v := range ai {
		sa += c2(v)
	}
	for _, v := range bj {
		sb += c2(v)
	}
	exp := sa * sb / c2(float64(len(a)))
	mx := (sa + sb) / 2
	if mx == exp {
		return 1
	}
	return (sij - exp) / (mx - exp)
}

type fileJSON struct {
	Format  string      `json:"format"`
	K       int         `json:"k"`
	D       int         `json:"d"`
	Inertia float64     `json:"inertia"`
	Centers [][]float64 `json:"centers"`
}

const formatName = "teeml-kmeans-v1"

// Write writes m as JSON.
func Write(w io.Writer, m *Model) error {
	f := fileJSON{Format: formatName, K: m.K, D: m.D, Inertia: m.Inertia}
	for c := range m.K {
		f.Centers = append(f.Centers, m.Centers[c*m.D:(c+1)*m.D])
	}
	e := json.NewEncoder(w)
	e.SetIndent("", " ")
	return e.Encode(f)
}

// Parse reads a model written by Write; name labels errors.
func Parse(r io.Reader, name string) (*Model, error) {
	var f fileJSON
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("kmeans model %s: %w", name, err)
	}
	if f.Format != formatName {
		return nil, fmt.Errorf("kmeans model %s: format %q, want %q", name, f.Format, formatName)
	}
	if f.K < 1 || f.D < 1 || len(f.Centers) != f.K || f.K > 1<<20 || f.D > 1<<20 {
		return nil, fmt.Errorf("kmeans model %s: k %d, d %d, %d centres: inconsistent", name, f.K, f.D, len(f.Centers))
	}
	m := &Model{K: f.K, D: f.D, Inertia: f.Inertia}
	for c, row := range f.Centers {
		if len(row) != f.D {
			return nil, fmt.Errorf("kmeans model %s: centre %d has %d values, want %d", name, c, len(row), f.D)
		}
		m.Centers = append(m.Centers, row...)
	}
	return m, nil
}
