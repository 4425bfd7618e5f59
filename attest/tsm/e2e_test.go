package tsm

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/uuid"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/snp"
)

// TestRealSNPReportThroughConfigfs feeds go-sev-guest's real Milan report
// (report data 01 02 03 04 05, zero padded) through the configfs-tsm issuer,
// with its VCEK in an auxblob certificate table, then verifies it with
// attest/snp and judges it with attest/policy.
func TestRealSNPReportThroughConfigfs(t *testing.T) {
	var table abi.CertTable
	table.Entries = append(table.Entries, abi.CertTableEntry{GUID: uuid.MustParse(abi.VcekGUID), RawCert: testdata.VcekBytes})
	f := &fakeConfigfs{
		provider: "sev_guest",
		aux:      table.Marshal(),
		report:   func([]byte) []byte { return bytes.Clone(testdata.AttestationBytes) },
	}
	iss, root := newIssuer(t, f)
	nonce := []byte{1, 2, 3, 4, 5}
	ev, err := iss.Issue(context.Background(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	assertCleaned(t, root)
	claims, err := (&snp.Verifier{}).Verify(context.Background(), ev, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	y := "roles:\n  collaborator:\n    snp:\n      - measurement: \"" + hex.EncodeToString(claims.Measurement) + "\"\n    allow_debug: true\n"
	p, err := policy.Parse([]byte(y), "e2e.yaml")
	if err != nil {
		t.Fatal(err)
	}
	quiet := policy.Logger(slog.New(slog.DiscardHandler))
	if d := p.Evaluate("collaborator", claims, policy.ReportData(nonce), quiet); !d.Accepted {
		t.Fatal(d.Err())
	}
	if d := p.Evaluate("collaborator", claims, policy.ReportData([]byte{1, 2, 3, 4, 6}), quiet); d.Accepted {
		t.Fatal("claims accepted with the wrong report data binding")
	}
	// Another nonce: the issuer sees the real report does not carry it.
	if _, err := iss.Issue(context.Background(), []byte("other")); err == nil {
		t.Fatal("outblob not over the inblob accepted")
	}
}
