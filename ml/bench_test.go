package ml

import (
	"context"
	"fmt"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

// digitsLike returns the real digits training split when available, or a
// synthetic stand-in of the same shape.
func digitsTrain(b testing.TB) *datasets.Dataset {
	tr, _, err := datasets.Prepare("digits", 0.2, 1)
	if err != nil {
		b.Logf("digits unavailable (%v); using synthetic data", err)
		ds := images(1438, 8, 8, 10, 1)
		return ds
	}
	return tr
}

// BenchmarkMLPTrainDigits measures one MLP training epoch on digits (Adam)
// at the two batch sizes of bench/mlp_vs_torch.sh.
func BenchmarkMLPTrainDigits(b *testing.B) {
	tr := digitsTrain(b)
	for _, bs := range []int{32, 256} {
		b.Run(fmt.Sprintf("batch=%d", bs), func(b *testing.B) {
			m, err := New(KindMLP, SpecFor(tr), 1)
			if err != nil {
				b.Fatal(err)
			}
			cfg := DefaultTrainConfig(KindMLP)
			cfg.Epochs, cfg.BatchSize = 1, bs
			if err := m.Train(context.Background(), tr, cfg, nil); err != nil { // compile outside the timer
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := m.Train(context.Background(), tr, cfg, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(tr.N)*float64(b.N)/b.Elapsed().Seconds(), "examples/s")
		})
	}
}

func benchCNNBatch(b *testing.B, h, w, bs int) {
	ds := images(bs, h, w, 10, 1)
	m, err := New(KindCNN, SpecFor(ds), 1)
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultTrainConfig(KindCNN)
	cfg.Epochs, cfg.BatchSize = 1, bs
	if err := m.Train(context.Background(), ds, cfg, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := m.Train(context.Background(), ds, cfg, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(bs)*float64(b.N)/b.Elapsed().Seconds(), "examples/s")
}

// BenchmarkCNNTrainBatch measures one training step (batch 64) of the default
// CNNs: LeNet-5 on 28×28 (MNIST-sized) and the small CNN on 8×8 (digits-sized).
func BenchmarkCNNTrainBatch(b *testing.B) {
	b.Run("28x28", func(b *testing.B) { benchCNNBatch(b, 28, 28, 64) })
	b.Run("8x8", func(b *testing.B) { benchCNNBatch(b, 8, 8, 64) })
}
