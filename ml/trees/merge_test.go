package trees

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

func shards(t *testing.T, ds *datasets.Dataset, n int) []*datasets.Dataset {
	t.Helper()
	s, err := datasets.PartitionIID(ds, n, 5)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMergeGBDTAveragesRawScores: the merged boosted model's raw score is
// the mean of the shards' (to rounding), on every test row and output,
// also after a round trip through model.txt; on IID shards of digits it
// classifies about as well as one model on all rows.
func TestMergeGBDTAveragesRawScores(t *testing.T) {
	train, test := loadSplit(t, "digits")
	ctx := context.Background()
	var parts []*Model
	for _, s := range shards(t, train, 3) {
		m, err := TrainGBDT(ctx, s, GBDTConfig{Iterations: 60, LR: 0.1, NumLeaves: 15, MinDataInLeaf: 5, Seed: 1, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, m)
	}
	merged, err := Merge(parts...)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, merged); err != nil {
		t.Fatal(err)
	}
	back, err := ParseText(&buf, "merged.txt")
	if err != nil {
		t.Fatal(err)
	}
	for i := range test.N {
		x := test.Row(i)
		want := make([]float64, merged.K())
		for _, p := range parts {
			for k, v := range p.Raw(x) {
				want[k] += v / float64(len(parts))
			}
		}
		for name, m := range map[string]*Model{"merged": merged, "reparsed": back} {
			for k, v := range m.Raw(x) {
				if math.Abs(v-want[k]) > 1e-9 {
					t.Fatalf("%s: row %d output %d: raw %v, mean of shards %v", name, i, k, v, want[k])
				}
			}
		}
	}
	acc := Evaluate(merged, test).Accuracy
	best := 0.0
	for _, p := range parts {
		best = max(best, Evaluate(p, test).Accuracy)
	}
	t.Logf("digits gbdt, 3 IID shards: merged accuracy %.4f, best single shard %.4f", acc, best)
	if acc < best {
		t.Errorf("merged accuracy %.4f below the best shard's %.4f", acc, best)
	}
}

// TestMergeForestsConcatenates: a merged forest predicts the tree-count
// weighted mean of the shards' forests.
func TestMergeForestsConcatenates(t *testing.T) {
	train, test := loadSplit(t, "breast_cancer")
	ctx := context.Background()
	var parts []*Model
	for i, s := range shards(t, train, 2) {
		m, err := TrainForest(ctx, s, ForestConfig{Trees: 10 + 20*i, Seed: int64(i), Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, m)
	}
	merged, err := Merge(parts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Trees) != 40 {
		t.Fatalf("merged forest has %d trees, want 40", len(merged.Trees))
	}
	for i := range test.N {
		x := test.Row(i)
		want := (10*parts[0].Predict(x)[0] + 30*parts[1].Predict(x)[0]) / 40
		if got := merged.Predict(x)[0]; math.Abs(got-want) > 1e-12 {
			t.Fatalf("row %d: merged %v, weighted mean %v", i, got, want)
		}
	}
	t.Logf("breast_cancer rf, 2 shards: merged accuracy %.4f", Evaluate(merged, test).Accuracy)
}

func TestMergeRefusesMixedModels(t *testing.T) {
	train, _ := loadSplit(t, "breast_cancer")
	ctx := context.Background()
	rf, err := TrainForest(ctx, train, ForestConfig{Trees: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := TrainGBDT(ctx, train, GBDTConfig{Iterations: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	renamed := *gb
	renamed.FeatureNames = append([]string{"other"}, gb.FeatureNames[1:]...)
	for name, c := range map[string]struct {
		models []*Model
		want   string
	}{
		"none":     {nil, "no models"},
		"kinds":    {[]*Model{rf, gb}, "not the same kind"},
		"features": {[]*Model{gb, &renamed}, "feature names differ"},
		"empty":    {[]*Model{gb, {Objective: gb.Objective}}, "no trees"},
	} {
		_, err := Merge(c.models...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line with %q", name, err, c.want)
		}
	}
	// the shards' models are untouched by a merge
	before := gb.Trees[0].LeafValue[0]
	if _, err := Merge(gb, gb); err != nil {
		t.Fatal(err)
	}
	if gb.Trees[0].LeafValue[0] != before {
		t.Error("Merge scaled the input model's leaves")
	}
}
