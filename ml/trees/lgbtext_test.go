package trees

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmitryikh/leaves"

	"github.com/teeml/teeml/ml/datasets"
)

// TestLeavesLoadsModels writes teeml's models in LightGBM's format, loads
// them with github.com/dmitryikh/leaves and with ParseText, and checks all
// three predict the same on the test rows.
func TestLeavesLoadsModels(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, dataset string
		train         func(*datasets.Dataset) (*Model, error)
	}{
		{"gbdt binary", "breast_cancer", func(d *datasets.Dataset) (*Model, error) {
			return TrainGBDT(ctx, d, GBDTConfig{Iterations: 30, NumLeaves: 8, Seed: 1})
		}},
		{"gbdt binary categorical+missing", "credit", func(d *datasets.Dataset) (*Model, error) {
			return TrainGBDT(ctx, d, GBDTConfig{Iterations: 30, NumLeaves: 15, Seed: 1})
		}},
		{"gbdt multiclass", "digits", func(d *datasets.Dataset) (*Model, error) {
			return TrainGBDT(ctx, d, GBDTConfig{Iterations: 10, NumLeaves: 8, MinDataInLeaf: 5, Seed: 1})
		}},
		{"gbdt regression", "diabetes", func(d *datasets.Dataset) (*Model, error) {
			return TrainGBDT(ctx, d, GBDTConfig{Iterations: 30, NumLeaves: 8, Seed: 1})
		}},
		{"rf binary", "breast_cancer", func(d *datasets.Dataset) (*Model, error) {
			return TrainForest(ctx, d, ForestConfig{Trees: 10, Seed: 1})
		}},
		{"rf multiclass", "digits", func(d *datasets.Dataset) (*Model, error) {
			return TrainForest(ctx, d, ForestConfig{Trees: 10, Seed: 1})
		}},
		{"rf regression", "diabetes", func(d *datasets.Dataset) (*Model, error) {
			return TrainForest(ctx, d, ForestConfig{Trees: 10, MinLeaf: 5, Seed: 1})
		}},
		{"rf categorical+missing", "credit", func(d *datasets.Dataset) (*Model, error) {
			return TrainForest(ctx, d, ForestConfig{Trees: 10, MinLeaf: 5, Seed: 1})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			train, test := loadSplit(t, c.dataset)
			m, err := c.train(train)
			if err != nil {
				t.Fatal(err)
			}
			// a parameters section after the trees, as LightGBM writes one
			m.Params = map[string]string{"teeml.dataset": c.dataset, "teeml.split.seed": "1"}
			var buf bytes.Buffer
			if err := WriteText(&buf, m); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "model.txt")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			lv, err := leaves.LGEnsembleFromFile(path, true)
			if err != nil {
				t.Fatalf("leaves: %v", err)
			}
			back, err := ParseText(bytes.NewReader(buf.Bytes()), "model.txt")
			if err != nil {
				t.Fatal(err)
			}
			if back.Params["teeml.dataset"] != c.dataset || back.Params["teeml.split.seed"] != "1" || len(back.Params) != 2 {
				t.Errorf("parameters read back as %v", back.Params)
			}
			out := make([]float64, lv.NOutputGroups())
			fv := make([]float64, test.D)
			for i := range test.N {
				for j, v := range test.Row(i) {
					fv[j] = float64(v)
				}
				if err := lv.Predict(fv, 0, out); err != nil {
					t.Fatal(err)
				}
				want := m.Predict(test.Row(i))
				got := back.Predict(test.Row(i))
				if len(out) != len(want) || len(got) != len(want) {
					t.Fatalf("row %d: %d outputs from leaves, %d reparsed, want %d", i, len(out), len(got), len(want))
				}
				for j := range want {
					if math.Abs(out[j]-want[j]) > 1e-6 || math.Abs(got[j]-want[j]) > 1e-12 {
						t.Fatalf("row %d output %d: teeml %v, leaves %v, reparsed %v", i, j, want[j], out[j], got[j])
					}
				}
			}
		})
	}
}

func TestParseTextErrors(t *testing.T) {
	train, _ := loadSplit(t, "breast_cancer")
	m, err := TrainGBDT(context.Background(), train, GBDTConfig{Iterations: 3, NumLeaves: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, m); err != nil {
		t.Fatal(err)
	}
	good := buf.String()
	for name, text := range map[string]string{
		"truncated":   good[:len(good)/2],
		"no end":      strings.TrimSuffix(good, "end of trees\n"),
		"bad version": strings.Replace(good, "version=v3", "version=v9", 1),
		"bad child":   strings.Replace(good, "left_child=", "left_child=7", 1),
		"not a model": "hello\n",
	} {
		_, err := ParseText(strings.NewReader(text), "m.txt")
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "model m.txt: line ") || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q: want one line naming the file and line", name, msg)
		}
	}
}

func FuzzParseModel(f *testing.F) {
	for _, p := range []string{"testdata/gbdt.txt", "testdata/rf.txt"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("tree\nversion=v3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseText(bufio.NewReader(bytes.NewReader(b)), "fuzz")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		x := make([]float32, len(m.FeatureNames))
		_ = m.Predict(x)
		for i := range x {
			x[i] = float32(math.NaN())
		}
		_ = m.Predict(x)
	})
}
