package dcap_test

import (
	"context"
	"testing"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/collateral"
)

func benchVerify(b *testing.B, dir string) {
	s := loadSample(b, dir)
	v := newVerifier(b, s.tee)
	ctx := context.Background()
	if _, err := v.VerifyQuote(ctx, s.quote, s.col, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.VerifyQuote(ctx, s.quote, s.col, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifs/s")
}

// BenchmarkVerifySGX verifies the real SGX quote against collateral parsed
// once; certificate chains, CRLs and collateral signatures come from the
// verifier's cache, the per-quote signatures (QE report, quote) are checked
// every time.
func BenchmarkVerifySGX(b *testing.B) { benchVerify(b, "sgx-dcap") }

func BenchmarkVerifyTDX(b *testing.B) { benchVerify(b, "tdx-dcap") }

// BenchmarkVerifySGXEvidence goes through attest.Verifier with the collateral
// JSON in the evidence (hashed each time, parsed once).
func BenchmarkVerifySGXEvidence(b *testing.B) {
	s := loadSample(b, "sgx-dcap")
	v := newVerifier(b, attest.SGX)
	ev := &attest.Evidence{TEE: attest.SGX, Quote: s.quote, Collateral: s.colJSON}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(context.Background(), ev, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifs/s")
}

// BenchmarkVerifySGXCold uses a fresh verifier (empty caches) each time: the
// cost of a first verification including collateral parsing.
func BenchmarkVerifySGXCold(b *testing.B) {
	s := loadSample(b, "sgx-dcap")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		col, err := collateral.Parse(s.colJSON)
		if err != nil {
			b.Fatal(err)
		}
		v, _ := dcap.New(attest.SGX, nil)
		if _, err := v.VerifyQuote(context.Background(), s.quote, col, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifs/s")
}

func BenchmarkVerifySGXParallel(b *testing.B) {
	s := loadSample(b, "sgx-dcap")
	v := newVerifier(b, attest.SGX)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.VerifyQuote(context.Background(), s.quote, s.col, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifs/s")
}
