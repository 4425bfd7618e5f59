package kmeans

import (
	"bytes"
	"context"
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
