// Package enclave is teeml's Gramine-compatible SGX enclave tooling: enclave
// signing keys (RSA-3072, public exponent 3), MRSIGNER, the SGX SIGSTRUCT
// (.sig file) with its signature and Q1/Q2 values, Gramine manifest
// generation with hashed trusted files, a wrapper around gramine-sgx-sign,
// and policy entries derived from a SIGSTRUCT.
//
// The package is a library for the teeml CLI: every function takes and
// returns values or writes to an io.Writer, and every error is one line that
// names the thing concerned and the reason.
//
// Layouts and conventions follow the Intel SDM (SIGSTRUCT, Vol. 3D) and
// Gramine (pal/src/host/linux-sgx/sgx_arch.h, python/graminelibos/
// sigstruct.py and sgx_sign.py, Documentation/manifest-syntax.rst).
//
// What this package does not do: measure an enclave. MRENCLAVE depends on
// Gramine's libpal.so and the memory layout gramine-sgx-sign builds from the
// manifest; use SignWithGramine for a real .sig and ParseSigstruct to read it.
package enclave
