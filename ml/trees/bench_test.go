package trees

import (
	"context"
	"testing"
)

// Benchmarks on the bundled splits, as bench/trees.sh trains them (2
// threads): go test -run '^$' -bench . -cpuprofile cpu.out ./ml/trees/

func BenchmarkForestDigits(b *testing.B) {
	train, _ := loadSplit(b, "digits")
	for b.Loop() {
		if _, err := TrainForest(context.Background(), train, ForestConfig{Trees: 100, Seed: 1, Threads: 2}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchGBDT(b *testing.B, name string, c GBDTConfig) {
	train, _ := loadSplit(b, name)
	fit, valid := validSplit(train)
	c.Valid, c.Seed, c.Threads = valid, 1, 2
	for b.Loop() {
		if _, err := TrainGBDT(context.Background(), fit, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGBDTDigits(b *testing.B) {
	benchGBDT(b, "digits", GBDTConfig{Iterations: 200, LR: 0.1, NumLeaves: 15, MinDataInLeaf: 5, EarlyStopping: 30})
}

func BenchmarkGBDTBreastCancer(b *testing.B) {
	benchGBDT(b, "breast_cancer", GBDTConfig{Iterations: 300, LR: 0.05, NumLeaves: 8, MinDataInLeaf: 10, EarlyStopping: 30})
}

func BenchmarkGBDTDiabetes(b *testing.B) {
	benchGBDT(b, "diabetes", GBDTConfig{Iterations: 300, LR: 0.05, NumLeaves: 8, MinDataInLeaf: 10, EarlyStopping: 30})
}

func BenchmarkGBDTCredit(b *testing.B) {
	benchGBDT(b, "credit", GBDTConfig{Iterations: 600, LR: 0.03, NumLeaves: 8, MinDataInLeaf: 30, Lambda: 1, EarlyStopping: 50})
}
