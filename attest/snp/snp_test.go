package snp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/google/uuid"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
)

// The real report and VCEK shipped by go-sev-guest v0.15.0
// (verify/testdata/attestation.bin, vcek.testcer): a Milan guest launched
// without an ID block, signed by a VCEK that AMD's Milan ASK/ARK (embedded
// in go-sev-guest, verify/trust/ask_ark_milan.pem) certify. The VCEK is valid
// from 2022-09-24 00:55:28 to 2029-09-24 00:55:28 UTC.
var (
	report = testdata.AttestationBytes
	vcek   = testdata.VcekBytes
	now    = time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
)

// Offsets in the ATTESTATION_REPORT structure (AMD SEV-SNP ABI spec, table
// 22), independent of go-sev-guest's parser.
const (
	offPolicy      = 0x08
	offReportData  = 0x50
	offMeasurement = 0x90
	offHostData    = 0xC0
	offSignature   = 0x2A0
)

func evidence(collateral []byte) *attest.Evidence {
	return &attest.Evidence{TEE: attest.SNP, Quote: bytes.Clone(report), Collateral: collateral}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func certTable(t *testing.T, entries map[string][]byte) []byte {
	t.Helper()
	var ct abi.CertTable
	for g, raw := range entries {
		ct.Entries = append(ct.Entries, abi.CertTableEntry{GUID: uuid.MustParse(g), RawCert: raw})
	}
	return ct.Marshal()
}

func TestRealReportVerifies(t *testing.T) {
	if len(report) != ReportSize {
		t.Fatalf("test report is %d bytes", len(report))
	}
	forms := map[string][]byte{
		"DER VCEK":         vcek,
		"PEM VCEK":         pemCert(vcek),
		"PEM VCEK+ASK+ARK": append(pemCert(vcek), trust.AskArkMilanVcekBytes...),
		"cert table":       certTable(t, map[string][]byte{abi.VcekGUID: vcek}),
		// RFC 7468 explanatory text: AMD's ASK/ARK as `openssl x509 -text`
		// prints them, after a commented VCEK.
		"annotated PEM": append(append([]byte("VCEK of the test report\n"), pemCert(vcek)...), annotatedAskArk(t)...),
	}
	for name, coll := range forms {
		t.Run(name, func(t *testing.T) {
			c, err := (&Verifier{}).Verify(context.Background(), evidence(coll), now)
			if err != nil {
				t.Fatal(err)
			}
			if c.TEE != attest.SNP || c.Simulated || c.TCBStatus != attest.UpToDate {
				t.Fatalf("claims = %+v", c)
			}
			if !bytes.Equal(c.Measurement, report[offMeasurement:offMeasurement+48]) ||
				!bytes.Equal(c.HostData, report[offHostData:offHostData+32]) ||
				!bytes.Equal(c.ReportData, report[offReportData:offReportData+64]) ||
				c.SNPPolicy != binary.LittleEndian.Uint64(report[offPolicy:]) {
				t.Fatalf("claims fields differ from the report: %+v", c)
			}
			// This report's guest policy is 0x0b0000: reserved bit 16, SMT
			// (17) and DEBUG (19).
			if c.SNPPolicy != 0xb0000 || !c.Debug {
				t.Fatalf("policy %#x debug %v, want 0xb0000 with debug", c.SNPPolicy, c.Debug)
			}
			if want := time.Date(2029, 9, 24, 0, 55, 28, 0, time.UTC); !c.ValidUntil.Equal(want) {
				t.Fatalf("ValidUntil = %v, want %v (VCEK expiry)", c.ValidUntil, want)
			}
			if c.MREnclave != nil || c.MRTD != nil {
				t.Fatalf("foreign fields set: %+v", c)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "SEV-VCEK"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	fakeVCEK, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &other.PublicKey, other)
	if err != nil {
		t.Fatal(err)
	}
	genoaOnly := map[string][]*trust.AMDRootCerts{"Genoa": {trust.DefaultRootCerts["Genoa"]}}
	mod := func(f func(e *attest.Evidence)) *attest.Evidence {
		e := evidence(vcek)
		f(e)
		return e
	}
	cases := []struct {
		name string
		v    *Verifier
		ev   *attest.Evidence
		now  time.Time
		want string
	}{
		{"nil", &Verifier{}, nil, now, "no evidence"},
		{"simulated", &Verifier{}, mod(func(e *attest.Evidence) { e.Simulated = true }), now, "simulated"},
		{"TEE", &Verifier{}, mod(func(e *attest.Evidence) { e.TEE = attest.TDX }), now, `TEE is "tdx"`},
		{"zero time", &Verifier{}, evidence(vcek), time.Time{}, "time not set"},
		{"truncated", &Verifier{}, mod(func(e *attest.Evidence) { e.Quote = e.Quote[:ReportSize-1] }), now, "1183 bytes, want 1184"},
		{"extended", &Verifier{}, mod(func(e *attest.Evidence) { e.Quote = append(e.Quote, 0) }), now, "1185 bytes"},
		{"no collateral", &Verifier{}, evidence(nil), now, "no collateral"},
		{"only ASK/ARK", &Verifier{}, evidence(trust.AskArkMilanVcekBytes), now, "neither a VCEK nor a VLEK"},
		{"garbage collateral", &Verifier{}, evidence([]byte("not a certificate")), now, "neither PEM"},
		{"PEM truncated", &Verifier{}, evidence(append(pemCert(vcek), "note\n-----BEGIN CERTIFICATE-----\nMIIB\n"...)), now, "PEM block 2 (line 33): malformed: no END line"},
		{"PEM key", &Verifier{}, evidence(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})), now, `PEM block 1 (line 1): type "PRIVATE KEY", want CERTIFICATE`},
		{"two VCEKs", &Verifier{}, evidence(append(pemCert(vcek), pemCert(vcek)...)), now, "two VCEK"},
		{"VLEK table only", &Verifier{}, evidence(certTable(t, map[string][]byte{abi.VlekGUID: vcek})), now, "lacks the VCEK certificate"},
		{"forged VCEK", &Verifier{}, evidence(fakeVCEK), now, "snp: verification:"},
		{"before VCEK validity", &Verifier{}, evidence(vcek), time.Date(2022, 9, 23, 0, 0, 0, 0, time.UTC), "snp: verification:"},
		{"after VCEK validity", &Verifier{}, evidence(vcek), time.Date(2029, 9, 25, 0, 0, 0, 0, time.UTC), "snp: verification:"},
		{"untrusted product line", &Verifier{TrustedRoots: genoaOnly}, evidence(vcek), now, "snp: verification:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(context.Background(), tc.ev, tc.now)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q\nwant one line containing %q", err, tc.want)
			}
		})
	}
}

// TestBitFlipsRefused flips bits across the report: the header and TCB
// fields, the identity fields, report data, and the signature. Every flip
// must be refused. Under -short only every 7th bit is tried, under -race
// every 31st.
func TestBitFlipsRefused(t *testing.T) {
	step := 1
	if testing.Short() {
		step = 7
	}
	if raceEnabled {
		step = 31
	}
	v := &Verifier{}
	for bit := 0; bit < 8*ReportSize; bit += step {
		e := evidence(vcek)
		e.Quote[bit/8] ^= 1 << (bit % 8)
		c, err := v.Verify(context.Background(), e, now)
		if err == nil {
			t.Fatalf("bit %d (byte %#x) flipped: accepted %+v", bit, bit/8, c)
		}
		if bit%1001 == 0 {
			t.Logf("bit %d: %v", bit, err)
		}
	}
}

func TestSpecificFieldFlips(t *testing.T) {
	for name, off := range map[string]int{
		"policy debug bit": offPolicy + 2, "report data": offReportData, "measurement": offMeasurement + 47,
		"host data": offHostData, "signature r": offSignature, "signature s": offSignature + 72,
	} {
		e := evidence(vcek)
		e.Quote[off] ^= 0x08
		if _, err := (&Verifier{}).Verify(context.Background(), e, now); err == nil {
			t.Errorf("%s flipped: accepted", name)
		}
	}
}

// TestPolicyOnRealClaims runs the real report's claims through a policy: its
// debug policy bit refuses it by default.
func TestPolicyOnRealClaims(t *testing.T) {
	c, err := (&Verifier{}).Verify(context.Background(), evidence(vcek), now)
	if err != nil {
		t.Fatal(err)
	}
	y := "roles:\n  aggregator:\n    snp:\n      - measurement: \"" + hex.EncodeToString(c.Measurement) + "\"\n"
	p, err := policy.Parse([]byte(y), "snp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate("aggregator", c, policy.Peer("amd-guest"))
	if d.Accepted || d.Err().Error() != `policy: peer "amd-guest" role aggregator: debug guest refused (allow_debug: false)` {
		t.Fatalf("decision = %v", d)
	}
	p.Roles["aggregator"].AllowDebug = true
	if d := p.Evaluate("aggregator", c, policy.ReportData(c.ReportData)); !d.Accepted {
		t.Fatal(d.Err())
	}
}

// annotatedAskArk is go-sev-guest's verify/trust/ask_ark_milan.pem (v0.15.0)
// as `openssl x509 -text` prints each certificate.
func annotatedAskArk(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ask_ark_milan.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAnnotatedAskArk: the annotated bundle yields exactly AMD's ASK and
// ARK; a damaged block in it is refused, naming the block.
func TestAnnotatedAskArk(t *testing.T) {
	text := annotatedAskArk(t)
	coll := append(pemCert(vcek), text...)
	got, err := ParseCollateral(coll)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseCollateral(append(pemCert(vcek), trust.AskArkMilanVcekBytes...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetAskCert()) == 0 || !bytes.Equal(got.GetAskCert(), want.GetAskCert()) || !bytes.Equal(got.GetArkCert(), want.GetArkCert()) {
		t.Fatal("annotated ASK/ARK differ from go-sev-guest's plain bundle")
	}
	i := bytes.LastIndex(coll, []byte("-----BEGIN CERTIFICATE-----\n")) + len("-----BEGIN CERTIFICATE-----\n")
	bad := append(bytes.Clone(coll[:i]), append([]byte("*"), coll[i+1:]...)...)
	if _, err := ParseCollateral(bad); err == nil || !strings.Contains(err.Error(), "snp: collateral: PEM block 3") || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("damaged block: %v", err)
	}
	if _, err := (&Verifier{}).Verify(context.Background(), evidence(bad), now); err == nil {
		t.Fatal("damaged annotated bundle verified")
	}
}

func FuzzParseCollateral(f *testing.F) {
	f.Add(vcek)
	f.Add(append(pemCert(vcek), annotatedAskArk(f)...))
	f.Add(pemCert(vcek))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		chain, err := ParseCollateral(b)
		if err == nil && len(chain.GetVcekCert()) == 0 && len(chain.GetVlekCert()) == 0 {
			t.Fatal("collateral without endorsement key accepted")
		}
	})
}

// TestConcurrentVerify shares one Verifier across goroutines (run with
// -race).
func TestConcurrentVerify(t *testing.T) {
	v := &Verifier{}
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func() {
			_, err := v.Verify(context.Background(), evidence(vcek), now)
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
