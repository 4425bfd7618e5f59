//go:build amd64 && goexperiment.simd

package ml

import "simd/archsimd"

// SIMDKernels reports whether this binary was built with GOEXPERIMENT=simd,
// which compiles GoMLX's AVX2 / AVX-512 matmul kernels
// (github.com/gomlx/compute internal/gobackend/dot/matmul) into the backend.
// The default build (plain `go build` / `go run`) leaves them out.
const SIMDKernels = true

// SIMDDescription says which SIMD kernels the backend can use on this CPU:
// the kernels are compiled in, and the backend picks AVX-512 or AVX2 at run
// time from the CPU's features.
func SIMDDescription() string {
	switch {
	case archsimd.X86.AVX512():
		return "simd (GOEXPERIMENT=simd): AVX-512 and AVX2 kernels compiled in, CPU has AVX-512"
	case archsimd.X86.AVX2():
		return "simd (GOEXPERIMENT=simd): AVX-512 and AVX2 kernels compiled in, CPU has AVX2"
	default:
		return "simd (GOEXPERIMENT=simd): kernels compiled in, but this CPU has no AVX2; pure-Go kernels in use"
	}
}
