package ml

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/teeml/teeml/ml/datasets"
)

// TestMNISTCNNEpoch is the CNN benchmark, not a unit test: set
// TEEML_MNIST=1 to run it. It trains the default LeNet-5 for one epoch
// (TEEML_MNIST_EPOCHS to change) on the 60k MNIST training images and checks
// ≥ 0.95 top-1 on the 10k test images (anchor: BigDL PPML 0.9488 after one
// epoch), logging the time per epoch.
//
// TEEML_MNIST_TRAIN=N trains on the first N training images only and
// evaluates on the first N/6 test images (CI runs it so, at a size of
// seconds); the accuracy bar is then mnistReducedMinAccuracy, since one
// epoch on fewer images does not reach 0.95.
func TestMNISTCNNEpoch(t *testing.T) {
	if os.Getenv("TEEML_MNIST") == "" {
		t.Skip("set TEEML_MNIST=1 to run the MNIST CNN benchmark")
	}
	tr, te, err := datasets.LoadMNIST("")
	if err != nil {
		t.Fatal(err)
	}
	minAcc := 0.95
	if s := os.Getenv("TEEML_MNIST_TRAIN"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 600 || n > tr.N {
			t.Fatalf("TEEML_MNIST_TRAIN=%q: want a number of training images in 600..%d", s, tr.N)
		}
		tr, te = tr.Subset(firstRows(n)), te.Subset(firstRows(max(100, n/6)))
		minAcc = mnistReducedMinAccuracy
	}
	epochs := 1
	if s := os.Getenv("TEEML_MNIST_EPOCHS"); s != "" {
		epochs, _ = strconv.Atoi(s)
	}
	m := mustNew(t, KindCNN, SpecFor(tr), 1)
	cfg := DefaultTrainConfig(KindCNN)
	cfg.Epochs = epochs
	if s := os.Getenv("TEEML_MNIST_BS"); s != "" {
		cfg.BatchSize, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("TEEML_MNIST_LR"); s != "" {
		cfg.LR, _ = strconv.ParseFloat(s, 64)
	}
	t.Logf("%s, %d train / %d test images, %s, batch %d, %s lr %g", m, tr.N, te.N, BackendDescription(), cfg.BatchSize, cfg.Optimizer, cfg.LR)
	start := time.Now()
	cfg.OnBatch = func(done, total int) {
		if done%200 == 0 {
			t.Logf("batch %d/%d, %.1fs", done, total, time.Since(start).Seconds())
		}
	}
	err = m.Train(context.Background(), tr, cfg, func(e EpochStats) {
		met, err := m.Evaluate(te)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("epoch %d: train loss %.4f, %.1fs (%.0f examples/s); test %s", e.Epoch, e.Loss, e.Seconds, e.ExamplesPerSecond(), met)
		if e.Epoch == 1 && met.Accuracy < minAcc {
			t.Errorf("test accuracy after one epoch %.4f < %.2f", met.Accuracy, minAcc)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mnistReducedMinAccuracy is the one-epoch bar on a TEEML_MNIST_TRAIN
// subset: far above chance (0.1), below the full run's 0.95.
const mnistReducedMinAccuracy = 0.80

func firstRows(n int) []int {
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	return rows
}
