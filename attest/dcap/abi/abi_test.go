package abi_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSGXQuote(t *testing.T) {
	raw := dcaptest.Read(t, "sgx-dcap/quote.bin")
	q, err := abi.ParseQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	h := q.Header
	if h.Version != 3 || h.AttestationKeyType != 2 || h.TEEType != 0 || h.QEVendorID != abi.IntelQEVendorID {
		t.Errorf("header = %+v", h)
	}
	if h.QESVN != 10 || h.PCESVN != 15 {
		t.Errorf("QESVN, PCESVN = %d, %d; want 10, 15", h.QESVN, h.PCESVN)
	}
	if q.BodyType != abi.BodyTypeSGX || q.SGXReport == nil || q.TDReport != nil {
		t.Fatalf("body type %d", q.BodyType)
	}
	r := q.SGXReport
	if !bytes.Equal(r.MREnclave[:], unhex(t, "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")) {
		t.Errorf("MRENCLAVE %x", r.MREnclave)
	}
	if !bytes.Equal(r.MRSigner[:], unhex(t, "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6")) {
		t.Errorf("MRSIGNER %x", r.MRSigner)
	}
	if r.ISVProdID != 0 || r.ISVSVN != 0 || r.Attributes[0] != 0x05 || r.Debug() {
		t.Errorf("isvprodid %d isvsvn %d attributes %x", r.ISVProdID, r.ISVSVN, r.Attributes)
	}
	want := make([]byte, 64)
	copy(want, "Hello, world!")
	if !bytes.Equal(r.ReportData[:], want) {
		t.Errorf("report data %q", r.ReportData)
	}
	sd := q.SignatureData
	if sd.CertificationData != nil {
		t.Error("v3 quote has outer certification data")
	}
	qe := sd.QEReportCertificationData
	if len(qe.RawQEReport) != abi.EnclaveReportSize || len(qe.QEAuthData) != 32 || qe.CertificationData.Type != abi.CertDataPCKChain {
		t.Errorf("qe cert data: report %d auth %d type %d", len(qe.RawQEReport), len(qe.QEAuthData), qe.CertificationData.Type)
	}
	if got := len(q.SignedData()); got != abi.HeaderSize+abi.EnclaveReportSize {
		t.Errorf("signed data %d bytes", got)
	}
	if !bytes.Equal(q.SignedData(), raw[:432]) {
		t.Error("signed data is not header ‖ body")
	}
	blocks, err := abi.PCKChainPEM(qe.CertificationData)
	if err != nil || len(blocks) != 3 {
		t.Errorf("PCK chain: %d blocks, %v", len(blocks), err)
	}
	m, err := q.Marshal()
	if err != nil || !bytes.Equal(m, raw) {
		t.Errorf("marshal round trip differs (err %v)", err)
	}
}

func TestParseTDXQuote(t *testing.T) {
	raw := dcaptest.Read(t, "tdx-dcap/quote.bin")
	q, err := abi.ParseQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	if q.Header.Version != 4 || q.Header.TEEType != abi.TEETypeTDX || q.BodyType != abi.BodyTypeTD10 || q.TDReport == nil {
		t.Fatalf("header %+v body %d", q.Header, q.BodyType)
	}
	td := q.TDReport
	if !bytes.Equal(td.MRTD[:], unhex(t, "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7")) {
		t.Errorf("MRTD %x", td.MRTD)
	}
	if td.TEETCBSVN[0] != 6 || td.TEETCBSVN[1] != 1 || td.TEETCBSVN[2] != 3 {
		t.Errorf("TEE_TCB_SVN %x", td.TEETCBSVN)
	}
	if td.Debug() {
		t.Error("TD debug")
	}
	sd := q.SignatureData
	if sd.CertificationData == nil || sd.CertificationData.Type != abi.CertDataQEReport {
		t.Fatal("outer certification data is not type 6")
	}
	if sd.QEReportCertificationData.CertificationData.Type != abi.CertDataPCKChain {
		t.Error("inner certification data is not type 5")
	}
	if q.TrailingZeros != 70 {
		t.Errorf("trailing zeros %d, want 70", q.TrailingZeros)
	}
	if !bytes.Equal(q.SignedData(), raw[:48+584]) {
		t.Error("signed data is not header ‖ body")
	}
	m, err := q.Marshal()
	if err != nil || !bytes.Equal(m, raw[:len(raw)-70]) {
		t.Errorf("marshal round trip differs (err %v)", err)
	}
}

// Every prefix of a real quote must be refused without panicking, and the
// error must name a field.
func TestTruncatedQuotes(t *testing.T) {
	for _, name := range []string{"sgx-dcap/quote.bin", "tdx-dcap/quote.bin"} {
		raw := dcaptest.Read(t, name)
		q, err := abi.ParseQuote(raw)
		if err != nil {
			t.Fatal(err)
		}
		full := len(raw) - q.TrailingZeros
		for n := 0; n < full; n++ {
			_, err := abi.ParseQuote(raw[:n])
			if err == nil {
				t.Fatalf("%s: prefix of %d bytes parsed", name, n)
			}
			var fe *abi.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("%s: prefix %d: error %v does not name a field", name, n, err)
			}
		}
		for n := full; n <= len(raw); n++ {
			if _, err := abi.ParseQuote(raw[:n]); err != nil {
				t.Errorf("%s: %d bytes (only zero padding cut): %v", name, n, err)
			}
		}
	}
}

func TestTrailingData(t *testing.T) {
	raw := dcaptest.Read(t, "tdx-dcap/quote.bin")
	b := append([]byte(nil), raw...)
	b[len(b)-1] = 1
	if _, err := abi.ParseQuote(b); err == nil || !strings.Contains(err.Error(), "trailing_data") {
		t.Errorf("non-zero trailing byte: %v", err)
	}
	raw = dcaptest.Read(t, "sgx-dcap/quote.bin")
	if _, err := abi.ParseQuote(append(append([]byte(nil), raw...), 0, 0, 0)); err != nil {
		t.Errorf("zero padding refused: %v", err)
	}
}

func TestHeaderChecks(t *testing.T) {
	raw := dcaptest.Read(t, "tdx-dcap/quote.bin")
	for _, tc := range []struct {
		name  string
		off   int
		val   byte
		field string
	}{
		{"version 2", 0, 2, "version"},
		{"version 6", 0, 6, "version"},
		{"key type 3", 2, 3, "att_key_type"},
		{"tee type 0x80", 4, 0x80, "tee_type"},
	} {
		b := append([]byte(nil), raw...)
		b[tc.off] = tc.val
		_, err := abi.ParseQuote(b)
		var fe *abi.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: error %v, want field %s", tc.name, err, tc.field)
		}
	}
	// A v3 quote cannot be TDX.
	b := append([]byte(nil), raw...)
	b[0] = 3
	if _, err := abi.ParseQuote(b); err == nil {
		t.Error("v3 TDX quote parsed")
	}
}

func TestSignatureDataLength(t *testing.T) {
	raw := dcaptest.Read(t, "sgx-dcap/quote.bin")
	for _, delta := range []int{-1, 1, -64, 1 << 20} {
		b := append([]byte(nil), raw...)
		n := int(b[432]) | int(b[433])<<8 | int(b[434])<<16 | int(b[435])<<24
		n += delta
		b[432], b[433], b[434], b[435] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
		if _, err := abi.ParseQuote(b); err == nil {
			t.Errorf("signature_data_len %+d accepted", delta)
		}
	}
}

func TestV5RoundTrip(t *testing.T) {
	raw := dcaptest.Read(t, "tdx-dcap/quote.bin")
	q4, err := abi.ParseQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	td15 := &abi.TDReport15{TDReport10: *q4.TDReport}
	td15.MRServiceTD[0] = 0xAA
	td15.TEETCBSVN2[0] = 7
	h := *q4.Header
	h.Version = 5
	q5 := &abi.Quote{Header: &h, BodyType: abi.BodyTypeTD15, TDReport15: td15, SignatureData: q4.SignatureData}
	b, err := q5.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := abi.ParseQuote(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.BodyType != abi.BodyTypeTD15 || p.TDReport15.MRServiceTD[0] != 0xAA || p.TDReport.MRTD != q4.TDReport.MRTD {
		t.Error("v5 fields lost")
	}
	if len(p.SignedData()) != abi.HeaderSize+6+abi.TDReport15Size {
		t.Errorf("v5 signed data %d bytes", len(p.SignedData()))
	}
	signed, _ := q5.MarshalSigned()
	if !bytes.Equal(signed, p.SignedData()) {
		t.Error("MarshalSigned differs from SignedData")
	}
	// Wrong body size and mismatched body type are refused.
	bad := append([]byte(nil), b...)
	bad[50] ^= 1
	if _, err := abi.ParseQuote(bad); err == nil {
		t.Error("v5 wrong body size accepted")
	}
	bad = append([]byte(nil), b...)
	bad[48] = byte(abi.BodyTypeSGX)
	if _, err := abi.ParseQuote(bad); err == nil {
		t.Error("v5 SGX body in TDX quote accepted")
	}
}

func TestCertificationData(t *testing.T) {
	if _, err := abi.ParseCertificationData([]byte{5, 0, 3, 0, 0, 0, 'a', 'b'}); err == nil {
		t.Error("short data accepted")
	}
	if _, err := abi.ParseCertificationData([]byte{5, 0, 1, 0, 0, 0, 'a', 'b'}); err == nil {
		t.Error("trailing byte accepted")
	}
	if _, err := abi.ParseCertificationData([]byte{9, 0, 0, 0, 0, 0}); err == nil {
		t.Error("unknown type accepted")
	}
	if _, err := abi.ParseCertificationData([]byte{5, 0, 0xff, 0xff, 0xff, 0xff}); err == nil {
		t.Error("huge size accepted")
	}
	c, err := abi.ParseCertificationData([]byte{5, 0, 2, 0, 0, 0, 'a', 'b'})
	if err != nil || c.Type != 5 || string(c.Data) != "ab" {
		t.Errorf("got %+v, %v", c, err)
	}
	if !bytes.Equal(c.Marshal(), []byte{5, 0, 2, 0, 0, 0, 'a', 'b'}) {
		t.Error("marshal")
	}
	// PEM chain strictness.
	for _, data := range []string{"", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\nx",
		"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "-----BEGIN CERTIFICATE-----\n!!!\n"} {
		if _, err := abi.PCKChainPEM(&abi.CertificationData{Type: 5, Data: []byte(data)}); err == nil {
			t.Errorf("PCKChainPEM(%q) accepted", data)
		}
	}
	if _, err := abi.PCKChainPEM(&abi.CertificationData{Type: 4, Data: nil}); err == nil {
		t.Error("type 4 accepted as chain")
	}
	blocks, err := abi.PCKChainPEM(&abi.CertificationData{Type: 5, Data: []byte("\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\x00\x00")})
	if err != nil || len(blocks) != 1 {
		t.Errorf("NUL-padded chain: %d, %v", len(blocks), err)
	}
}

func TestReportsRoundTrip(t *testing.T) {
	raw := dcaptest.Read(t, "tdx-dcap/quote.bin")
	body := raw[48 : 48+584]
	td, err := abi.ParseTDReport10(body)
	if err != nil || !bytes.Equal(td.Marshal(), body) {
		t.Errorf("TD report round trip: %v", err)
	}
	if _, err := abi.ParseTDReport10(body[:583]); !errors.Is(err, abi.ErrTruncated) {
		t.Errorf("short TD report: %v", err)
	}
	if _, err := abi.ParseTDReport10(append(append([]byte(nil), body...), 0)); err == nil {
		t.Error("long TD report accepted")
	}
	sgx := dcaptest.Read(t, "sgx-dcap/quote.bin")[48 : 48+384]
	e, err := abi.ParseEnclaveReport(sgx)
	if err != nil || !bytes.Equal(e.Marshal(), sgx) {
		t.Errorf("enclave report round trip: %v", err)
	}
	h, err := abi.ParseHeader(raw[:48])
	if err != nil || !bytes.Equal(h.Marshal(), raw[:48]) {
		t.Errorf("header round trip: %v", err)
	}
	if _, err := abi.ParseTDReport15(make([]byte, abi.TDReport15Size)); err != nil {
		t.Error(err)
	}
}
