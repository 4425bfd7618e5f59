package dcap_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

// pckCertID is certification data of type 1 to 3 with a PPID of ppidLen
// bytes.
func pckCertID(typ uint16, ppidLen int) *abi.CertificationData {
	d := bytes.Repeat([]byte{0xab}, ppidLen)
	d = append(d, bytes.Repeat([]byte{5}, 16)...) // CPUSVN
	d = binary.LittleEndian.AppendUint16(d, 10)   // PCESVN
	d = binary.LittleEndian.AppendUint16(d, 0)    // PCEID
	return &abi.CertificationData{Type: typ, Data: d}
}

func TestCertificationDataTypes1To3RefusedNamingThePCKCertificate(t *testing.T) {
	for _, c := range []struct {
		typ  uint16
		n    int
		name string
	}{
		{abi.CertDataPPIDCleartext, 16, "PPID in cleartext"},
		{abi.CertDataPPIDRSA2048, 256, "RSA-2048-OAEP"},
		{abi.CertDataPPIDRSA3072, 384, "RSA-3072-OAEP"},
	} {
		e := newEnv(t, attest.SGX)
		e.qp.CertData = pckCertID(c.typ, c.n)
		_, err := e.verify(t)
		if !errors.Is(err, dcap.ErrPCKCertMissing) || !dcap.IsStep(err, dcap.StepPCKChain) {
			t.Fatalf("type %d: %v", c.typ, err)
		}
		msg := err.Error()
		for _, want := range []string{c.name, "PCEID 0000", "PCESVN 10", "/sgx/certification/v4/pckcert"} {
			if !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
				t.Errorf("type %d: %q lacks %q", c.typ, msg, want)
			}
		}
		// A wrong length is a parse error naming the type and the size.
		e.qp.CertData = pckCertID(c.typ, c.n-1)
		if _, err := e.verify(t); err == nil || !strings.Contains(err.Error(), "want "+strconv.Itoa(c.n+20)) {
			t.Errorf("type %d short: %v", c.typ, err)
		}
	}
	e := newEnv(t, attest.SGX)
	e.qp.CertData = pckCertID(abi.CertDataPPIDCleartext, 16)
	if _, err := e.verify(t); err == nil || !strings.Contains(err.Error(), "PPID "+strings.Repeat("ab", 16)) {
		t.Errorf("cleartext PPID not named: %v", err)
	}
	e.qp.CertData = &abi.CertificationData{Type: abi.CertDataPlatformManifest, Data: []byte{1}}
	if _, err := e.verify(t); err == nil || !strings.Contains(err.Error(), "type 7 (platform manifest)") {
		t.Errorf("type 7: %v", err)
	}
}

func TestCertificationDataType4VerifiesWithCollateralCA(t *testing.T) {
	for _, form := range []string{"PEM", "DER"} {
		e := newEnv(t, attest.SGX)
		data := []byte(dcaptest.PEM(e.pck))
		if form == "DER" {
			data = e.pck.Raw
		} else {
			data = append(data, 0, 0, 0) // NUL padding, as QEs write it
		}
		e.qp.CertData = &abi.CertificationData{Type: abi.CertDataPCKLeaf, Data: data}
		res, err := e.verify(t)
		if err != nil {
			t.Fatalf("%s: %v", form, err)
		}
		if res.Claims == nil || res.PCK == nil || res.PCK.FMSPC != synFMSPC {
			t.Fatalf("%s: result %+v", form, res)
		}
	}
	// Without collateral: refused naming what is missing.
	e := newEnv(t, attest.SGX)
	e.qp.CertData = &abi.CertificationData{Type: abi.CertDataPCKLeaf, Data: e.pck.Raw}
	v, err := dcap.New(attest.SGX, &dcap.Options{Root: e.pki.Root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyQuote(context.Background(), dcaptest.Quote(t, e.qp), nil, synNow); !errors.Is(err, dcap.ErrPCKCertMissing) || !strings.Contains(err.Error(), "pck_crl_issuer_chain") {
		t.Fatalf("no collateral: %v", err)
	}
	// A leaf of another CA does not chain to the collateral's CA.
	other := dcaptest.NewPKI(t, e.pki.NotBefore, e.pki.NotAfter)
	leaf, key := other.NewPCK(t, e.params)
	e.qp.PCK, e.qp.PCKKey = leaf, key
	e.qp.CertData = &abi.CertificationData{Type: abi.CertDataPCKLeaf, Data: leaf.Raw}
	expectErr(t, e, dcap.StepPCKChain, nil)
	// The QE report must be signed by the type 4 leaf's key.
	e = newEnv(t, attest.SGX)
	_, key = e.pki.NewPCK(t, e.params)
	e.qp.PCKKey = key
	e.qp.CertData = &abi.CertificationData{Type: abi.CertDataPCKLeaf, Data: e.pck.Raw}
	expectErr(t, e, dcap.StepQEReportSignature, dcap.ErrSignatureInvalid)
	// Two certificates in type 4 are refused.
	e = newEnv(t, attest.SGX)
	e.qp.CertData = &abi.CertificationData{Type: abi.CertDataPCKLeaf, Data: []byte(dcaptest.PEM(e.pck, e.pki.CA))}
	if _, err := e.verify(t); err == nil || !strings.Contains(err.Error(), "holds 2 certificates, want 1") {
		t.Fatalf("two certs: %v", err)
	}
}

// The recorded real SGX quote carries type 5 (the PCK chain). Certification
// data is outside every signature, so the same quote with only its PCK leaf
// (type 4) is what a QE configured for type 4 would have produced: it must
// verify with the real collateral's PCK CA, and must still fail after any
// tampering of the leaf.
func TestRealSGXQuoteAsType4(t *testing.T) {
	q, err := abi.ParseQuote(dcaptest.Read(t, "sgx-dcap/quote.bin"))
	if err != nil {
		t.Fatal(err)
	}
	cd := q.SignatureData.QEReportCertificationData.CertificationData
	blocks, err := abi.PCKChainPEM(cd)
	if err != nil {
		t.Fatal(err)
	}
	col, err := collateral.Parse(dcaptest.Read(t, "sgx-dcap/collateral.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := dcap.New(attest.SGX, nil)
	if err != nil {
		t.Fatal(err)
	}
	with := func(data []byte) ([]byte, error) {
		q.SignatureData.QEReportCertificationData.CertificationData = &abi.CertificationData{Type: abi.CertDataPCKLeaf, Data: data}
		return q.Marshal()
	}
	leafPEM := pem.EncodeToMemory(blocks[0])
	raw, err := with(leafPEM)
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyQuote(context.Background(), raw, col, dcaptest.VerifyTime)
	if err != nil {
		t.Fatalf("type 4: %v", err)
	}
	if res.Claims.TCBStatus != attest.ConfigurationAndSWHardeningNeeded || res.PCKCA != collateral.CAPlatform && res.PCKCA != collateral.CAProcessor {
		t.Fatalf("type 4 result: %s %s", res.Claims.TCBStatus, res.PCKCA)
	}
	// A flipped bit in the leaf's signature or body is refused.
	der := bytes.Clone(blocks[0].Bytes)
	der[len(der)-10] ^= 1
	if raw, err = with(der); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyQuote(context.Background(), raw, col, dcaptest.VerifyTime); err == nil {
		t.Fatal("tampered type 4 leaf verified")
	}
	// The intermediate instead of the leaf: not an SGX PCK certificate.
	if raw, err = with(blocks[1].Bytes); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyQuote(context.Background(), raw, col, dcaptest.VerifyTime); err == nil {
		t.Fatal("CA certificate as type 4 leaf verified")
	}
}
