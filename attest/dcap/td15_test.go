package dcap_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/verifier"
)

// TestRealTDX15Quote: go-tdx-guest's published v5 quote parses as a TDX
// 1.5 report, its PCK chain verifies to Intel's pinned root (verification
// stops only for want of collateral), and a flipped bit in the chain is
// refused at the PCK chain step.
func TestRealTDX15Quote(t *testing.T) {
	raw, err := os.ReadFile("testdata/go-tdx-guest/quote_v5_sample.dat")
	if err != nil {
		t.Fatal(err)
	}
	q, err := abi.ParseQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	if q.Header.Version != abi.QuoteVersion5 || q.BodyType != abi.BodyTypeTD15 || q.TDReport15 == nil || q.TDReport != &q.TDReport15.TDReport10 {
		t.Fatalf("version %d body type %d", q.Header.Version, q.BodyType)
	}
	if hex.EncodeToString(q.TDReport15.TEETCBSVN2[:3]) != "0d0104" || q.TDReport15.MRServiceTD != [48]byte{} {
		t.Fatalf("TEE_TCB_SVN_2 %x MRSERVICETD %x", q.TDReport15.TEETCBSVN2, q.TDReport15.MRServiceTD)
	}
	fields, err := verifier.Inspect(raw)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fields {
		names = append(names, f.Name+"="+f.Value)
	}
	all := strings.Join(names, " ")
	if !strings.Contains(all, "mr_service_td="+strings.Repeat("00", 48)) || !strings.Contains(all, "tee_tcb_svn_2=0d0104") {
		t.Fatalf("inspect: %s", all)
	}
	v, err := dcap.New(attest.TDX, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, err := v.VerifyQuote(context.Background(), raw, nil, at); !dcap.IsStep(err, "collateral") {
		t.Fatalf("want the PCK chain accepted and collateral missing: %v", err)
	}
	// Flip one bit inside the PCK leaf certificate's PEM (base64 letters).
	i := bytes.Index(raw, []byte("-----BEGIN CERTIFICATE-----\n")) + 100
	bad := bytes.Clone(raw)
	bad[i] ^= 0x01
	if _, err := v.VerifyQuote(context.Background(), bad, nil, at); err == nil || !dcap.IsStep(err, dcap.StepPCKChain) {
		t.Fatalf("tampered PCK chain: %v", err)
	}
}

// TestSyntheticTDX15MRServiceTD verifies a v5 quote with a TDX 1.5 body
// end to end and judges MRSERVICETD by policy.
func TestSyntheticTDX15MRServiceTD(t *testing.T) {
	e := newEnv(t, attest.TDX)
	td15 := &abi.TDReport15{}
	td15.MRServiceTD[0], td15.MRServiceTD[47] = 0x5e, 0x1d
	td15.TEETCBSVN2[0] = 9
	e.qp.TD15 = td15
	res := expectStatus(t, e, attest.UpToDate)
	c := res.Claims
	if len(c.MRServiceTD) != 48 || c.MRServiceTD[0] != 0x5e || c.TEETCBSVN2[0] != 9 || c.MRTD[0] != 7 {
		t.Fatalf("claims %+v", c)
	}
	mrtd := hex.EncodeToString(c.MRTD)
	pol := func(svc string) *policy.Policy {
		p, err := policy.Parse([]byte("roles:\n  td:\n    tdx:\n      - mrtd: "+mrtd+"\n        mr_service_td: "+svc+"\n"), "p")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := hex.EncodeToString(c.MRServiceTD)
	if d := pol(good).Evaluate("td", c); !d.Accepted {
		t.Fatalf("matching MRSERVICETD refused: %s", d)
	}
	if d := pol(strings.Repeat("00", 48)).Evaluate("td", c); d.Accepted || !strings.Contains(d.String(), "mr_service_td") {
		t.Fatalf("other MRSERVICETD: %s", d)
	}
	// A TDX 1.0 report has no MRSERVICETD: an entry requiring one refuses it.
	e.qp.TD15 = nil
	res10 := expectStatus(t, e, attest.UpToDate)
	if res10.Claims.MRServiceTD != nil {
		t.Fatal("TDX 1.0 claims carry MRSERVICETD")
	}
	if d := pol(strings.Repeat("00", 48)).Evaluate("td", res10.Claims); d.Accepted {
		t.Fatalf("TDX 1.0 report accepted by an mr_service_td entry: %s", d)
	}
	if _, err := policy.Parse([]byte("roles:\n  td:\n    tdx:\n      - mrtd: "+mrtd+"\n        mr_service_td: 00\n"), "p"); err == nil || !strings.Contains(err.Error(), "mr_service_td") {
		t.Fatalf("short mr_service_td: %v", err)
	}
}
