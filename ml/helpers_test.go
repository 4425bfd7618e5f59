package ml

import (
	"fmt"
	"math"

	"github.com/teeml/teeml/ml/datasets"
)

// blobs makes a synthetic classification dataset: k Gaussian clusters in d
// dimensions with unit-ish noise; sep scales the distance between centres.
func blobs(n, d, k int, sep float64, seed int64) *datasets.Dataset {
	r := newRNG(seed, 99)
	centres := make([][]float64, k)
	for c := range centres {
		centres[c] = make([]float64, d)
		for j := range centres[c] {
			centres[c][j] = r.normal() * sep
		}
	}
	ds := &datasets.Dataset{Name: fmt.Sprintf("blobs%d", k), Task: datasets.Classification, NumClasses: k, N: n, D: d,
		X: make([]float32, n*d), Y: make([]float32, n)}
	for j := 0; j < d; j++ {
		ds.Columns = append(ds.Columns, datasets.Column{Name: fmt.Sprintf("x%d", j)})
	}
	for i := 0; i < n; i++ {
		c := i % k
		ds.Y[i] = float32(c)
		for j := 0; j < d; j++ {
			ds.X[i*d+j] = float32(centres[c][j] + r.normal())
		}
	}
	return ds
}

// images makes a synthetic image classification dataset of h×w×1 images:
// class c is a bright bar at a class-dependent position plus noise.
func images(n, h, w, k int, seed int64) *datasets.Dataset {
	r := newRNG(seed, 98)
	d := h * w
	ds := &datasets.Dataset{Name: "bars", Task: datasets.Classification, NumClasses: k, N: n, D: d,
		ImageShape: []int{h, w, 1}, X: make([]float32, n*d), Y: make([]float32, n)}
	for j := 0; j < d; j++ {
		ds.Columns = append(ds.Columns, datasets.Column{Name: fmt.Sprintf("p%d", j)})
	}
	for i := 0; i < n; i++ {
		c := i % k
		ds.Y[i] = float32(c)
		horizontal := c%2 == 0
		pos := (c / 2) * (h / ((k + 1) / 2))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := 0.3 * r.float64()
				if (horizontal && y == pos) || (!horizontal && x == pos) {
					v += 0.7
				}
				ds.X[i*d+y*w+x] = float32(v)
			}
		}
	}
	return ds
}

// linear makes a regression dataset y = X·beta + 100 + noise.
func linear(n, d int, noise float64, seed int64) (*datasets.Dataset, []float64) {
	r := newRNG(seed, 97)
	beta := make([]float64, d)
	for j := range beta {
		beta[j] = 10 * r.normal()
	}
	ds := &datasets.Dataset{Name: "linear", Task: datasets.Regression, N: n, D: d, X: make([]float32, n*d), Y: make([]float32, n)}
	for j := 0; j < d; j++ {
		ds.Columns = append(ds.Columns, datasets.Column{Name: fmt.Sprintf("x%d", j)})
	}
	for i := 0; i < n; i++ {
		y := 100.0
		for j := 0; j < d; j++ {
			x := r.normal()
			ds.X[i*d+j] = float32(x)
			y += beta[j] * x
		}
		ds.Y[i] = float32(y + noise*r.normal())
	}
	return ds, beta
}

// tabular makes a binary dataset with numeric and categorical columns where
// the label depends on both.
func tabular(n int, seed int64) *datasets.Dataset {
	r := newRNG(seed, 96)
	cats := [][]string{{"a", "b", "c", "d"}, {"x", "y", "z"}}
	ds := &datasets.Dataset{Name: "tab", Task: datasets.Classification, NumClasses: 2, N: n, D: 5, X: make([]float32, n*5), Y: make([]float32, n)}
	ds.Columns = []datasets.Column{{Name: "n0"}, {Name: "c0", Categories: cats[0]}, {Name: "n1"}, {Name: "c1", Categories: cats[1]}, {Name: "n2"}}
	effect0 := []float64{-1.5, 0, 1, 2}
	effect1 := []float64{1, -1, 0}
	for i := 0; i < n; i++ {
		n0, n1, n2 := r.normal(), r.normal(), r.normal()
		c0, c1 := r.intn(4), r.intn(3)
		z := 1.2*n0 - 0.8*n1 + 0.3*n2*n0 + effect0[c0] + effect1[c1]
		p := 1 / (1 + math.Exp(-z))
		y := float32(0)
		if r.float64() < p {
			y = 1
		}
		copy(ds.X[i*5:], []float32{float32(n0), float32(c0), float32(n1), float32(c1), float32(n2)})
		ds.Y[i] = y
	}
	return ds
}

// split returns the first part of ds (rows [0, k)) and the rest.
func split(ds *datasets.Dataset, k int) (*datasets.Dataset, *datasets.Dataset) {
	a, b := *ds, *ds
	a.N, a.X, a.Y = k, ds.X[:k*ds.D], ds.Y[:k]
	b.N, b.X, b.Y = ds.N-k, ds.X[k*ds.D:], ds.Y[k:]
	return &a, &b
}

// olsRMSE fits ordinary least squares with intercept on train by normal equations and returns test RMSE.
func olsRMSE(tr, te *datasets.Dataset) float64 {
	d := tr.D + 1
	a := make([][]float64, d)
	for i := range a {
		a[i] = make([]float64, d+1)
	}
	row := make([]float64, d)
	for i := 0; i < tr.N; i++ {
		row[0] = 1
		for j := 0; j < tr.D; j++ {
			row[j+1] = float64(tr.X[i*tr.D+j])
		}
		for p := 0; p < d; p++ {
			for q := 0; q < d; q++ {
				a[p][q] += row[p] * row[q]
			}
			a[p][d] += row[p] * float64(tr.Y[i])
		}
	}
	for c := 0; c < d; c++ {
		piv := c
		for r := c + 1; r < d; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[piv][c]) {
				piv = r
			}
		}
		a[c], a[piv] = a[piv], a[c]
		for r := 0; r < d; r++ {
			if r == c {
				continue
			}
			f := a[r][c] / a[c][c]
			for k := c; k <= d; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	beta := make([]float64, d)
	for c := 0; c < d; c++ {
		beta[c] = a[c][d] / a[c][c]
	}
	var sse float64
	for i := 0; i < te.N; i++ {
		p := beta[0]
		for j := 0; j < te.D; j++ {
			p += beta[j+1] * float64(te.X[i*te.D+j])
		}
		e := p - float64(te.Y[i])
		sse += e * e
	}
	return math.Sqrt(sse / float64(te.N))
}
