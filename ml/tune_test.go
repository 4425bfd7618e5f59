package ml

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/teeml/teeml/ml/datasets"
)

func TestTune(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	type variant struct {
		name string
		f    func(*TrainConfig, *Spec)
	}
	vs := []variant{
		{"default", func(c *TrainConfig, s *Spec) {}},
		{"bs32 lr3e-3", func(c *TrainConfig, s *Spec) { c.BatchSize, c.LR = 32, 3e-3 }},
		{"bs32 lr5e-3 cos", func(c *TrainConfig, s *Spec) { c.BatchSize, c.LR, c.Schedule = 32, 5e-3, "cosine" }},
		{"bs32 lr3e-3 32/64", func(c *TrainConfig, s *Spec) {
			c.BatchSize, c.LR = 32, 3e-3
			s.Conv = []ConvLayer{{32, 3, 1, 2}, {64, 3, 1, 2}}
		}},
	}
	for _, v := range vs {
		var accs []float64
		t0 := time.Now()
		for seed := int64(1); seed <= 5; seed++ {
			tr, te, _ := datasets.Prepare("digits", 0.2, seed)
			sp := SpecFor(tr)
			cfg := DefaultTrainConfig("cnn")
			cfg.Epochs, cfg.Seed = 10, seed
			v.f(&cfg, &sp)
			m := mustNew(t, "cnn", sp, seed)
			m.Train(context.Background(), tr, cfg, nil)
			met, _ := m.Evaluate(te)
			accs = append(accs, met.Accuracy)
		}
		t.Logf("%s: %.4f (%v)", v.name, accs, time.Since(t0).Round(time.Millisecond))
	}
}
