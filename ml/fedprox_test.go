package ml

import (
	"context"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
)

// FedProx's proximal term pulls local training towards the centre: with a
// large μ the trained weights stay much closer to the centre than without,
// and μ = 0 is exactly plain training.
func TestProximalTermKeepsWeightsNearCentre(t *testing.T) {
	train, _, err := datasets.Prepare("breast_cancer", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	dist := func(mu float64, opt string) (float64, tensor.Weights) {
		m, err := New(KindLogReg, SpecFor(train), 3)
		if err != nil {
			t.Fatal(err)
		}
		centre := m.Weights()
		cfg := DefaultTrainConfig(KindLogReg)
		cfg.Epochs, cfg.Optimizer, cfg.ProximalMu, cfg.ProximalCenter = 3, opt, mu, centre
		if err := m.Train(context.Background(), train, cfg, nil); err != nil {
			t.Fatal(err)
		}
		w := m.Weights()
		d, err := w.Sub(centre)
		if err != nil {
			t.Fatal(err)
		}
		return d.L2Norm(), w
	}
	for _, opt := range []string{"sgd", "adam"} {
		free, wFree := dist(0, opt)
		prox, _ := dist(50, opt)
		t.Logf("%s: distance from centre: μ=0 %.4f, μ=50 %.4f", opt, free, prox)
		if !(prox < free/4) {
			t.Errorf("%s: distance from centre with μ=50 is %.4f, without %.4f: proximal term not applied", opt, prox, free)
		}
		// μ = 0 takes the plain path: bit-identical to training without FedProx.
		m, _ := New(KindLogReg, SpecFor(train), 3)
		cfg := DefaultTrainConfig(KindLogReg)
		cfg.Epochs, cfg.Optimizer = 3, opt
		if err := m.Train(context.Background(), train, cfg, nil); err != nil {
			t.Fatal(err)
		}
		if d, _ := m.Weights().Sub(wFree); d.L2Norm() != 0 {
			t.Errorf("%s: μ=0 differs from plain training", opt)
		}
	}
}

func TestProximalTermValidation(t *testing.T) {
	train, _, err := datasets.Prepare("breast_cancer", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(KindLogReg, SpecFor(train), 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultTrainConfig(KindLogReg)
	cfg.Epochs, cfg.ProximalMu = 1, 0.1
	if err := m.Train(context.Background(), train, cfg, nil); err == nil || !strings.Contains(err.Error(), "proximal centre") {
		t.Fatalf("missing centre: %v", err)
	}
	cfg.ProximalMu = -1
	if err := m.Train(context.Background(), train, cfg, nil); err == nil || !strings.Contains(err.Error(), "proximal mu") {
		t.Fatalf("negative mu: %v", err)
	}
}
