package treefed

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ml/trees"
)

func shards(t *testing.T, name string, n int) (parts []*datasets.Dataset, test *datasets.Dataset) {
	t.Helper()
	train, test, err := datasets.LoadSplit(name, 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	parts, err = datasets.PartitionIID(train, n, 7)
	if err != nil {
		t.Fatal(err)
	}
	return parts, test
}

// TestTrainerAndMerge: three trainers' weights merge into the model
// trees.Merge builds from the decoded ensembles, with the same predictions;
// the round's report counts every client.
func TestTrainerAndMerge(t *testing.T) {
	parts, test := shards(t, "breast_cancer", 3)
	ctx := context.Background()
	var results []strategy.FitResult
	var models []*trees.Model
	for i, p := range parts {
		tr := &Trainer{Config: Config{Model: "gbdt", Trees: 20, NumLeaves: 8, LR: 0.1, Seed: 1, Threads: 1}, Data: p, Validation: test}
		w, n, met, err := tr.Train(ctx, Empty(), map[string]float64{strategy.KeyRound: 1})
		if err != nil {
			t.Fatal(err)
		}
		if n != p.N || met["trees"] != 20 {
			t.Fatalf("shard %d: n=%d metrics %v", i, n, met)
		}
		m, err := Decode(w, "shard")
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
		results = append(results, strategy.FitResult{Client: []string{"a", "b", "c"}[i], Weights: w, NumExamples: n})
	}
	s := &Merge{}
	w, rep, err := s.AggregateFit(1, Empty(), results)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Accepted) != 3 || rep.NumExamples != parts[0].N+parts[1].N+parts[2].N {
		t.Fatalf("report %+v", rep)
	}
	got, err := Decode(w, "merged")
	if err != nil {
		t.Fatal(err)
	}
	want, err := trees.Merge(models...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range test.N {
		a, b := got.Raw(test.Row(i))[0], want.Raw(test.Row(i))[0]
		if math.Abs(a-b) > 1e-12 {
			t.Fatalf("row %d: merged through weights %v, trees.Merge %v", i, a, b)
		}
	}
	n, _, met, err := (&Trainer{Data: test}).Evaluate(ctx, w)
	if err != nil || n != test.N || met["accuracy"] < 0.9 {
		t.Fatalf("evaluate merged: n=%d metrics %v err %v", n, met, err)
	}
	if n, _, _, err := (&Trainer{Data: test}).Evaluate(ctx, Empty()); err != nil || n != 0 {
		t.Fatalf("evaluate the empty model: n=%d err %v, want 0 examples", n, err)
	}
}

// TestMergeRejects: a result that is not a model, or a model of another
// kind, is rejected with a one-line reason; too few left fails the round.
func TestMergeRejects(t *testing.T) {
	parts, _ := shards(t, "breast_cancer", 2)
	ctx := context.Background()
	gb, err := Train(ctx, parts[0], Config{Model: "gbdt", Trees: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rf, err := Train(ctx, parts[1], Config{Model: "rf", Trees: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	wg, _ := Encode(gb)
	wr, _ := Encode(rf)
	notByte := tensor.Weights{{Name: TensorName, Shape: []int{2}, Data: []float32{65, 300}}}
	garbage := tensor.Weights{{Name: TensorName, Shape: []int{3}, Data: []float32{'a', 'b', '\n'}}}
	_, rep, err := (&Merge{MinAccepted: 2}).AggregateFit(1, Empty(), []strategy.FitResult{
		{Client: "gbdt", Weights: wg, NumExamples: 10},
		{Client: "rf", Weights: wr, NumExamples: 10},
		{Client: "notbyte", Weights: notByte, NumExamples: 10},
		{Client: "garbage", Weights: garbage, NumExamples: 10},
		{Client: "empty", Weights: Empty(), NumExamples: 10},
		{Client: "zero", Weights: wg, NumExamples: 0},
	})
	if err == nil {
		t.Fatal("round with one acceptable model out of 2 needed succeeded")
	}
	if len(rep.Accepted) != 1 || rep.Accepted[0] != "gbdt" {
		t.Fatalf("accepted %v, want [gbdt]", rep.Accepted)
	}
	for _, c := range []string{"rf", "notbyte", "garbage", "empty", "zero"} {
		why := rep.Rejected[c]
		if why == "" || strings.Contains(why, "\n") || !strings.Contains(why, c) {
			t.Errorf("%s: rejection %q", c, why)
		}
		t.Logf("%s: %s", c, why)
	}
}

// FuzzDecode: any weights a collaborator uploads decode to a model or an
// error, never a panic.
func FuzzDecode(f *testing.F) {
	train, _, err := datasets.LoadSplit("breast_cancer", 0.2, 1)
	if err != nil {
		f.Fatal(err)
	}
	m, err := Train(context.Background(), train, Config{Model: "gbdt", Trees: 3, NumLeaves: 4, Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	w, _ := Encode(m)
	b, _ := Bytes(w)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(emptyText))
	f.Fuzz(func(t *testing.T, b []byte) {
		data := make([]float32, len(b))
		for i, c := range b {
			data[i] = float32(c)
		}
		m, err := Decode(tensor.Weights{{Name: TensorName, Shape: []int{len(b)}, Data: data}}, "fuzz")
		if err == nil {
			_ = m.Raw(make([]float32, len(m.FeatureNames)))
		}
	})
}
