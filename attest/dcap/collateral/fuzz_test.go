package collateral_test

import (
	"testing"

	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

func FuzzParseCollateral(f *testing.F) {
	for _, dir := range []string{"sgx-dcap", "tdx-dcap"} {
		f.Add(dcaptest.Read(f, dir+"/collateral.json"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := collateral.Parse(b)
		if err != nil {
			return
		}
		m, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := collateral.Parse(m)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if c.Digest() != c2.Digest() {
			t.Fatal("round trip changes collateral")
		}
		_, _ = collateral.ParseTCBInfo(c.TCBInfo)
		_, _ = collateral.ParseQEIdentity(c.QEIdentity)
		_, _ = collateral.ParseCertChain(c.TCBInfoIssuerChain)
	})
}

func FuzzParseTCBInfo(f *testing.F) {
	for _, dir := range []string{"sgx-dcap", "tdx-dcap"} {
		c, err := collateral.Parse(dcaptest.Read(f, dir+"/collateral.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.TCBInfo)
		f.Add(c.QEIdentity)
	}
	f.Add([]byte(tcbInfoV2))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ti, err := collateral.ParseTCBInfo(b); err == nil {
			if ti.Version != 3 {
				t.Fatalf("TCB Info version %d accepted", ti.Version)
			}
			if len(ti.TCBLevels) == 0 || (ti.ID == "TDX") != (ti.TDXModule != nil) {
				t.Fatalf("inconsistent TCB Info accepted: %+v", ti)
			}
			for _, l := range ti.TCBLevels {
				if l.HasTDXComponents != (ti.ID == "TDX") {
					t.Fatal("TDX components mismatch")
				}
			}
		}
		if q, err := collateral.ParseQEIdentity(b); err == nil && len(q.TCBLevels) == 0 {
			t.Fatal("QE identity without levels accepted")
		}
	})
}
