package protocol

import (
	"context"
	"testing"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
)

// A FedProx round config reaches local training: with proximal_mu the
// local model ends much closer to the global one.
func TestMLTrainerAppliesProximalMu(t *testing.T) {
	if raceEnabled {
		t.Skip("GoMLX training trips -race's checkptr; covered by the plain run")
	}
	train, _, err := datasets.Prepare("breast_cancer", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	drift := func(cfg map[string]float64) float64 {
		m, err := ml.New(ml.KindLogReg, ml.SpecFor(train), 5)
		if err != nil {
			t.Fatal(err)
		}
		global := m.Weights()
		tc := ml.DefaultTrainConfig(ml.KindLogReg)
		tc.Epochs = 3
		tr := &MLTrainer{Model: m, Data: train, Config: tc}
		w, n, _, err := tr.Train(context.Background(), global, cfg)
		if err != nil || n != train.N {
			t.Fatalf("train: %v (n=%d)", err, n)
		}
		d, err := w.Sub(global)
		if err != nil {
			t.Fatal(err)
		}
		return d.L2Norm()
	}
	free := drift(map[string]float64{})
	prox := drift(map[string]float64{strategy.KeyProximalMu: 50})
	if !(prox < free/4) {
		t.Fatalf("drift from the global model: %.4f with proximal_mu=50, %.4f without", prox, free)
	}
}
