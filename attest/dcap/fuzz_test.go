package dcap_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

// FuzzVerifyQuote feeds mutated quotes to the verifier with the real
// collateral: it must never panic, and every quote it accepts must carry the
// genuine quote's signed data, signatures, keys, QE report data and PCK
// certificates.
func FuzzVerifyQuote(f *testing.F) {
	samples := []*sample{loadSample(f, "sgx-dcap"), loadSample(f, "tdx-dcap")}
	for _, s := range samples {
		f.Add(s.quote, s.tee == attest.TDX)
	}
	v, err := dcap.New("", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, quote []byte, tdx bool) {
		s := samples[0]
		if tdx {
			s = samples[1]
		}
		res, err := v.VerifyQuote(context.Background(), quote, s.col, dcaptest.VerifyTime)
		if err != nil {
			if _, ok := err.(*dcap.VerifyError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		// The verified quote may differ from the genuine one only in
		// unsigned encoding details (zero padding, PEM line breaks or NUL
		// padding of the certificate chain); everything signed or hashed must
		// be identical.
		g, err := abi.ParseQuote(s.quote)
		if err != nil {
			t.Fatal(err)
		}
		q := res.Quote
		gq, fq := g.SignatureData.QEReportCertificationData, q.SignatureData.QEReportCertificationData
		switch {
		case !bytes.Equal(q.SignedData(), g.SignedData()):
			t.Fatal("verified quote with different signed data")
		case q.SignatureData.Signature != g.SignatureData.Signature,
			q.SignatureData.AttestationKey != g.SignatureData.AttestationKey:
			t.Fatal("verified quote with different signature or attestation key")
		case !bytes.Equal(fq.RawQEReport, gq.RawQEReport), fq.QEReportSignature != gq.QEReportSignature,
			!bytes.Equal(fq.QEAuthData, gq.QEAuthData):
			t.Fatal("verified quote with different QE report data")
		}
		fb, _ := abi.PCKChainPEM(fq.CertificationData)
		gb, _ := abi.PCKChainPEM(gq.CertificationData)
		if len(fb) != len(gb) {
			t.Fatal("verified quote with a different PCK chain")
		}
		for i := range fb {
			if !bytes.Equal(fb[i].Bytes, gb[i].Bytes) {
				t.Fatal("verified quote with a different PCK certificate")
			}
		}
	})
}
