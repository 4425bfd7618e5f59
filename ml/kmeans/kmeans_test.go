package kmeans

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

func TestDigitsARI(t *testing.T) {
	train, test, err := datasets.LoadSplit("digits", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Fit(context.Background(), train.X, train.N, train.D, Config{K: 10, NInit: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]int, test.N)
	for i, y := range test.Y {
		labels[i] = int(y)
	}
	ari := ARI(m.Predict(test.X, test.N), labels)
	t.Logf("digits kmeans k=10 test ARI=%.4f inertia=%.1f", ari, m.Inertia)
	// scikit-learn's KMeans reaches about 0.67 on digits; random is 0.
	if ari < 0.5 {
		t.Errorf("ARI %.4f < 0.5", ari)
	}
	again, _ := Fit(context.Background(), train.X, train.N, train.D, Config{K: 10, NInit: 10, Seed: 1})
	if again.Inertia != m.Inertia {
		t.Errorf("same seed, inertia %v then %v", m.Inertia, again.Inertia)
	}
	var buf bytes.Buffer
	if err := Write(&buf, m); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(&buf, "km.json")
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := m.Predict(test.X, test.N), back.Predict(test.X, test.N)
	for i := range p1 {
		if p1[i] != p2[i] {
			t.Fatalf("row %d: cluster %d, reparsed %d", i, p1[i], p2[i])
		}
	}
}

func TestARI(t *testing.T) {
	if v := ARI([]int{0, 0, 1, 1}, []int{1, 1, 0, 0}); v != 1 {
		t.Errorf("relabelled partition: ARI %v, want 1", v)
	}
	// sklearn.metrics.adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715
	if v := ARI([]int{0, 0, 1, 1}, []int{0, 0, 1, 2}); v < 0.5714 || v > 0.5715 {
		t.Errorf("ARI %v, want 0.5714", v)
	}
}

func FuzzParseModel(f *testing.F) {
	f.Add([]byte(`{"format":"teeml-kmeans-v1","k":1,"d":2,"inertia":0,"centers":[[1,2]]}`))
	f.Add([]byte(`{"format":"teeml-kmeans-v1","k":2,"d":1,"centers":[[1]]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(bytes.NewReader(b), "fuzz")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		_ = m.Predict(make([]float32, m.D), 1)
	})
}

// plainLloyd is textbook Lloyd: every distance, every iteration.
func plainLloyd(xs []float64, n, d, k int, centers []float64, iters int) []float64 {
	c := append([]float64(nil), centers...)
	for range iters {
		sums := make([]float64, k*d)
		counts := make([]int, k)
		for i := range n {
			best, bd := 0, 0.0
			for j := range k {
				if v := sqdist(xs[i*d:(i+1)*d], c[j*d:(j+1)*d]); j == 0 || v < bd {
					best, bd = j, v
				}
			}
			counts[best]++
			for f := range d {
				sums[best*d+f] += xs[i*d+f]
			}
		}
		for j := range k {
			if counts[j] > 0 {
				for f := range d {
					c[j*d+f] = sums[j*d+f] / float64(counts[j])
				}
			}
		}
	}
	return c
}

// TestHamerlyIsLloyd: the bounded iterations end at the centres plain
// Lloyd reaches from the same seeding in the same number of iterations.
func TestHamerlyIsLloyd(t *testing.T) {
	train, _, err := datasets.LoadSplit("digits", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	n, d := train.N, train.D
	xs := make([]float64, len(train.X))
	for i, v := range train.X {
		xs[i] = float64(v)
	}
	for seed := range uint64(3) {
		init := plusPlus(train.X, n, d, 10, rand.New(rand.NewPCG(seed, 1)))
		m := &Model{K: 10, D: d, Centers: append([]float64(nil), init...)}
		m.lloyd(xs, n, 300, 1e-4)
		want := plainLloyd(xs, n, d, 10, init, m.Iter)
		if m.Iter < 3 {
			t.Fatalf("seed %d: converged in %d iterations: too few to exercise the bounds", seed, m.Iter)
		}
		for i := range want {
			if math.Abs(want[i]-m.Centers[i]) > 1e-9 {
				t.Fatalf("seed %d after %d iterations: centre value %d is %v, plain Lloyd %v", seed, m.Iter, i, m.Centers[i], want[i])
			}
		}
	}
}

func TestThreadsDoNotMatter(t *testing.T) {
	train, _, err := datasets.LoadSplit("digits", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	fit := func(threads int) *Model {
		m, err := Fit(context.Background(), train.X, train.N, train.D, Config{K: 10, NInit: 5, Seed: 2, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := fit(1), fit(2)
	if a.Inertia != b.Inertia || !slices.Equal(a.Centers, b.Centers) {
		t.Errorf("1 thread: inertia %v; 2 threads: %v", a.Inertia, b.Inertia)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x := []float32{0, 1, 2, 3}
	if _, err := Fit(ctx, x, 4, 1, Config{K: 2}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
