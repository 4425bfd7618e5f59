package tdx_test

import (
	"context"
	"testing"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/tdx"
)

func TestVerifier(t *testing.T) {
	var v attest.Verifier
	v, err := tdx.NewVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &attest.Evidence{TEE: attest.TDX, Quote: dcaptest.Read(t, "tdx-dcap/quote.bin"), Collateral: dcaptest.Read(t, "tdx-dcap/collateral.json")}
	c, err := v.Verify(context.Background(), ev, dcaptest.VerifyTime)
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != attest.TDX || c.Simulated || len(c.ReportData) != 64 {
		t.Errorf("claims %+v", c)
	}
	if _, err := tdx.ParseReport(ev.Quote); err != nil {
		t.Error(err)
	}
	other := &attest.Evidence{Quote: dcaptest.Read(t, "sgx-dcap/quote.bin"), Collateral: dcaptest.Read(t, "sgx-dcap/collateral.json")}
	if _, err := v.Verify(context.Background(), other, dcaptest.VerifyTime); !dcap.IsStep(err, dcap.StepQuoteHeader) {
		t.Errorf("sgx quote: %v", err)
	}
	if _, err := tdx.ParseReport(other.Quote); err == nil {
		t.Error("ParseReport accepted a sgx quote")
	}
}
