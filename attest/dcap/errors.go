package dcap

import (
	"errors"
	"fmt"

	"github.com/teeml/teeml/attest/dcap/internal/rawsig"
)

// Verification steps, in the order Verify runs them. Every error returned by
// Verify is a *VerifyError naming one of them.
const (
	StepParseQuote        = "parse quote"
	StepQuoteHeader       = "quote header"
	StepCollateral        = "collateral"
	StepPCKChain          = "pck chain"
	StepRootCACRL         = "root ca crl"
	StepPCKCRL            = "pck crl"
	StepQEReportSignature = "qe report signature"
	StepQEReportData      = "qe report data"
	StepQuoteSignature    = "quote signature"
	StepTCBInfo           = "tcb info"
	StepQEIdentity        = "qe identity"
	StepFMSPC             = "fmspc"
	StepQEIdentityMatch   = "qe identity match"
	StepTDXModule         = "tdx module"
	StepPlatformTCB       = "platform tcb"
	StepTCBStatus         = "tcb status"
)

// VerifyError is the error type of every verification failure.
type VerifyError struct {
	Step string
	Err  error
}

func (e *VerifyError) Error() string { return fmt.Sprintf("dcap: verify: step %q: %v", e.Step, e.Err) }
func (e *VerifyError) Unwrap() error { return e.Err }

func stepErr(step string, err error) error {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return err
	}
	return &VerifyError{Step: step, Err: err}
}

func stepf(step, format string, args ...any) error {
	return &VerifyError{Step: step, Err: fmt.Errorf(format, args...)}
}

// Sentinel errors, matched with errors.Is.
var (
	// ErrSignatureInvalid: a well-formed ECDSA signature did not verify.
	ErrSignatureInvalid = rawsig.ErrInvalid
	// ErrCollateralExpired: a CRL, TCB Info or QE Identity is past its
	// nextUpdate.
	ErrCollateralExpired = errors.New("collateral expired")
	// ErrCertificateExpired: a certificate is past its notAfter.
	ErrCertificateExpired = errors.New("certificate expired")
	// ErrNotYetValid: a certificate, CRL, TCB Info or QE Identity is not
	// valid yet at the verification time.
	ErrNotYetValid = errors.New("not yet valid")
	// ErrRevoked: a certificate is listed in a CRL.
	ErrRevoked = errors.New("certificate revoked")
	// ErrUntrustedRoot: a chain does not end in the pinned root.
	ErrUntrustedRoot = errors.New("root certificate is not the pinned Intel SGX Root CA")
	// ErrTCBRevoked: the platform or QE TCB level is Revoked.
	ErrTCBRevoked = errors.New("TCB revoked")
	// ErrTCBNotSupported: no TCB level matches the platform.
	ErrTCBNotSupported = errors.New("TCB not supported")
	// ErrPCKCertMissing: the quote's certification data (types 1 to 3:
	// the platform's PCK certificate ID only; type 4 without collateral:
	// the PCK leaf without its CA) does not carry what verification needs.
	ErrPCKCertMissing = errors.New("PCK certificate chain not in the quote")
)
