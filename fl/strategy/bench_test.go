package strategy

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

// Benchmarks on 8 updates of 10M float32 parameters (320 MB of input), the
// size bench/fedavg_vs_numpy.sh compares against numpy. GB/s is input bytes
// read per second (10⁹ bytes).

const (
	benchClients = 8
	benchParams  = 10_000_000
)

var benchData struct {
	once    sync.Once
	global  tensor.Weights
	results []FitResult
}

// benchInputs returns a global model and 8 client results of one
// 10M-element tensor each, filled with cheap pseudo-random values, and
// NumExamples 100..800.
func benchInputs() (tensor.Weights, []FitResult) {
	benchData.once.Do(func() {
		mk := func(seed uint32) tensor.Weights {
			d := make([]float32, benchParams)
			x := seed*2654435761 + 1
			for i := range d {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				d[i] = float32(int32(x)) * (1.0 / (1 << 31))
			}
			return tensor.Weights{{Name: "w", Shape: []int{benchParams}, Data: d}}
		}
		benchData.global = mk(99)
		for k := range benchClients {
			benchData.results = append(benchData.results, FitResult{Client: fmt.Sprintf("c%d", k), Weights: mk(uint32(k + 1)), NumExamples: 100 * (k + 1)})
		}
	})
	return benchData.global, benchData.results
}

func reportGBs(b *testing.B, bytes int) {
	b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

const benchInputBytes = benchClients * benchParams * 4

// BenchmarkFedAvg8x10M: FedAvg.AggregateFit as a server calls it
// (structural checks, single-pass weighted mean with NaN detection, a newly
// allocated result).
func BenchmarkFedAvg8x10M(b *testing.B) {
	g, results := benchInputs()
	s := &FedAvg{}
	b.SetBytes(benchInputBytes)
	for b.Loop() {
		if _, _, err := s.AggregateFit(1, g, results); err != nil {
			b.Fatal(err)
		}
	}
	reportGBs(b, benchInputBytes)
}

// BenchmarkFedAvg8x10MNormBound: FedAvg with Validator.MaxUpdateNorm set
// (an extra pass computing every update's norm).
func BenchmarkFedAvg8x10MNormBound(b *testing.B) {
	g, results := benchInputs()
	s := &FedAvg{Options: Options{Validator: Validator{MaxUpdateNorm: 1e9}}}
	b.SetBytes(benchInputBytes)
	for b.Loop() {
		if _, _, err := s.AggregateFit(1, g, results); err != nil {
			b.Fatal(err)
		}
	}
	reportGBs(b, benchInputBytes)
}

// BenchmarkWeightedMean8x10M: the bare kernel into a reused destination.
func BenchmarkWeightedMean8x10M(b *testing.B) {
	g, results := benchInputs()
	ups := make([]tensor.Weights, len(results))
	coef := make([]float64, len(results))
	for k, r := range results {
		ups[k], coef[k] = r.Weights, float64(r.NumExamples)
	}
	dst := g.ZerosLike()
	b.SetBytes(benchInputBytes)
	for b.Loop() {
		if err := WeightedMean(dst, ups, coef, 0); err != nil {
			b.Fatal(err)
		}
	}
	reportGBs(b, benchInputBytes)
}

// BenchmarkMedian8x10M and BenchmarkKrum8x10M put the robust strategies
// in proportion.
func BenchmarkMedian8x10M(b *testing.B) {
	g, results := benchInputs()
	s := &Median{}
	b.SetBytes(benchInputBytes)
	for b.Loop() {
		if _, _, err := s.AggregateFit(1, g, results); err != nil {
			b.Fatal(err)
		}
	}
	reportGBs(b, benchInputBytes)
}

func BenchmarkKrum8x10M(b *testing.B) {
	g, results := benchInputs()
	s := &Krum{F: 1}
	b.SetBytes(benchInputBytes)
	for b.Loop() {
		if _, _, err := s.AggregateFit(1, g, results); err != nil {
			b.Fatal(err)
		}
	}
	reportGBs(b, benchInputBytes)
}

// BenchmarkMemSum8x10M is the read-bandwidth reference: the same 8 input
// arrays read once, in parallel over GOMAXPROCS goroutines with the same
// spans, and summed — with AVX where available (so that it is limited by
// memory, not by arithmetic), else with eight scalar accumulators.
func BenchmarkMemSum8x10M(b *testing.B) {
	_, results := benchInputs()
	workers := runtime.GOMAXPROCS(0)
	sums := make([]float32, workers*16)
	b.SetBytes(benchInputBytes)
	for b.Loop() {
		chunks := (benchParams + spanSize - 1) / spanSize
		runTasks(workers, chunks, func(w, c int) {
			lo, hi := c*spanSize, min((c+1)*spanSize, benchParams)
			var s float32
			for _, r := range results {
				s += readSum(r.Weights[0].Data[lo:hi])
			}
			sums[w*16] += s
		})
	}
	reportGBs(b, benchInputBytes)
}

func readSum(d []float32) float32 {
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	j := 0
	if useAVX {
		j = len(d) &^ 31
		s0 = readSumAVX(d[:j])
	}
	for ; j+8 <= len(d); j += 8 {
		s0 += d[j]
		s1 += d[j+1]
		s2 += d[j+2]
		s3 += d[j+3]
		s4 += d[j+4]
		s5 += d[j+5]
		s6 += d[j+6]
		s7 += d[j+7]
	}
	for ; j < len(d); j++ {
		s0 += d[j]
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}

func TestReadSum(t *testing.T) {
	d := make([]float32, 1000)
	var want float32
	for i := range d {
		d[i] = float32(i % 17)
		want += d[i]
	}
	if got := readSum(d); got != want {
		t.Fatalf("readSum = %v, want %v", got, want)
	}
}

// BenchmarkMemCopy8x10M copies the 8 input arrays into 8 preallocated
// arrays (read 320 MB + write 320 MB), in parallel; GB/s counts bytes read.
func BenchmarkMemCopy8x10M(b *testing.B) {
	_, results := benchInputs()
	dst := make([][]float32, len(results))
	for k := range dst {
		dst[k] = make([]float32, benchParams)
	}
	workers := runtime.GOMAXPROCS(0)
	b.SetBytes(benchInputBytes)
	for b.Loop() {
		chunks := (benchParams + spanSize - 1) / spanSize
		runTasks(workers, chunks, func(_, c int) {
			lo, hi := c*spanSize, min((c+1)*spanSize, benchParams)
			for k, r := range results {
				copy(dst[k][lo:hi], r.Weights[0].Data[lo:hi])
			}
		})
	}
	reportGBs(b, benchInputBytes)
}
