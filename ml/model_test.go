package ml

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
)

func mustNew(t testing.TB, kind string, spec Spec, seed int64) *Model {
	t.Helper()
	m, err := New(kind, spec, seed)
	if err != nil {
		t.Fatalf("New(%s): %v", kind, err)
	}
	return m
}

func mustTrain(t testing.TB, m *Model, ds *datasets.Dataset, cfg TrainConfig) {
	t.Helper()
	if err := m.Train(context.Background(), ds, cfg, nil); err != nil {
		t.Fatalf("Train(%s): %v", m.Kind(), err)
	}
}

func quickCfg(kind string, epochs int) TrainConfig {
	c := DefaultTrainConfig(kind)
	c.Epochs = epochs
	return c
}

func oneLineErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected an error containing %q, got nil", want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not mention %q", err, want)
	}
}

func TestNewErrors(t *testing.T) {
	cls := SpecFor(blobs(20, 4, 3, 1, 1))
	reg, _ := linear(20, 4, 1, 1)
	regSpec := SpecFor(reg)
	_, err := New("forest", cls, 1)
	oneLineErr(t, err, `unknown model kind "forest"`)
	_, err = New(KindCNN, cls, 1)
	oneLineErr(t, err, "cnn needs an image dataset")
	_, err = New(KindLogReg, regSpec, 1)
	oneLineErr(t, err, "logreg needs a classification dataset")
	_, err = New(KindLinReg, cls, 1)
	oneLineErr(t, err, "linreg needs a regression dataset")
	bad := SpecFor(images(10, 8, 8, 2, 1))
	bad.ImageShape = []int{8, 4, 1}
	_, err = New(KindCNN, bad, 1)
	oneLineErr(t, err, "does not match input dimension")
	// Wide&Deep without categorical columns is just a wide + deep dense model.
	if _, err := New(KindWideDeep, cls, 1); err != nil {
		t.Errorf("widedeep without categoricals: %v", err)
	}
	// All kinds except the image/task-specific ones accept a regression spec.
	for _, k := range []string{KindLinReg, KindMLP, KindWideDeep} {
		if _, err := New(k, regSpec, 1); err != nil {
			t.Errorf("%s on regression: %v", k, err)
		}
	}
}

func names(w tensor.Weights) []string {
	var out []string
	for _, t := range w {
		out = append(out, t.Name)
	}
	return out
}

func TestWeightNamesAndShapes(t *testing.T) {
	cls := SpecFor(blobs(20, 64, 10, 1, 1))
	w := mustNew(t, KindMLP, cls, 1).Weights()
	want := []string{"dense_0/weights", "dense_0/biases", "dense_1/weights", "dense_1/biases", "dense_2/weights", "dense_2/biases"}
	if !slices.Equal(names(w), want) {
		t.Fatalf("mlp weight names %v, want %v", names(w), want)
	}
	if !slices.Equal(w[0].Shape, []int{64, 128}) || !slices.Equal(w[2].Shape, []int{128, 64}) || !slices.Equal(w[4].Shape, []int{64, 10}) {
		t.Errorf("mlp shapes %v %v %v", w[0].Shape, w[2].Shape, w[4].Shape)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}

	cnn := mustNew(t, KindCNN, SpecFor(images(4, 28, 28, 10, 1)), 1).Weights()
	wantCNN := []string{"conv_0/weights", "conv_0/biases", "conv_1/weights", "conv_1/biases",
		"dense_0/weights", "dense_0/biases", "dense_1/weights", "dense_1/biases"}
	if !slices.Equal(names(cnn), wantCNN) {
		t.Fatalf("cnn weight names %v", names(cnn))
	}
	// BigDL's LeNet-5: conv 5×5→6, pool, conv 5×5→12, pool, 192→100→10.
	if !slices.Equal(cnn[0].Shape, []int{5, 5, 1, 6}) || !slices.Equal(cnn[2].Shape, []int{5, 5, 6, 12}) ||
		!slices.Equal(cnn[4].Shape, []int{192, 100}) || !slices.Equal(cnn[6].Shape, []int{100, 10}) {
		t.Errorf("LeNet-5 shapes: %v %v %v %v", cnn[0].Shape, cnn[2].Shape, cnn[4].Shape, cnn[6].Shape)
	}

	wd := mustNew(t, KindWideDeep, SpecFor(tabular(10, 1)), 1).Weights()
	wantWD := []string{"embedding_0/embeddings", "embedding_1/embeddings",
		"deep/dense_0/weights", "deep/dense_0/biases", "deep/dense_1/weights", "deep/dense_1/biases",
		"deep/dense_2/weights", "deep/dense_2/biases", "wide/weights"}
	if !slices.Equal(names(wd), wantWD) {
		t.Fatalf("widedeep weight names %v", names(wd))
	}
	// 3 numeric + 4 + 3 one-hot columns into one binary logit; deep tower
	// over 3 numeric + 2×8 embeddings.
	if !slices.Equal(wd[0].Shape, []int{4, 8}) || !slices.Equal(wd[2].Shape, []int{3 + 16, 64}) || !slices.Equal(wd[8].Shape, []int{10, 1}) {
		t.Errorf("widedeep shapes %v %v %v", wd[0].Shape, wd[2].Shape, wd[8].Shape)
	}

	lr := mustNew(t, KindLogReg, SpecFor(blobs(10, 7, 2, 1, 1)), 1).Weights()
	if !slices.Equal(names(lr), []string{"dense_0/weights", "dense_0/biases"}) || !slices.Equal(lr[0].Shape, []int{7, 1}) {
		t.Errorf("binary logreg: %v %v", names(lr), lr[0].Shape)
	}
}

func weightsEqual(a, b tensor.Weights) bool {
	if a.Compatible(b) != nil {
		return false
	}
	for i := range a {
		for j := range a[i].Data {
			if math.Float32bits(a[i].Data[j]) != math.Float32bits(b[i].Data[j]) {
				return false
			}
		}
	}
	return true
}

func TestInitDeterministic(t *testing.T) {
	for _, c := range []struct {
		kind string
		ds   *datasets.Dataset
	}{{KindMLP, blobs(10, 16, 4, 1, 1)}, {KindCNN, images(4, 8, 8, 3, 1)}, {KindWideDeep, tabular(10, 1)}, {KindLogReg, blobs(10, 5, 3, 1, 1)}} {
		a := mustNew(t, c.kind, SpecFor(c.ds), 7).Weights()
		b := mustNew(t, c.kind, SpecFor(c.ds), 7).Weights()
		d := mustNew(t, c.kind, SpecFor(c.ds), 8).Weights()
		if !weightsEqual(a, b) {
			t.Errorf("%s: same seed gave different initial weights", c.kind)
		}
		if weightsEqual(a, d) {
			t.Errorf("%s: different seeds gave identical initial weights", c.kind)
		}
		if err := a.AllFinite(); err != nil {
			t.Error(err)
		}
	}
	// A pinned value guards against silent changes of the initialiser, which
	// would break reproducibility across teeml versions.
	w := mustNew(t, KindLogReg, SpecFor(blobs(10, 5, 3, 1, 1)), 1).Weights()
	if got := w[0].Data[0]; got != -0.4858715 {
		t.Errorf("logreg seed 1 first weight = %v (initialiser changed?)", got)
	}
}

func TestTrainDeterministic(t *testing.T) {
	for _, c := range []struct {
		kind string
		ds   *datasets.Dataset
		cfg  TrainConfig
	}{
		{KindMLP, blobs(300, 16, 4, 0.7, 1), quickCfg(KindMLP, 2)},
		{KindMLP, blobs(300, 16, 4, 0.7, 1), TrainConfig{Epochs: 2, BatchSize: 50, Optimizer: "sgd", LR: 0.05, Momentum: 0.9, WeightDecay: 1e-4, Seed: 3}},
		{KindCNN, images(100, 8, 8, 4, 1), quickCfg(KindCNN, 1)},
		{KindWideDeep, tabular(200, 1), quickCfg(KindWideDeep, 1)},
	} {
		run := func(seed int64) tensor.Weights {
			m := mustNew(t, c.kind, SpecFor(c.ds), 5)
			cfg := c.cfg
			cfg.Seed = seed
			mustTrain(t, m, c.ds, cfg)
			return m.Weights()
		}
		a, b, other := run(1), run(1), run(2)
		if !weightsEqual(a, b) {
			t.Errorf("%s/%s: same seeds gave different trained weights", c.kind, c.cfg.Optimizer)
		}
		if weightsEqual(a, other) {
			t.Errorf("%s/%s: different shuffle seeds gave identical trained weights", c.kind, c.cfg.Optimizer)
		}
		init := mustNew(t, c.kind, SpecFor(c.ds), 5).Weights()
		if weightsEqual(a, init) {
			t.Errorf("%s: training did not change the weights", c.kind)
		}
	}
}

func TestWeightsRoundTrip(t *testing.T) {
	ds := blobs(400, 12, 3, 0.8, 2)
	tr, te := split(ds, 300)
	a := mustNew(t, KindMLP, SpecFor(tr), 1)
	mustTrain(t, a, tr, quickCfg(KindMLP, 2))
	w := a.Weights()

	b := mustNew(t, KindMLP, SpecFor(tr), 99) // different init, then overwritten
	if err := b.SetWeights(w); err != nil {
		t.Fatal(err)
	}
	if !weightsEqual(b.Weights(), w) {
		t.Fatal("Weights() after SetWeights differs")
	}
	pa, err := a.Predict(te)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.Predict(te)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pa, pb) {
		t.Fatal("predictions differ after a Weights/SetWeights round trip")
	}
	// SetWeights copies: mutating the caller's slice must not touch the model.
	w[0].Data[0] += 1
	if pc, _ := b.Predict(te); !slices.Equal(pa, pc) {
		t.Error("SetWeights kept a reference to the caller's data")
	}
	// Weights returns a copy too.
	w2 := b.Weights()
	w2[0].Data[0] += 1
	if pc, _ := b.Predict(te); !slices.Equal(pa, pc) {
		t.Error("Weights returned the model's own storage")
	}

	// FL round: SetWeights, then Train again, on a model that has trained before.
	if err := a.SetWeights(b.Weights()); err != nil {
		t.Fatal(err)
	}
	mustTrain(t, a, tr, quickCfg(KindMLP, 1))
	mustTrain(t, b, tr, quickCfg(KindMLP, 1))
	if !weightsEqual(a.Weights(), b.Weights()) {
		t.Error("identical weights + identical Train config gave different results (optimizer state leaked between calls?)")
	}
}

func TestSetWeightsErrors(t *testing.T) {
	m := mustNew(t, KindMLP, SpecFor(blobs(10, 8, 3, 1, 1)), 1)
	good := m.Weights()

	w := good.Clone()
	w[2] = tensor.Tensor{Name: w[2].Name, Shape: []int{128, 32}, Data: make([]float32, 128*32)}
	oneLineErr(t, m.SetWeights(w), `"dense_1/weights"`)

	w = good.Clone()
	w[1].Name = "dense_0/bias"
	oneLineErr(t, m.SetWeights(w), "dense_0/bias")

	oneLineErr(t, m.SetWeights(good[:4]), "6 tensors")

	w = good.Clone()
	w[5].Data[0] = float32(math.NaN())
	oneLineErr(t, m.SetWeights(w), "dense_2/biases")

	other := mustNew(t, KindMLP, SpecFor(blobs(10, 9, 3, 1, 1)), 1).Weights()
	oneLineErr(t, m.SetWeights(other), "dense_0/weights")

	if !weightsEqual(m.Weights(), good) {
		t.Error("a rejected SetWeights modified the model")
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	m := mustNew(t, KindWideDeep, SpecFor(tabular(50, 1)), 42)
	md := m.Metadata()
	r, err := NewFromMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind() != m.Kind() || r.Spec().JSON() != m.Spec().JSON() || r.Seed() != 42 {
		t.Fatalf("rebuilt %v from %v", r, m)
	}
	if !weightsEqual(r.Weights(), m.Weights()) {
		t.Error("rebuilt model has different initial weights")
	}
	s, err := ParseSpec(m.Spec().JSON())
	if err != nil || s.JSON() != m.Spec().JSON() {
		t.Errorf("spec JSON round trip: %v %s", err, s.JSON())
	}
	if _, err := NewFromMetadata(map[string]string{MetaKind: "mlp"}); err == nil {
		t.Error("metadata without spec accepted")
	}
	// The resolved spec carries the defaults.
	if sp := mustNew(t, KindMLP, SpecFor(blobs(10, 8, 3, 1, 1)), 1).Spec(); !slices.Equal(sp.Hidden, []int{128, 64}) {
		t.Errorf("mlp default hidden = %v", sp.Hidden)
	}
}

func TestTrainValidation(t *testing.T) {
	ds := blobs(30, 4, 3, 1, 1)
	m := mustNew(t, KindMLP, SpecFor(ds), 1)
	ctx := context.Background()
	cfg := quickCfg(KindMLP, 1)
	bad := cfg
	bad.Optimizer = "rmsprop"
	oneLineErr(t, m.Train(ctx, ds, bad, nil), `unknown optimizer "rmsprop"`)
	bad = cfg
	bad.LR = 0
	oneLineErr(t, m.Train(ctx, ds, bad, nil), "learning rate")

	wrongD := blobs(30, 5, 3, 1, 1)
	oneLineErr(t, m.Train(ctx, wrongD, cfg, nil), "expects 4")

	badLabel := *ds
	badLabel.Y = slices.Clone(ds.Y)
	badLabel.Y[3] = 7
	oneLineErr(t, m.Train(ctx, &badLabel, cfg, nil), "label 7 at row 3")

	nan := *ds
	nan.X = slices.Clone(ds.X)
	nan.X[9] = float32(math.NaN())
	oneLineErr(t, m.Train(ctx, &nan, cfg, nil), "row 2 column 1")

	reg, _ := linear(30, 4, 1, 1)
	oneLineErr(t, m.Train(ctx, reg, cfg, nil), "is regression")
}

func TestTrainCancelAndProgress(t *testing.T) {
	ds := blobs(200, 8, 3, 1, 1)
	m := mustNew(t, KindMLP, SpecFor(ds), 1)
	cfg := quickCfg(KindMLP, 3)
	cfg.BatchSize = 64 // 4 batches per epoch, the last one partial
	var calls [][2]int
	var epochs []EpochStats
	cfg.OnBatch = func(done, total int) { calls = append(calls, [2]int{done, total}) }
	if err := m.Train(context.Background(), ds, cfg, func(e EpochStats) { epochs = append(epochs, e) }); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 12 || calls[0] != [2]int{1, 12} || calls[11] != [2]int{12, 12} {
		t.Errorf("OnBatch calls %v", calls)
	}
	if len(epochs) != 3 || epochs[2].Epoch != 3 || epochs[0].Examples != 200 || !(epochs[2].Loss < epochs[0].Loss) || epochs[0].Seconds <= 0 {
		t.Errorf("epoch stats %+v", epochs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	before := m.Weights()
	n := 0
	cfg.OnBatch = func(done, total int) {
		n = done
		if done == 2 {
			cancel()
		}
	}
	err := m.Train(ctx, ds, cfg, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Train returned %v", err)
	}
	if n != 2 {
		t.Errorf("training went on for %d batches after cancellation at 2", n)
	}
	if weightsEqual(before, m.Weights()) {
		t.Error("the two completed steps were not kept")
	}
	if err := m.Weights().AllFinite(); err != nil {
		t.Error(err)
	}
}

func TestNoRecompile(t *testing.T) {
	ds := blobs(100, 8, 3, 1, 1)
	m := mustNew(t, KindMLP, SpecFor(ds), 1)
	cfg := quickCfg(KindMLP, 1)
	for range 3 {
		mustTrain(t, m, ds, cfg)
		if _, err := m.Evaluate(ds); err != nil {
			t.Fatal(err)
		}
		if err := m.SetWeights(m.Weights()); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.compiles.Load(); got != 2 { // one train step graph + one predict graph
		t.Errorf("%d graph compilations for 3 rounds of SetWeights/Train/Evaluate, want 2", got)
	}
	cfg.BatchSize = 16
	mustTrain(t, m, ds, cfg)
	if got := m.compiles.Load(); got != 3 {
		t.Errorf("a new batch size should compile once more: %d", got)
	}
}

func TestPredictShapes(t *testing.T) {
	bin := blobs(150, 6, 2, 1, 3)
	m := mustNew(t, KindLogReg, SpecFor(bin), 1)
	mustTrain(t, m, bin, quickCfg(KindLogReg, 20))
	p, err := m.Predict(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2*bin.N || m.OutputDim() != 2 {
		t.Fatalf("binary predict length %d", len(p))
	}
	for i := 0; i < bin.N; i++ {
		if s := p[2*i] + p[2*i+1]; math.Abs(float64(s)-1) > 1e-6 {
			t.Fatalf("row %d probabilities sum to %v", i, s)
		}
	}
	cls, err := m.PredictClasses(bin)
	if err != nil {
		t.Fatal(err)
	}
	met, err := m.Evaluate(bin)
	if err != nil {
		t.Fatal(err)
	}
	correct := 0
	for i, c := range cls {
		if float32(c) == bin.Y[i] {
			correct++
		}
	}
	if got := float64(correct) / float64(bin.N); math.Abs(got-met.Accuracy) > 1e-12 || !met.HasAUC() || met.AUC < 0.9 {
		t.Errorf("PredictClasses accuracy %v, Evaluate %v", got, met)
	}
	// PredictX on raw rows matches Predict; more rows than one eval batch.
	big := blobs(1300, 6, 2, 1, 3)
	pb, err := m.Predict(big)
	if err != nil {
		t.Fatal(err)
	}
	px, err := m.PredictX(big.X[6*1000:], 300)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pb[2*1000:], px) {
		t.Error("PredictX differs from Predict")
	}
	if _, err := m.PredictX(big.X[:10], 2); err == nil {
		t.Error("PredictX accepted a wrong length")
	}

	reg, _ := linear(50, 3, 1, 1)
	lm := mustNew(t, KindLinReg, SpecFor(reg), 1)
	pr, err := lm.Predict(reg)
	if err != nil || len(pr) != 50 {
		t.Fatalf("regression predict: %v %d", err, len(pr))
	}
	if _, err := lm.PredictClasses(reg); err == nil {
		t.Error("PredictClasses on regression accepted")
	}
}

func TestROCAUC(t *testing.T) {
	cases := []struct {
		scores []float64
		labels []float32
		want   float64
	}{
		{[]float64{0.1, 0.4, 0.35, 0.8}, []float32{0, 0, 1, 1}, 0.75}, // sklearn's example
		{[]float64{1, 2, 3, 4}, []float32{0, 0, 1, 1}, 1},
		{[]float64{1, 2, 3, 4}, []float32{1, 1, 0, 0}, 0},
		{[]float64{0.5, 0.5, 0.5, 0.5}, []float32{0, 1, 0, 1}, 0.5},     // all tied
		{[]float64{0.2, 0.5, 0.5, 0.9}, []float32{0, 0, 1, 1}, 0.875},   // one tie across classes
		{[]float64{3, 1, 2, 5, 4}, []float32{1, 0, 0, 1, 0}, 5.0 / 6.0}, // unsorted input
	}
	for _, c := range cases {
		got, ok := ROCAUC(c.scores, c.labels)
		if !ok || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ROCAUC(%v, %v) = %v, %v; want %v", c.scores, c.labels, got, ok, c.want)
		}
	}
	if _, ok := ROCAUC([]float64{1, 2}, []float32{1, 1}); ok {
		t.Error("AUC with a single class should not be ok")
	}
}

func TestRegressionMetrics(t *testing.T) {
	rmse, mae, r2 := regressionMetrics([]float64{1, 2, 3, 4}, []float32{1, 2, 3, 6})
	if math.Abs(rmse-1) > 1e-12 || math.Abs(mae-0.5) > 1e-12 || math.Abs(r2-(1-4.0/14)) > 1e-12 {
		t.Errorf("rmse %v mae %v r2 %v", rmse, mae, r2)
	}
}

func TestWideDeepCategoricals(t *testing.T) {
	ds := tabular(1200, 4)
	tr, te := split(ds, 1000)
	m := mustNew(t, KindWideDeep, SpecFor(tr), 1)
	mustTrain(t, m, tr, quickCfg(KindWideDeep, 8))
	met, err := m.Evaluate(te)
	if err != nil {
		t.Fatal(err)
	}
	if met.AUC < 0.8 {
		t.Errorf("widedeep on synthetic tabular data: %s", met)
	}
	// NaN and out-of-range categories are "unknown", not an error.
	odd := *te
	odd.X = slices.Clone(te.X)
	odd.X[1] = float32(math.NaN())
	odd.X[5+3] = 17
	if _, err := m.Evaluate(&odd); err != nil {
		t.Errorf("unknown categories: %v", err)
	}
	// NaN in a numeric column is still rejected.
	odd.X[0] = float32(math.NaN())
	oneLineErr(t, func() error { _, err := m.Evaluate(&odd); return err }(), "row 0 column 0")
}

func TestCNNSynthetic(t *testing.T) {
	ds := images(600, 8, 8, 6, 1)
	tr, te := split(ds, 480)
	m := mustNew(t, KindCNN, SpecFor(tr), 1)
	mustTrain(t, m, tr, quickCfg(KindCNN, 3))
	met, err := m.Evaluate(te)
	if err != nil {
		t.Fatal(err)
	}
	if met.Accuracy < 0.9 {
		t.Errorf("cnn on synthetic bars: %s", met)
	}
}

func TestLinRegSynthetic(t *testing.T) {
	ds, _ := linear(600, 5, 5, 1)
	tr, te := split(ds, 500)
	m := mustNew(t, KindLinReg, SpecFor(tr), 1)
	mustTrain(t, m, tr, DefaultTrainConfig(KindLinReg))
	met, err := m.Evaluate(te)
	if err != nil {
		t.Fatal(err)
	}
	ols := olsRMSE(tr, te)
	if met.RMSE > 1.03*ols {
		t.Errorf("linreg RMSE %.3f vs OLS %.3f (noise σ=5)", met.RMSE, ols)
	}
}

// TestConcurrentModels trains several models at once on the shared backend
// (as an FL simulation with parallel clients would) and checks each result
// is bit-identical to training alone; one model is also hit from two
// goroutines at once, which its mutex must serialise.
func TestConcurrentModels(t *testing.T) {
	ds := blobs(200, 10, 3, 0.8, 1)
	cfg := quickCfg(KindMLP, 2)
	want := make([]tensor.Weights, 3)
	for i := range want {
		m := mustNew(t, KindMLP, SpecFor(ds), int64(i))
		mustTrain(t, m, ds, cfg)
		want[i] = m.Weights()
	}
	got := make([]tensor.Weights, 3)
	errs := make(chan error, 5)
	done := make(chan struct{})
	shared := mustNew(t, KindMLP, SpecFor(ds), 0)
	for i := range got {
		go func() {
			m, err := New(KindMLP, SpecFor(ds), int64(i))
			if err == nil {
				err = m.Train(context.Background(), ds, cfg, nil)
			}
			if err == nil {
				got[i] = m.Weights()
			}
			errs <- err
		}()
	}
	go func() {
		for range 3 {
			if _, err := shared.Evaluate(ds); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	go func() {
		errs <- shared.Train(context.Background(), ds, cfg, nil)
		close(done)
	}()
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	<-done
	for i := range got {
		if !weightsEqual(got[i], want[i]) {
			t.Errorf("model %d trained concurrently differs from training alone", i)
		}
	}
	if !weightsEqual(shared.Weights(), want[0]) {
		t.Error("shared model (Train racing with Evaluate) differs from training alone")
	}
}

func TestSetThreads(t *testing.T) {
	defer SetThreads(0)
	SetThreads(1)
	if Threads() != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("SetThreads(1): Threads()=%d GOMAXPROCS=%d", Threads(), runtime.GOMAXPROCS(0))
	}
	if d := BackendDescription(); !strings.Contains(d, "parallelism=1") {
		t.Errorf("backend not limited to one worker: %s", d)
	}
	// Training still works (and gives the same result) with one thread.
	ds := blobs(100, 8, 3, 1, 1)
	one := mustNew(t, KindMLP, SpecFor(ds), 1)
	mustTrain(t, one, ds, quickCfg(KindMLP, 1))
	SetThreads(0)
	if Threads() != runtime.GOMAXPROCS(0) || strings.Contains(BackendDescription(), "parallelism=1)") && runtime.GOMAXPROCS(0) > 1 {
		t.Errorf("SetThreads(0) did not restore defaults: %d threads, %s", Threads(), BackendDescription())
	}
	all := mustNew(t, KindMLP, SpecFor(ds), 1)
	mustTrain(t, all, ds, quickCfg(KindMLP, 1))
	if !weightsEqual(one.Weights(), all.Weights()) {
		t.Error("training with 1 thread and with all threads gave different weights")
	}
}

// TestCallbacksUseModel: the progress callbacks may evaluate the model being
// trained (per-epoch test metrics in the CLI) without deadlocking.
func TestCallbacksUseModel(t *testing.T) {
	ds := blobs(120, 6, 3, 1, 1)
	m := mustNew(t, KindMLP, SpecFor(ds), 1)
	cfg := quickCfg(KindMLP, 2)
	batches := 0
	cfg.OnBatch = func(done, total int) {
		if _, err := m.Predict(ds); err != nil {
			t.Error(err)
		}
		batches++
	}
	var accs []float64
	err := m.Train(context.Background(), ds, cfg, func(e EpochStats) {
		met, err := m.Evaluate(ds)
		if err != nil {
			t.Error(err)
		}
		accs = append(accs, met.Accuracy)
		_ = m.Weights()
	})
	if err != nil || len(accs) != 2 || batches != 8 {
		t.Fatalf("err %v, %d epochs evaluated, %d batches", err, len(accs), batches)
	}
}
