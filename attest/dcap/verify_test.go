package dcap_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

type sample struct {
	dir     string
	tee     attest.TEE
	quote   []byte
	colJSON []byte
	col     *collateral.Collateral
}

func loadSample(t testing.TB, dir string) *sample {
	t.Helper()
	s := &sample{dir: dir, quote: dcaptest.Read(t, dir+"/quote.bin"), colJSON: dcaptest.Read(t, dir+"/collateral.json")}
	var err error
	if s.col, err = collateral.Parse(s.colJSON); err != nil {
		t.Fatal(err)
	}
	s.tee = attest.SGX
	if dir == "tdx-dcap" {
		s.tee = attest.TDX
	}
	return s
}

func newVerifier(t testing.TB, tee attest.TEE) *dcap.Verifier {
	t.Helper()
	v, err := dcap.New(tee, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var now = dcaptest.VerifyTime

func TestVerifySGX(t *testing.T) {
	s := loadSample(t, "sgx-dcap")
	v := newVerifier(t, attest.SGX)
	c, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SGX, Quote: s.quote, Collateral: s.colJSON}, now)
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != attest.SGX || c.Simulated {
		t.Errorf("TEE %s simulated %v", c.TEE, c.Simulated)
	}
	if !bytes.Equal(c.MREnclave, mustHex(t, "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")) {
		t.Errorf("MRENCLAVE %x", c.MREnclave)
	}
	if !bytes.Equal(c.MRSigner, mustHex(t, "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6")) {
		t.Errorf("MRSIGNER %x", c.MRSigner)
	}
	if c.ISVProdID != 0 || c.ISVSVN != 0 {
		t.Errorf("ISVPRODID %d ISVSVN %d", c.ISVProdID, c.ISVSVN)
	}
	if len(c.Attributes) != 16 || c.Attributes[0] != 0x05 || c.Debug {
		t.Errorf("attributes %x debug %v", c.Attributes, c.Debug)
	}
	wantRD := make([]byte, 64)
	copy(wantRD, "Hello, world!")
	if !bytes.Equal(c.ReportData, wantRD) {
		t.Errorf("report data %q", c.ReportData)
	}
	if c.FMSPC != "00A067110000" {
		t.Errorf("FMSPC %s", c.FMSPC)
	}
	if c.TCBStatus != attest.ConfigurationAndSWHardeningNeeded {
		t.Errorf("TCB status %s", c.TCBStatus)
	}
	if strings.Join(c.AdvisoryIDs, ",") != "INTEL-SA-00289,INTEL-SA-00615" {
		t.Errorf("advisories %v", c.AdvisoryIDs)
	}
	if want := time.Date(2025, 7, 19, 10, 1, 18, 0, time.UTC); !c.ValidUntil.Equal(want) {
		t.Errorf("ValidUntil %v, want %v (QE Identity nextUpdate)", c.ValidUntil, want)
	}
	if c.MRTD != nil || c.TDAttributes != nil {
		t.Error("TDX fields set for SGX")
	}
}

func TestVerifyTDX(t *testing.T) {
	s := loadSample(t, "tdx-dcap")
	v := newVerifier(t, attest.TDX)
	res, err := v.VerifyQuote(context.Background(), s.quote, s.col, now)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Claims
	if c.TEE != attest.TDX {
		t.Errorf("TEE %s", c.TEE)
	}
	if !bytes.Equal(c.MRTD, mustHex(t, "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7")) {
		t.Errorf("MRTD %x", c.MRTD)
	}
	q, _ := abi.ParseQuote(s.quote)
	for i := range c.RTMR {
		if !bytes.Equal(c.RTMR[i], q.TDReport.RTMR[i][:]) {
			t.Errorf("RTMR%d %x", i, c.RTMR[i])
		}
	}
	if !bytes.Equal(c.ReportData, q.TDReport.ReportData[:]) || len(c.MRConfigID) != 48 || len(c.MROwner) != 48 ||
		len(c.TDAttributes) != 8 || len(c.XFAM) != 8 || c.Debug {
		t.Errorf("claims %+v", c)
	}
	if c.FMSPC != "B0C06F000000" || c.TCBStatus != attest.UpToDate || len(c.AdvisoryIDs) != 0 {
		t.Errorf("FMSPC %s status %s advisories %v", c.FMSPC, c.TCBStatus, c.AdvisoryIDs)
	}
	if res.TDXModuleStatus != attest.UpToDate || res.QEStatus != attest.UpToDate || res.PCKCA != "platform" {
		t.Errorf("module %s QE %s CA %s", res.TDXModuleStatus, res.QEStatus, res.PCKCA)
	}
	if want := time.Date(2025, 7, 19, 10, 0, 35, 0, time.UTC); !c.ValidUntil.Equal(want) {
		t.Errorf("ValidUntil %v, want %v (PCK CRL nextUpdate)", c.ValidUntil, want)
	}
	if c.MREnclave != nil {
		t.Error("SGX fields set for TDX")
	}
}

func TestVerifyTimeWindow(t *testing.T) {
	for _, s := range []*sample{loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")} {
		v := newVerifier(t, s.tee)
		for _, tc := range []struct {
			at   time.Time
			want error
			text string
		}{
			{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), dcap.ErrCollateralExpired, "collateral expired"},
			{time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC), dcap.ErrNotYetValid, "not yet valid"},
			// Just outside the window the README gives for both samples.
			{time.Date(2025, 7, 19, 10, 56, 12, 0, time.UTC), dcap.ErrCollateralExpired, "collateral expired"},
			{time.Date(2025, 6, 19, 10, 0, 0, 0, time.UTC), dcap.ErrNotYetValid, "not yet valid"},
		} {
			_, err := v.VerifyQuote(context.Background(), s.quote, s.col, tc.at)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%s at %v: %v, want %q", s.dir, tc.at, err, tc.text)
			}
		}
		// Both edges of the README window are inside.
		for _, at := range []time.Time{
			time.Date(2025, 6, 19, 10, 56, 11, 0, time.UTC),
			time.Date(2025, 7, 19, 10, 0, 35, 0, time.UTC),
		} {
			if _, err := v.VerifyQuote(context.Background(), s.quote, s.col, at); err != nil {
				t.Errorf("%s at %v: %v", s.dir, at, err)
			}
		}
	}
}

// region is a byte range of a quote and the step a bit flip in it must be
// reported at ("" means any step).
type region struct {
	name       string
	start, end int
	step       string
}

func quoteRegions(t testing.TB, raw []byte) []region {
	t.Helper()
	q, err := abi.ParseQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	signed := len(q.SignedData())
	sigStart := signed + 4
	sd := q.SignatureData
	find := func(b []byte) int {
		i := bytes.Index(raw[sigStart:], b)
		if i < 0 || bytes.Index(raw[sigStart+i+1:], b) >= 0 {
			t.Fatalf("field not found uniquely")
		}
		return sigStart + i
	}
	qe := sd.QEReportCertificationData
	qeStart := find(qe.RawQEReport)
	authStart := qeStart + abi.EnclaveReportSize + abi.SignatureSize + 2
	return []region{
		{"header version/key type/tee type", 0, 8, ""},
		{"header QE/PCE SVN", 8, 12, dcap.StepQuoteSignature},
		{"header QE vendor ID", 12, 28, dcap.StepQuoteHeader},
		{"header user data", 28, 48, dcap.StepQuoteSignature},
		{"body", 48, signed, dcap.StepQuoteSignature},
		{"quote signature", sigStart, sigStart + 64, dcap.StepQuoteSignature},
		{"attestation key", sigStart + 64, sigStart + 128, dcap.StepQEReportData},
		{"QE report", qeStart, qeStart + abi.EnclaveReportSize, dcap.StepQEReportSignature},
		{"QE report signature", qeStart + abi.EnclaveReportSize, qeStart + abi.EnclaveReportSize + 64, dcap.StepQEReportSignature},
		{"QE auth data", authStart, authStart + len(qe.QEAuthData), dcap.StepQEReportData},
		{"certification data", authStart + len(qe.QEAuthData), len(raw) - q.TrailingZeros, ""},
	}
}

func TestBitFlipsQuote(t *testing.T) {
	for _, s := range []*sample{loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")} {
		v := newVerifier(t, s.tee)
		if _, err := v.VerifyQuote(context.Background(), s.quote, s.col, now); err != nil {
			t.Fatal(err)
		}
		for _, r := range quoteRegions(t, s.quote) {
			bits := []int{0, 1, 2, 3, 4, 5, 6, 7}
			if r.name == "certification data" || testing.Short() {
				bits = nil // one rotating bit per byte
			}
			n, stride := 0, 1
			if r.name == "certification data" && testing.Short() {
				stride = 13
			}
			for i := r.start; i < r.end; i += stride {
				bs := bits
				if bs == nil {
					bs = []int{i % 8}
				}
				for _, bit := range bs {
					b := append([]byte(nil), s.quote...)
					b[i] ^= 1 << bit
					_, err := v.VerifyQuote(context.Background(), b, s.col, now)
					n++
					if err == nil {
						t.Fatalf("%s: %s: flip of bit %d at byte %d verified", s.dir, r.name, bit, i)
					}
					var ve *dcap.VerifyError
					if !errors.As(err, &ve) || !strings.HasPrefix(err.Error(), "dcap: verify: step ") {
						t.Fatalf("%s: %s: error %v is not a step error", s.dir, r.name, err)
					}
					if r.step != "" && ve.Step != r.step {
						t.Fatalf("%s: %s: flip at byte %d bit %d failed at step %q, want %q: %v", s.dir, r.name, i, bit, ve.Step, r.step, err)
					}
				}
			}
			t.Logf("%s: %s: %d flips refused", s.dir, r.name, n)
		}
	}
}

func TestBitFlipsCollateralBodies(t *testing.T) {
	for _, s := range []*sample{loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")} {
		v := newVerifier(t, s.tee)
		stride := 1
		if testing.Short() {
			stride = 7
		}
		for _, f := range []struct {
			name string
			step string
			get  func(*collateral.Collateral) []byte
		}{
			{"tcb_info", dcap.StepTCBInfo, func(c *collateral.Collateral) []byte { return c.TCBInfo }},
			{"qe_identity", dcap.StepQEIdentity, func(c *collateral.Collateral) []byte { return c.QEIdentity }},
			{"tcb_info_signature", dcap.StepTCBInfo, func(c *collateral.Collateral) []byte { return c.TCBInfoSignature }},
			{"qe_identity_signature", dcap.StepQEIdentity, func(c *collateral.Collateral) []byte { return c.QEIdentitySignature }},
			{"root_ca_crl", "", func(c *collateral.Collateral) []byte { return c.RootCACRL }},
			{"pck_crl", "", func(c *collateral.Collateral) []byte { return c.PCKCRL }},
		} {
			n := len(f.get(s.col))
			count := 0
			for i := 0; i < n; i += stride {
				c := *s.col
				c.TCBInfo = bytes.Clone(c.TCBInfo)
				c.QEIdentity = bytes.Clone(c.QEIdentity)
				c.TCBInfoSignature = bytes.Clone(c.TCBInfoSignature)
				c.QEIdentitySignature = bytes.Clone(c.QEIdentitySignature)
				c.RootCACRL = bytes.Clone(c.RootCACRL)
				c.PCKCRL = bytes.Clone(c.PCKCRL)
				f.get(&c)[i] ^= 1 << (i % 8)
				_, err := v.VerifyQuote(context.Background(), s.quote, &c, now)
				count++
				if err == nil {
					t.Fatalf("%s: %s: flip at %d verified", s.dir, f.name, i)
				}
				if f.step != "" && !dcap.IsStep(err, f.step) {
					t.Fatalf("%s: %s: flip at %d: %v, want step %q", s.dir, f.name, i, err, f.step)
				}
			}
			t.Logf("%s: %s: %d flips refused", s.dir, f.name, count)
		}
	}
}

// Flips in the hex of the collateral JSON signatures, including case flips
// that hex decoders would otherwise accept.
func TestBitFlipsSignatureHex(t *testing.T) {
	for _, s := range []*sample{loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")} {
		v := newVerifier(t, s.tee)
		var m map[string]string
		if err := json.Unmarshal(s.colJSON, &m); err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{"tcb_info_signature", "qe_identity_signature"} {
			orig := m[field]
			for i := 0; i < len(orig); i++ {
				for bit := 0; bit < 8; bit++ {
					if testing.Short() && bit != i%8 {
						continue
					}
					b := []byte(orig)
					b[i] ^= 1 << bit
					m[field] = string(b)
					data, _ := json.Marshal(m)
					_, err := v.Verify(context.Background(), &attest.Evidence{Quote: s.quote, Collateral: data}, now)
					if err == nil {
						t.Fatalf("%s: %s: flip of bit %d at hex %d verified", s.dir, field, bit, i)
					}
					if !dcap.IsStep(err, dcap.StepCollateral) && !dcap.IsStep(err, dcap.StepTCBInfo) && !dcap.IsStep(err, dcap.StepQEIdentity) {
						t.Fatalf("%s: %s: %v", s.dir, field, err)
					}
				}
			}
			m[field] = orig
		}
	}
}

func TestTruncatedQuotesVerify(t *testing.T) {
	for _, s := range []*sample{loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")} {
		v := newVerifier(t, "")
		q, _ := abi.ParseQuote(s.quote)
		for n := 0; n < len(s.quote)-q.TrailingZeros; n++ {
			_, err := v.VerifyQuote(context.Background(), s.quote[:n], s.col, now)
			if !dcap.IsStep(err, dcap.StepParseQuote) {
				t.Fatalf("%s: %d bytes: %v", s.dir, n, err)
			}
		}
	}
}

func TestWrongCollateral(t *testing.T) {
	sgx, tdx := loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")
	v := newVerifier(t, "")
	if _, err := v.VerifyQuote(context.Background(), sgx.quote, tdx.col, now); err == nil {
		t.Error("SGX quote verified with TDX collateral")
	} else {
		t.Log(err)
	}
	if _, err := v.VerifyQuote(context.Background(), tdx.quote, sgx.col, now); err == nil {
		t.Error("TDX quote verified with SGX collateral")
	} else {
		t.Log(err)
	}
	// Mixing: SGX collateral with TDX TCB Info (signature valid, wrong id).
	c := *sgx.col
	c.TCBInfo, c.TCBInfoSignature = tdx.col.TCBInfo, tdx.col.TCBInfoSignature
	if _, err := v.VerifyQuote(context.Background(), sgx.quote, &c, now); !dcap.IsStep(err, dcap.StepFMSPC) {
		t.Errorf("TDX TCB Info for SGX quote: %v", err)
	}
	c = *sgx.col
	c.QEIdentity, c.QEIdentitySignature = tdx.col.QEIdentity, tdx.col.QEIdentitySignature
	if _, err := v.VerifyQuote(context.Background(), sgx.quote, &c, now); !dcap.IsStep(err, dcap.StepQEIdentityMatch) {
		t.Errorf("TD_QE identity for SGX quote: %v", err)
	}
	// A signature of the other body.
	c = *sgx.col
	c.TCBInfoSignature = sgx.col.QEIdentitySignature
	if _, err := v.VerifyQuote(context.Background(), sgx.quote, &c, now); !errors.Is(err, dcap.ErrSignatureInvalid) || !dcap.IsStep(err, dcap.StepTCBInfo) {
		t.Errorf("swapped signature: %v", err)
	}
}

func TestVerifierTEE(t *testing.T) {
	sgx, tdx := loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")
	vs, vt := newVerifier(t, attest.SGX), newVerifier(t, attest.TDX)
	if _, err := vs.VerifyQuote(context.Background(), tdx.quote, tdx.col, now); !dcap.IsStep(err, dcap.StepQuoteHeader) {
		t.Errorf("SGX verifier on TDX quote: %v", err)
	}
	if _, err := vt.VerifyQuote(context.Background(), sgx.quote, sgx.col, now); !dcap.IsStep(err, dcap.StepQuoteHeader) {
		t.Errorf("TDX verifier on SGX quote: %v", err)
	}
	if _, err := vs.Verify(context.Background(), &attest.Evidence{TEE: attest.TDX, Quote: sgx.quote, Collateral: sgx.colJSON}, now); err == nil {
		t.Error("evidence TEE mismatch accepted")
	}
	v := newVerifier(t, "")
	if _, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.TDX, Quote: sgx.quote, Collateral: sgx.colJSON}, now); err == nil {
		t.Error("evidence claiming TDX for an SGX quote accepted")
	}
	if _, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SGX, Simulated: true, Quote: sgx.quote, Collateral: sgx.colJSON}, now); err == nil {
		t.Error("simulated evidence accepted")
	}
	if _, err := v.Verify(context.Background(), nil, now); err == nil {
		t.Error("nil evidence accepted")
	}
	if _, err := v.Verify(context.Background(), &attest.Evidence{Quote: sgx.quote, Collateral: []byte("{")}, now); !dcap.IsStep(err, dcap.StepCollateral) {
		t.Errorf("bad collateral JSON: %v", err)
	}
	if _, err := v.Verify(context.Background(), &attest.Evidence{Quote: sgx.quote}, now); !dcap.IsStep(err, dcap.StepCollateral) {
		t.Errorf("no collateral, no source: %v", err)
	}
	if _, err := v.VerifyQuote(context.Background(), sgx.quote, sgx.col, time.Time{}); err == nil {
		t.Error("zero time accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.VerifyQuote(ctx, sgx.quote, sgx.col, now); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, err := dcap.New("sev-snp", nil); err == nil {
		t.Error("SNP verifier created")
	}
}

func TestCollateralFromCache(t *testing.T) {
	for _, s := range []*sample{loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")} {
		cache, err := collateral.NewCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		v, err := dcap.New(s.tee, &dcap.Options{Source: cache})
		if err != nil {
			t.Fatal(err)
		}
		ev := &attest.Evidence{TEE: s.tee, Quote: s.quote}
		if _, err := v.Verify(context.Background(), ev, now); !dcap.IsStep(err, dcap.StepCollateral) || !errors.Is(err, collateral.ErrNotFound) {
			t.Fatalf("empty cache: %v", err)
		}
		res, err := v.VerifyQuote(context.Background(), s.quote, s.col, now)
		if err != nil {
			t.Fatal(err)
		}
		key := collateral.Key{TEE: s.tee, FMSPC: res.PCK.FMSPCHex(), CA: res.PCKCA}
		if err := cache.Put(key, s.col); err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(context.Background(), ev, now)
		if err != nil {
			t.Fatal(err)
		}
		if c.FMSPC != key.FMSPC {
			t.Errorf("FMSPC %s", c.FMSPC)
		}
	}
}

// TestVerifySGXAnnotatedIssuerChains verifies the real SGX sample with its
// TCB Info and QE Identity issuer chains replaced by the same certificates
// as `openssl x509 -text` prints them (explanatory text around the blocks).
func TestVerifySGXAnnotatedIssuerChains(t *testing.T) {
	s := loadSample(t, "sgx-dcap")
	text, err := os.ReadFile(filepath.Join("collateral", "testdata", "intel-tcb-signing-chain.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if s.col.QEIdentityIssuerChain != s.col.TCBInfoIssuerChain {
		t.Fatal("sample's QE Identity issuer chain is not the TCB signing chain")
	}
	s.col.TCBInfoIssuerChain, s.col.QEIdentityIssuerChain = string(text), string(text)
	b, err := s.col.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, attest.SGX)
	c, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SGX, Quote: s.quote, Collateral: b}, now)
	if err != nil {
		t.Fatal(err)
	}
	if c.TCBStatus != attest.ConfigurationAndSWHardeningNeeded {
		t.Errorf("TCB status %s", c.TCBStatus)
	}
	// The text is ignored, the certificates are not: a flipped bit in the
	// TCB signing certificate's signature must still be refused.
	i := bytes.Index(text, []byte("-----END CERTIFICATE-----")) - 6
	bad := bytes.Clone(text)
	if bad[i] == 'A' {
		bad[i] = 'B'
	} else {
		bad[i] = 'A'
	}
	s.col.TCBInfoIssuerChain = string(bad)
	if b, err = s.col.MarshalJSON(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SGX, Quote: s.quote, Collateral: b}, now); err == nil {
		t.Error("tampered annotated chain accepted")
	}
}

func TestPinnedRoot(t *testing.T) {
	root, err := dcap.IntelRootCA()
	if err != nil {
		t.Fatal(err)
	}
	if root.Subject.CommonName != "Intel SGX Root CA" {
		t.Errorf("root %s", root.Subject)
	}
	s := loadSample(t, "sgx-dcap")
	certs, err := collateral.ParseCertChain(s.col.TCBInfoIssuerChain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(certs[1].Raw, root.Raw) {
		t.Error("collateral root differs from pinned root")
	}
}

func TestConcurrentVerify(t *testing.T) {
	samples := []*sample{loadSample(t, "sgx-dcap"), loadSample(t, "tdx-dcap")}
	v := newVerifier(t, "")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				s := samples[(g+i)%2]
				if _, err := v.Verify(context.Background(), &attest.Evidence{Quote: s.quote, Collateral: s.colJSON}, now); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}
