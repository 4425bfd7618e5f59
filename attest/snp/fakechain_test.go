package snp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
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
		{"committed TCB above current", func(r *spb.Report) { r.CommittedTcb = r.CurrentTcb + 1 }, "COMMITTED_TCB"},
		{"committed TCB above current in one component", func(r *spb.Report) { r.CommittedTcb = committedBelow(t, r.CurrentTcb) + 1 }, "COMMITTED_TCB"},
		{"provisional firmware build", func(r *spb.Report) { r.CommittedBuild = r.CurrentBuild + 1 }, "committed build"},
		{"committed build below current", func(r *spb.Report) { r.CommittedBuild = r.CurrentBuild - 1 }, "committed build number 2 does not match the current build number 3"},
		{"committed API version below current", func(r *spb.Report) { r.CommittedMinor = r.CurrentMinor - 1 }, "committed API version"},
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

// committedBelow is cur with its microcode SVN (the top byte on Milan) one
// lower: the TCB after a microcode update that is not yet committed.
func committedBelow(t *testing.T, cur uint64) uint64 {
	t.Helper()
	if cur>>56 == 0 {
		t.Fatalf("CURRENT_TCB %#x has microcode SVN 0", cur)
	}
	return cur - 1<<56
}

// TestCommittedTCBBelowCurrent: a correctly signed report whose
// COMMITTED_TCB is below its CURRENT_TCB verifies (the VCEK is certified for
// REPORTED_TCB), the claims carry both TCBs, and attest/policy refuses it by
// default naming both, accepting it only with
// snp_allow_committed_tcb_below_current. A tampered such report still fails
// the signature check.
func TestCommittedTCBBelowCurrent(t *testing.T) {
	f := newFakeChain(t)
	v := &Verifier{TrustedRoots: f.roots}
	var cur, committed uint64
	raw := f.sign(t, func(r *spb.Report) {
		r.Policy = 0x30000
		cur = r.CurrentTcb
		committed = committedBelow(t, cur)
		r.CommittedTcb = committed
	})
	c, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SNP, Quote: raw, Collateral: f.signer.Vcek.Raw}, now)
	if err != nil {
		t.Fatalf("committed below current refused in verification: %v", err)
	}
	if c.SNPCurrentTCB != cur || c.SNPCommittedTCB != committed || cur == committed {
		t.Fatalf("claims TCBs current %#x committed %#x, want %#x %#x", c.SNPCurrentTCB, c.SNPCommittedTCB, cur, committed)
	}

	fields := map[string]string{}
	for _, f := range c.Fields() {
		fields[f.Name] = f.Value
	}
	if fields["current_tcb"] != "0x4405000000000002" || fields["committed_tcb"] != "0x4305000000000002" {
		t.Fatalf("claim fields current_tcb %q committed_tcb %q", fields["current_tcb"], fields["committed_tcb"])
	}

	y := "roles:\n  aggregator:\n    snp:\n      - measurement: \"" + hex.EncodeToString(c.Measurement) + "\"\n"
	p, err := policy.Parse([]byte(y), "snp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate("aggregator", c, policy.Peer("amd-guest"))
	want := `policy: peer "amd-guest" role aggregator: COMMITTED_TCB 0x4305000000000002 below CURRENT_TCB 0x4405000000000002 (update not committed, rollback possible) refused (snp_allow_committed_tcb_below_current: false)`
	if d.Accepted || d.Err().Error() != want {
		t.Fatalf("default policy: %v\nwant %s", d.Err(), want)
	}
	p, err = policy.Parse([]byte(y+"    snp_allow_committed_tcb_below_current: true\n"), "snp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d = p.Evaluate("aggregator", c, policy.Logger(slog.New(slog.DiscardHandler)))
	if !d.Accepted || len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], "COMMITTED_TCB 0x4305000000000002 below CURRENT_TCB 0x4405000000000002") {
		t.Fatalf("policy with the knob: %+v", d)
	}

	// The claims are a fact from a verified signature: change COMMITTED_TCB
	// after signing and the report no longer verifies.
	const offCommittedTCB = 0x1E0
	if got := binary.LittleEndian.Uint64(raw[offCommittedTCB:]); got != committed {
		t.Fatalf("COMMITTED_TCB at %#x is %#x, want %#x", offCommittedTCB, got, committed)
	}
	bad := bytes.Clone(raw)
	binary.LittleEndian.PutUint64(bad[offCommittedTCB:], cur)
	if _, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SNP, Quote: bad, Collateral: f.signer.Vcek.Raw}, now); err == nil {
		t.Fatal("report with COMMITTED_TCB changed after signing verified")
	}
}
