// Package sgx verifies Intel SGX DCAP quotes (ECDSA P-256, quote v3) as an
// attest.Verifier. Verification is done by attest/dcap, offline, against the
// collateral carried in the evidence (or a collateral source such as a
// collateral.Cache or a PCS client) and anchored in the pinned Intel SGX
// Root CA.
package sgx

import (
	"errors"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
)

// NewVerifier returns a verifier that accepts SGX quotes only. opts may be
// nil.
func NewVerifier(opts *dcap.Options) (*dcap.Verifier, error) { return dcap.New(attest.SGX, opts) }

// ParseReport returns the enclave report of an SGX quote without verifying
// anything — for display and debugging only; trust only the Claims of a
// Verifier.
func ParseReport(quote []byte) (*abi.EnclaveReport, error) {
	q, err := abi.ParseQuote(quote)
	if err != nil {
		return nil, err
	}
	if q.SGXReport == nil {
		return nil, &abi.FieldError{Struct: "quote", Field: "tee_type", Offset: 4, Err: errors.New("not an SGX quote")}
	}
	return q.SGXReport, nil
}
