// Package tdx verifies Intel TDX DCAP quotes (ECDSA P-256, quote v4, and v5
// with TDX 1.0/1.5 bodies) as an attest.Verifier. Verification is done by
// attest/dcap, offline, against the collateral carried in the evidence (or a
// collateral source such as a collateral.Cache or a PCS client) and anchored
// in the pinned Intel SGX Root CA.
package tdx

import (
	"errors"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
)

// NewVerifier returns a verifier that accepts TDX quotes only. opts may be
// nil.
func NewVerifier(opts *dcap.Options) (*dcap.Verifier, error) { return dcap.New(attest.TDX, opts) }

// ParseReport returns the TD report of a TDX quote without verifying
// anything — for display and debugging only; trust only the Claims of a
// Verifier.
func ParseReport(quote []byte) (*abi.TDReport10, error) {
	q, err := abi.ParseQuote(quote)
	if err != nil {
		return nil, err
	}
	if q.TDReport == nil {
		return nil, &abi.FieldError{Struct: "quote", Field: "tee_type", Offset: 4, Err: errors.New("not a TDX quote")}
	}
	return q.TDReport, nil
}
