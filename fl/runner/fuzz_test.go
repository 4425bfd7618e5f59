package runner

import (
	"bytes"
	"math"
	"testing"

	"github.com/teeml/teeml/ml/safetensors"
)

// FuzzParseMetrics: any metrics.json either fails with an error or yields
// a positive example count within the rows and finite values.
func FuzzParseMetrics(f *testing.F) {
	for _, s := range []string{okMetrics, `{"num_examples": 4}`, `{"num_examples": 1.5}`, `{"num_examples": 4, "loss": NaN}`,
		`{"num_examples": 4, "metrics": {"Bad Name": 1}}`, `{"num_examples": 4} {}`, `{"num_examples": 1e999}`, `[]`, ``} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, needLoss bool) {
		m, err := parseMetrics(data, needLoss, 4)
		if err != nil {
			return
		}
		if m.n < 1 || m.n > 4 || math.IsNaN(m.loss) || math.IsInf(m.loss, 0) {
			t.Fatalf("accepted %q: %+v", data, m)
		}
		for k, v := range m.metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) || (k != "train_loss" && !metricName(k)) {
				t.Fatalf("accepted metric %q=%v", k, v)
			}
		}
	})
}

// FuzzCheckWeights: any output file either fails or matches the global
// model exactly in names and shapes, with finite values.
func FuzzCheckWeights(f *testing.F) {
	var ok bytes.Buffer
	safetensors.Write(&ok, global(), nil)
	f.Add(ok.Bytes())
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := checkWeights(data, global())
		if err != nil {
			return
		}
		if err := global().Compatible(w); err != nil {
			t.Fatal(err)
		}
		if err := w.AllFinite(); err != nil {
			t.Fatal(err)
		}
	})
}
