package trees

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestDeterministic: same seed, same model file, whatever the number of
// goroutines; another seed gives another forest.
func TestDeterministic(t *testing.T) {
	train, _ := loadSplit(t, "digits")
	text := func(m *Model, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := WriteText(&b, m); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	ctx := context.Background()
	f1 := text(TrainForest(ctx, train, ForestConfig{Trees: 8, Seed: 3, Threads: 1}))
	f2 := text(TrainForest(ctx, train, ForestConfig{Trees: 8, Seed: 3, Threads: 2}))
	f3 := text(TrainForest(ctx, train, ForestConfig{Trees: 8, Seed: 4, Threads: 2}))
	if f1 != f2 {
		t.Error("forest differs between 1 and 2 threads")
	}
	if f1 == f3 {
		t.Error("forest identical for seeds 3 and 4")
	}
	cfg := GBDTConfig{Iterations: 5, NumLeaves: 8, MinDataInLeaf: 5, BaggingFraction: 0.8, FeatureFraction: 0.8, Seed: 3, Threads: 1}
	g1 := text(TrainGBDT(ctx, train, cfg))
	cfg.Threads = 2
	if g2 := text(TrainGBDT(ctx, train, cfg)); g1 != g2 {
		t.Error("gbdt differs between 1 and 2 threads")
	}
}

func TestCancel(t *testing.T) {
	train, _ := loadSplit(t, "digits")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := TrainForest(ctx, train, ForestConfig{Trees: 50, Threads: 2}); !errors.Is(err, context.Canceled) {
		t.Errorf("forest on a cancelled context: %v", err)
	}
	if _, err := TrainGBDT(ctx, train, GBDTConfig{Iterations: 50}); !errors.Is(err, context.Canceled) {
		t.Errorf("gbdt on a cancelled context: %v", err)
	}
}
