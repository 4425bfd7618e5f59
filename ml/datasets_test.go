package ml

import (
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

// These tests train on the bundled datasets with the same pipeline as the
// CLI: datasets.Prepare (stratified 80/20 split, imputation and
// standardisation for tabular data, pixels scaled to [0,1]), model seed =
// split seed = shuffle seed, DefaultTrainConfig.

func prepare(t *testing.T, name string, seed int64) (tr, te *datasets.Dataset) {
	t.Helper()
	tr, te, err := datasets.Prepare(name, 0.2, seed)
	if err != nil {
		t.Fatalf("datasets.Prepare(%s): %v", name, err)
	}
	return tr, te
}

// skipUnderRace skips a long accuracy test when the race detector is on:
// GoMLX's pure-Go kernels run ~10× slower under -race, and the quick tests
// (model_test.go) drive the same code paths. Note that -race also turns on
// checkptr, which GoMLX's matmul kernels trip over (uintptr arithmetic in
// compute v0.1.2, not a data race): run the race tests as
//
//	go test -race -gcflags=all=-d=checkptr=0 ./ml/
func skipUnderRace(t *testing.T) {
	if raceEnabled {
		t.Skip("accuracy test skipped under -race (too slow); model_test.go covers the code paths")
	}
}

func trainEval(t *testing.T, dataset, kind string, seed int64, epochs int) Metrics {
	t.Helper()
	tr, te := prepare(t, dataset, seed)
	m := mustNew(t, kind, SpecFor(tr), seed)
	cfg := DefaultTrainConfig(kind)
	if epochs > 0 {
		cfg.Epochs = epochs
	}
	cfg.Seed = seed
	mustTrain(t, m, tr, cfg)
	met, err := m.Evaluate(te)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s seed %d, %d epochs: %s", dataset, kind, seed, cfg.Epochs, met)
	return met
}

// TestDigitsMLP: the target `teeml train --dataset digits --model mlp
// --epochs 10 --seed 1` must reach ≥ 0.95 test accuracy; check seeds 1..5.
func TestDigitsMLP(t *testing.T) {
	skipUnderRace(t)
	seeds := []int64{1, 2, 3, 4, 5}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		if met := trainEval(t, "digits", KindMLP, seed, 10); met.Accuracy < 0.95 {
			t.Errorf("digits mlp seed %d: accuracy %.4f < 0.95", seed, met.Accuracy)
		}
	}
}

func TestBreastCancerLogReg(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		met := trainEval(t, "breast_cancer", KindLogReg, seed, 10)
		if met.Accuracy < 0.95 || met.AUC < 0.97 {
			t.Errorf("breast_cancer logreg seed %d: %s, want accuracy ≥ 0.95", seed, met)
		}
	}
}

// TestDiabetesLinReg checks the SGD-trained linear regression against the
// closed-form least-squares fit on the same split (raw, unscaled target).
func TestDiabetesLinReg(t *testing.T) {
	for _, seed := range []int64{1, 4} {
		tr, te := prepare(t, "diabetes", seed)
		met := trainEval(t, "diabetes", KindLinReg, seed, 0)
		ols := olsRMSE(tr, te)
		t.Logf("diabetes seed %d: linreg RMSE %.2f, closed-form OLS RMSE %.2f", seed, met.RMSE, ols)
		if met.RMSE > 1.03*ols || met.RMSE > 65 || met.R2 < 0.25 {
			t.Errorf("diabetes linreg seed %d: %s vs OLS RMSE %.2f", seed, met, ols)
		}
	}
}

func TestCreditWideDeep(t *testing.T) {
	skipUnderRace(t)
	tr, _ := prepare(t, "credit", 1)
	if len(SpecFor(tr).Categorical) == 0 {
		t.Fatal("credit has no categorical columns")
	}
	met := trainEval(t, "credit", KindWideDeep, 1, 0)
	if !met.HasAUC() || met.AUC < 0.78 {
		t.Errorf("credit widedeep: %s, want AUC ≥ 0.78", met)
	}
}

func TestDigitsCNN(t *testing.T) {
	skipUnderRace(t)
	if met := trainEval(t, "digits", KindCNN, 1, 3); met.Accuracy < 0.8 {
		t.Errorf("digits cnn: %s, want accuracy well above chance (≥ 0.8)", met)
	}
}
