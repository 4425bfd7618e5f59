package trees

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/trees/treetest"
)

// TestLoadModelMatchesReference: LightGBM and XGBoost models trained by
// those libraries predict, through LoadModel, what the libraries recorded
// (≤ 1e-6; relative above 1).
func TestLoadModelMatchesReference(t *testing.T) {
	for _, c := range treetest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			b, err := os.ReadFile(c.Model)
			if err != nil {
				t.Fatal(err)
			}
			p, err := LoadModel(b, c.Name)
			if err != nil {
				t.Fatal(err)
			}
			if string(p.Format) != c.Format || p.Classes != c.Classes {
				t.Fatalf("format %s, %d classes; want %s, %d", p.Format, p.Classes, c.Format, c.Classes)
			}
			in, want := c.Rows(t)
			if len(in) != len(want) || len(in) == 0 {
				t.Fatalf("%d input rows, %d reference rows", len(in), len(want))
			}
			x := make([]float64, 0, len(in)*p.Features)
			for _, row := range in {
				if len(row) != p.Features {
					t.Fatalf("input row of %d features, model has %d", len(row), p.Features)
				}
				x = append(x, row...)
			}
			got, err := p.Predict64(x, len(in))
			if err != nil {
				t.Fatal(err)
			}
			// ≤ 1e-6, relative to the value's size above 1: XGBoost adds its
			// trees in float32, so a regression value near 150 is only known
			// to ~1e-5 (probabilities are within 1e-6 absolutely).
			k := p.Outputs()
			worst := 0.0
			for i, w := range want {
				g := got[i*k : (i+1)*k]
				if len(w) == 1 && k == 2 {
					g = g[1:] // the reference holds p(class 1)
				}
				if len(w) != len(g) {
					t.Fatalf("row %d: %d reference values, %d predicted", i, len(w), len(g))
				}
				for j := range w {
					worst = max(worst, math.Abs(g[j]-w[j])/max(1, math.Abs(w[j])))
				}
			}
			t.Logf("%d rows, max |teeml - reference| / max(1, |reference|) = %.3g", len(in), worst)
			if worst > 1e-6 {
				t.Fatalf("max difference %.3g > 1e-6", worst)
			}
		})
	}
}

// TestLoadModelTeeml: teeml's own files are predicted natively, binary
// probabilities expanded to both classes.
func TestLoadModelTeeml(t *testing.T) {
	train, test := loadSplit(t, "breast_cancer")
	m, err := TrainGBDT(context.Background(), train, GBDTConfig{Iterations: 5, NumLeaves: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m.Params = map[string]string{"teeml.dataset": "breast_cancer"}
	var buf bytes.Buffer
	if err := WriteText(&buf, m); err != nil {
		t.Fatal(err)
	}
	p, err := LoadModel(buf.Bytes(), "m.txt")
	if err != nil {
		t.Fatal(err)
	}
	if p.Format != FormatTeeml || p.Classes != 2 || p.Features != test.D || p.Native == nil {
		t.Fatalf("format %s, %d classes, %d features", p.Format, p.Classes, p.Features)
	}
	got, err := p.Predict(test.X, test.N)
	if err != nil {
		t.Fatal(err)
	}
	for i := range test.N {
		q := m.Predict(test.Row(i))[0]
		if got[2*i+1] != q || got[2*i] != 1-q {
			t.Fatalf("row %d: %v, want [%v %v]", i, got[2*i:2*i+2], 1-q, q)
		}
	}
	if _, err := p.Predict(test.X[:5], 1); err == nil {
		t.Error("5 values for one row of 30 accepted")
	}
}

// corruptions of a model file: truncations at several points, flipped
// bytes, and files of another kind.
func corruptions(b []byte) map[string][]byte {
	out := map[string][]byte{
		"empty":   {},
		"garbage": []byte("hello world\n"),
		"json":    []byte(`{"learner": {}}`),
	}
	for _, frac := range []int{1, 10, 50, 90, 99} {
		out["truncated at "+strconv.Itoa(frac)+"%"] = b[:len(b)*frac/100]
	}
	if len(b) > 400 {
		flipped := bytes.Clone(b)
		for i := 140; i < len(flipped); i += 97 {
			flipped[i] ^= 0xff
		}
		out["flipped bytes"] = flipped
	}
	return out
}

// TestLoadModelCorrupt: a corrupt or truncated model file of each format is
// refused with one line naming the file.
func TestLoadModelCorrupt(t *testing.T) {
	for _, c := range treetest.Cases(t) {
		b, err := os.ReadFile(c.Model)
		if err != nil {
			t.Fatal(err)
		}
		for what, bad := range corruptions(b) {
			_, err := LoadModel(bad, "bad.model")
			if err == nil {
				t.Errorf("%s %s: accepted", c.Name, what)
				continue
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "model bad.model: ") || strings.Contains(msg, "\n") || errors.Is(err, errLeaves) {
				t.Errorf("%s %s: error %q: want one line naming the file, refused by teeml's checks", c.Name, what, msg)
			}
		}
	}
}

func FuzzLoadModel(f *testing.F) {
	// every fixture but the 65 kB digits model (large inputs slow the
	// fuzzer's minimisation down to a crawl)
	for _, c := range treetest.Cases(f) {
		if b, err := os.ReadFile(c.Model); err == nil && len(b) < 32<<10 {
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	for _, p := range []string{"testdata/gbdt.txt", "testdata/rf.txt"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("binf"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := LoadModel(b, "fuzz")
		if err != nil {
			if strings.Contains(err.Error(), "\n") || errors.Is(err, errLeaves) {
				t.Fatalf("error %q", err)
			}
			return
		}
		x := make([]float32, 2*p.Features)
		for i := p.Features; i < len(x); i++ {
			x[i] = float32(math.NaN())
		}
		if _, err := p.Predict(x, 2); err != nil {
			t.Fatalf("predict on an accepted model: %v", err)
		}
	})
}
