//go:build !(amd64 && goexperiment.simd)

package ml

// SIMDKernels reports whether this binary was built with GOEXPERIMENT=simd
// (on amd64), which compiles GoMLX's AVX2 / AVX-512 matmul kernels into the
// backend. This build has the pure-Go kernels only.
const SIMDKernels = false

// SIMDDescription says which matmul kernels the backend has.
func SIMDDescription() string {
	return "pure Go (built without GOEXPERIMENT=simd: no AVX2/AVX-512 matmul kernels)"
}
