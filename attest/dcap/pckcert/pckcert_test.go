package pckcert_test

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/dcap/pckcert"
)

func pckLeaf(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	q, err := abi.ParseQuote(dcaptest.Read(t, name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(q.SignatureData.QEReportCertificationData.CertificationData.Data)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRealPCKCertificates(t *testing.T) {
	for _, tc := range []struct {
		quote, fmspc string
		platform     bool
	}{
		{"sgx-dcap/quote.bin", "00A067110000", false},
		{"tdx-dcap/quote.bin", "B0C06F000000", true},
	} {
		e, err := pckcert.ParseExtensions(pckLeaf(t, tc.quote))
		if err != nil {
			t.Fatal(err)
		}
		if e.FMSPCHex() != tc.fmspc || e.PCEIDHex() != "0000" || len(e.PPID) != 16 {
			t.Errorf("%s: FMSPC %s PCEID %s", tc.quote, e.FMSPCHex(), e.PCEIDHex())
		}
		if (e.PlatformInstanceID != nil) != tc.platform || (e.Configuration != nil) != tc.platform {
			t.Errorf("%s: platform fields %x %+v", tc.quote, e.PlatformInstanceID, e.Configuration)
		}
		t.Logf("%s: comps %v pcesvn %d cpusvn %x type %d", tc.quote, e.TCB.CompSVN, e.TCB.PCESVN, e.TCB.CPUSVN, e.SGXType)
	}
}

func TestSyntheticExtension(t *testing.T) {
	p := dcaptest.PCKParams{FMSPC: [6]byte{1, 2, 3, 4, 5, 6}, PCEID: [2]byte{0, 1}, PCESVN: 300}
	for i := range p.CompSVN {
		p.CompSVN[i] = uint8(i * 17)
	}
	p.CPUSVN[15] = 0xEE
	e, err := pckcert.ParseSGXExtension(dcaptest.SGXExtension(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if e.FMSPC != p.FMSPC || e.PCEID != p.PCEID || e.TCB.CompSVN != p.CompSVN || e.TCB.PCESVN != 300 || e.TCB.CPUSVN != p.CPUSVN {
		t.Errorf("got %+v", e)
	}
}

type member struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

func raw(t *testing.T, v any) asn1.RawValue {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{FullBytes: b}
}

func TestExtensionErrors(t *testing.T) {
	good := dcaptest.SGXExtension(t, dcaptest.PCKParams{})
	var ms []member
	if _, err := asn1.Unmarshal(good, &ms); err != nil {
		t.Fatal(err)
	}
	enc := func(ms []member) []byte {
		b, err := asn1.Marshal(ms)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range ms {
		// Missing member.
		drop := append(append([]member{}, ms[:i]...), ms[i+1:]...)
		if _, err := pckcert.ParseSGXExtension(enc(drop)); err == nil {
			t.Errorf("member %v missing: accepted", ms[i].ID)
		}
		// Duplicate member.
		if _, err := pckcert.ParseSGXExtension(enc(append(append([]member{}, ms...), ms[i]))); err == nil {
			t.Errorf("member %v duplicated: accepted", ms[i].ID)
		}
	}
	// Wrong sizes and types.
	for i, v := range []any{make([]byte, 5), 7} {
		bad := append([]member{}, ms...)
		bad[3] = member{pckcert.OIDFMSPC, raw(t, v)}
		if _, err := pckcert.ParseSGXExtension(enc(bad)); err == nil {
			t.Errorf("bad FMSPC %d accepted", i)
		}
	}
	if _, err := pckcert.ParseSGXExtension(append(append([]byte{}, good...), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	if _, err := pckcert.ParseSGXExtension(good[:len(good)-1]); err == nil {
		t.Error("truncated extension accepted")
	}
	// An unknown member is ignored.
	extra := append(append([]member{}, ms...), member{asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 99}, raw(t, 1)})
	if _, err := pckcert.ParseSGXExtension(enc(extra)); err != nil {
		t.Errorf("unknown member refused: %v", err)
	}
	if _, err := pckcert.ParseExtensions(&x509.Certificate{}); !errors.Is(err, pckcert.ErrNoSGXExtension) {
		t.Errorf("no extension: %v", err)
	}
}

func FuzzParseSGXExtension(f *testing.F) {
	f.Add(dcaptest.SGXExtension(f, dcaptest.PCKParams{}))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = pckcert.ParseSGXExtension(b) })
}
