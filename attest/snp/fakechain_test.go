package snp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/teeml/teeml/attest"
)

// fakeChain is a private ARK/ASK/VCEK chain from go-sev-guest's testing
// package, whose VCEK is certified for the real test report's TCB and chip
// ID, so re-signed variants of the real report exercise the validate step.
type fakeChain struct {
	signer *sevtest.AmdSigner
	roots  map[string][]*trust.AMDRootCerts
}

func newFakeChain(t *testing.T) *fakeChain {
	t.Helper()
	r, err := abi.ReportToProto(report)
	if err != nil {
		t.Fatal(err)
	}
	var hwid [abi.ChipIDSize]byte
	copy(hwid[:], r.GetChipId())
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetReportedTcb()))
	created := now.Add(-365 * 24 * time.Hour)
	b := &sevtest.AmdSignerBuilder{
		Keys:             sevtest.DefaultAmdKeys(),
		ProductName:      "Milan-B0",
		ArkCreationTime:  created,
		AskCreationTime:  created,
		AsvkCreationTime: created,
		VcekCreationTime: created,
		VlekCreationTime: created,
		HWID:             hwid,
		VcekCustom:       sevtest.CertOverride{Extensions: sevtest.CustomExtensions(tcb, hwid[:], "", "Milan-B0")},
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	root := trust.AMDRootCertsProduct("Milan")
	root.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask, Asvk: s.Asvk}
	return &fakeChain{signer: s, roots: map[string][]*trust.AMDRootCerts{"Milan": {root}}}
}

// sign re-encodes the real report after edit and signs it with the fake VCEK.
func (f *fakeChain) sign(t *testing.T, edit func(r *spb.Report)) []byte {
	t.Helper()
	r, err := abi.ReportToProto(report)
	if err != nil {
		t.Fatal(err)
	}
	edit(r)
	raw, err := abi.ReportToAbiBytes(r)
	if err != nil {
		t.Fatal(err)
	}
	R, S, err := f.signer.Sign(abi.SignedComponent(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := abi.SetSignature(R, S, raw); err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestFakeChainValidation(t *testing.T) {
	f := newFakeChain(t)
	v := &Verifier{TrustedRoots: f.roots}
	ev := func(raw []byte) *attest.Evidence {
		return &attest.Evidence{TEE: attest.SNP, Quote: raw, Collateral: f.signer.Vcek.Raw}
	}

	good := f.sign(t, func(r *spb.Report) { r.Policy = 0x30000 }) // SMT, no debug
	c, err := v.Verify(context.Background(), ev(good), now)
	if err != nil {
		t.Fatalf("consistent re-signed report refused: %v", err)
	}
	if c.Debug || c.SNPPolicy != 0x30000 || c.TCBStatus != attest.UpToDate {
		t.Fatalf("claims = %+v", c)
	}
	// The private chain is not AMD's: the default verifier refuses it.
	if _, err := (&Verifier{}).Verify(context.Background(), ev(good), now); err == nil {
		t.Fatal("report signed by a private chain verified against AMD's roots")
	}
	// Full certificate table, as configfs-tsm's auxblob carries it.
	tbl, err := f.signer.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SNP, Quote: good, Collateral: tbl}, now); err != nil {
		t.Fatalf("certificate table collateral: %v", err)
	}

	cases := []struct {
		name string
		edit func(r *spb.Report)
		want string
	}{
		{"reported TCB above VCEK", func(r *spb.Report) { r.ReportedTcb++ }, "REPORTED_TCB"},
		{"committed TCB differs from current", func(r *spb.Report) { r.CommittedTcb = r.CurrentTcb + 1 }, "COMMITTED_TCB"},
		{"provisional firmware build", func(r *spb.Report) { r.CommittedBuild = r.CurrentBuild + 1 }, "committed build"},
		{"chip ID", func(r *spb.Report) { r.ChipId[0] ^= 1 }, "CHIP_ID"},
		{"VLEK signer without VLEK", func(r *spb.Report) {
			r.SignerInfo = abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VlekReportSigner})
		}, "lacks the VLEK certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := f.sign(t, tc.edit)
			c, err := v.Verify(context.Background(), ev(raw), now)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q\nwant one line containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}
