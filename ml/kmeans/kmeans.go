// Package kmeans clusters rows with k-means: k-means++ seeding, Lloyd
// iterations, several restarts keeping the lowest inertia. It knows nothing
// of the CLI; models are a small JSON document (Write, Parse).
package kmeans

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
)

// Config configures Fit.
type Config struct {
	K       int
	NInit   int     // restarts, default 10
	MaxIter int     // Lloyd iterations per restart, default 300
	Tol     float64 // stop when no centre moves more than this (squared), default 1e-4
	Seed    int64
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
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x6b6d65616e73))
	var best *Model
	for range c.NInit {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("kmeans: %w", err)
		}
		m := &Model{K: c.K, D: d, Centers: plusPlus(x, n, d, c.K, rng)}
		m.lloyd(x, n, c.MaxIter, c.Tol)
		if best == nil || m.Inertia < best.Inertia {
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

func (m *Model) lloyd(x []float32, n, maxIter int, tol float64) {
	d, k := m.D, m.K
	assign := make([]int, n)
	sums := make([]float64, k*d)
	counts := make([]int, k)
	for it := 1; it <= maxIter; it++ {
		m.Iter = it
		m.Inertia = 0
		clear(sums)
		clear(counts)
		for i := range n {
			row := x[i*d : (i+1)*d]
			c, dist := m.nearest(row)
			assign[i] = c
			m.Inertia += dist
			counts[c]++
			for j, v := range row {
				sums[c*d+j] += float64(v)
			}
		}
		shift := 0.0
		for c := range k {
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
			shift = max(shift, s)
		}
		if shift <= tol {
			break
		}
	}
	// inertia for the final centres
	m.Inertia = 0
	for i := range n {
		_, dist := m.nearest(x[i*d : (i+1)*d])
		m.Inertia += dist
	}
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
