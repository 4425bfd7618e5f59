//go:build amd64 && !purego

package strategy

import "golang.org/x/sys/cpu"

// useAVX selects the AVX kernel for weighted sums (kernels_amd64.s). It
// computes exactly what the generic Go code does — per coordinate, the
// products c_k·x_k rounded to float64, added in client order, times scale,
// rounded to float32 — so the results are bit-identical either way; tests
// switch it off to compare.
var useAVX = cpu.X86.HasAVX

// wsumAVX sets out[j] = float32(scale · Σ_k c[k]·xs[k][j]) for j < len(out),
// which must be a multiple of 16; len(xs) = len(c) ≥ 1 and every xs[k] holds
// at least len(out) values. It reports whether any output is NaN or ±Inf.
//
//go:noescape
func wsumAVX(out []float32, xs [][]float32, c []float64, scale float64) (nonFinite bool)

// sqDiffAVX adds (float64(a[j]) − float64(b[j]))² into s[j%16] for
// j < len(a), a multiple of 16; len(b) ≥ len(a).
//
//go:noescape
func sqDiffAVX(a, b []float32, s *[16]float64)

// readSumAVX sums x (len(x) a multiple of 32) with AVX: a streaming read
// with minimal arithmetic, for the memory-bandwidth reference benchmark.
//
//go:noescape
func readSumAVX(x []float32) float32
