package abi_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

func FuzzParseQuote(f *testing.F) {
	for _, name := range []string{"sgx-dcap/quote.bin", "tdx-dcap/quote.bin"} {
		f.Add(dcaptest.Read(f, name))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := abi.ParseQuote(b)
		if err != nil {
			return
		}
		// A parsed quote re-encodes to its input minus zero padding.
		m, err := q.Marshal()
		if err != nil {
			t.Fatalf("marshal of parsed quote: %v", err)
		}
		if !bytes.Equal(m, b[:len(b)-q.TrailingZeros]) {
			t.Fatal("marshal differs from input")
		}
		if len(q.SignedData()) > len(b) {
			t.Fatal("signed data longer than input")
		}
	})
}

func FuzzParseCertificationData(f *testing.F) {
	for _, name := range []string{"sgx-dcap/quote.bin", "tdx-dcap/quote.bin"} {
		q, err := abi.ParseQuote(dcaptest.Read(f, name))
		if err != nil {
			f.Fatal(err)
		}
		qe, err := q.SignatureData.QEReportCertificationData.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(qe)
		f.Add(q.SignatureData.QEReportCertificationData.CertificationData.Marshal())
		if cd := q.SignatureData.CertificationData; cd != nil {
			f.Add(cd.Marshal())
		}
	}
	for typ, n := range map[uint16]int{abi.CertDataPPIDCleartext: 16, abi.CertDataPPIDRSA2048: 256, abi.CertDataPPIDRSA3072: 384} {
		f.Add((&abi.CertificationData{Type: typ, Data: make([]byte, n+20)}).Marshal())
	}
	f.Add((&abi.CertificationData{Type: abi.CertDataPCKLeaf, Data: []byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n\x00")}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := abi.ParseCertificationData(b); err == nil {
			if !bytes.Equal(c.Marshal(), b) {
				t.Fatal("certification data round trip differs")
			}
			_, _ = abi.PCKChainPEM(c)
			if id, err := abi.ParsePCKCertID(c); err == nil {
				want := map[uint16]int{abi.CertDataPPIDCleartext: 16, abi.CertDataPPIDRSA2048: 256, abi.CertDataPPIDRSA3072: 384}[c.Type]
				again := append(append(append([]byte{}, id.PPID...), id.CPUSVN[:]...), byte(id.PCESVN), byte(id.PCESVN>>8), byte(id.PCEID), byte(id.PCEID>>8))
				if len(id.PPID) != want || !bytes.Equal(again, c.Data) || strings.Contains(id.String(), "\n") {
					t.Fatalf("PCK cert ID %+v does not re-encode to its data", id)
				}
			}
			if der, err := abi.PCKLeafDER(c); err == nil && (c.Type != abi.CertDataPCKLeaf || len(der) == 0) {
				t.Fatalf("PCK leaf from type %d: %d bytes", c.Type, len(der))
			}
		}
		if q, err := abi.ParseQEReportCertificationData(b); err == nil {
			m, err := q.Marshal()
			if err != nil || !bytes.Equal(m, b) {
				t.Fatalf("qe report certification data round trip differs (%v)", err)
			}
		}
	})
}
