package ratls

import (
	"fmt"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/verifier"
)

// quoteReportData recognises quote and reads its 64 bytes of report data
// without verifying anything, so that the key binding can be checked before
// time is spent on verification. The verified claims' report data is
// compared again afterwards (policy.ReportData).
func quoteReportData(quote []byte) (verifier.Kind, []byte, error) {
	k, err := verifier.Detect(quote)
	if err != nil {
		return k, nil, err
	}
	switch {
	case k.Simulated:
		q, err := sim.ParseQuote(quote)
		if err != nil {
			return k, nil, err
		}
		return k, q.ReportData[:], nil
	case k.TEE == attest.SNP:
		r, err := sevabi.ReportToProto(quote)
		if err != nil {
			return k, nil, fmt.Errorf("evidence: SEV-SNP report: %w", err)
		}
		if len(r.GetReportData()) != 64 {
			return k, nil, fmt.Errorf("evidence: SEV-SNP report data is %d bytes, want 64", len(r.GetReportData()))
		}
		return k, r.GetReportData(), nil
	default:
		q, err := abi.ParseQuote(quote)
		if err != nil {
			return k, nil, fmt.Errorf("evidence: %w", err)
		}
		switch {
		case q.SGXReport != nil:
			return k, q.SGXReport.ReportData[:], nil
		case q.TDReport != nil:
			return k, q.TDReport.ReportData[:], nil
		}
		return k, nil, fmt.Errorf("evidence: %s has no SGX or TD report body", k.Format)
	}
}
