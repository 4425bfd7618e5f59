package dcap_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

// Synthetic hierarchies exercise the paths the two real samples cannot:
// revocation, every TCB status convergence, TDX module identities and the
// QE identity checks.

var (
	synNow       = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	synIssue     = synNow.Add(-24 * time.Hour)
	synNext      = synNow.Add(30 * 24 * time.Hour)
	synFMSPC     = [6]byte{0x00, 0x90, 0x6E, 0xA1, 0x00, 0x00}
	qeMRSigner   = [32]byte{0x8C, 0x4F, 1, 2, 3}
	tdQEMRSigner = [32]byte{0xDC, 0x9E, 4, 5, 6}
)

type lvl struct {
	sgx    uint8 // all 16 SGX components
	pcesvn uint16
	tdx    []uint8 // TDX components (16), nil for SGX
	status string
	adv    []string
}

func comps(vals []uint8) []map[string]any {
	out := make([]map[string]any, len(vals))
	for i, v := range vals {
		out[i] = map[string]any{"svn": v}
	}
	return out
}

func fill16(v uint8) []uint8 {
	s := make([]uint8, 16)
	for i := range s {
		s[i] = v
	}
	return s
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

type moduleIdentity struct {
	id     string
	levels []struct {
		isvsvn uint8
		status string
		adv    []string
	}
}

func tcbInfoJSON(t *testing.T, id string, fmspc [6]byte, levels []lvl, modules []moduleIdentity) []byte {
	t.Helper()
	var ls []map[string]any
	for _, l := range levels {
		tcb := map[string]any{"sgxtcbcomponents": comps(fill16(l.sgx)), "pcesvn": l.pcesvn}
		if l.tdx != nil {
			tcb["tdxtcbcomponents"] = comps(l.tdx)
		}
		m := map[string]any{"tcb": tcb, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": l.status}
		if l.adv != nil {
			m["advisoryIDs"] = l.adv
		}
		ls = append(ls, m)
	}
	doc := map[string]any{
		"id": id, "version": 3, "issueDate": ts(synIssue), "nextUpdate": ts(synNext),
		"fmspc": strings.ToUpper(hex.EncodeToString(fmspc[:])), "pceId": "0000", "tcbType": 0,
		"tcbEvaluationDataNumber": 17, "tcbLevels": ls,
	}
	if id == "TDX" {
		zero := strings.Repeat("00", 48)
		doc["tdxModule"] = map[string]any{"mrsigner": zero, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"}
		var ids []map[string]any
		for _, m := range modules {
			var ml []map[string]any
			for _, l := range m.levels {
				e := map[string]any{"tcb": map[string]any{"isvsvn": l.isvsvn}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": l.status}
				if l.adv != nil {
					e["advisoryIDs"] = l.adv
				}
				ml = append(ml, e)
			}
			ids = append(ids, map[string]any{"id": m.id, "mrsigner": zero, "attributes": "0000000000000000",
				"attributesMask": "FFFFFFFFFFFFFFFF", "tcbLevels": ml})
		}
		doc["tdxModuleIdentities"] = ids
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func qeIdentityJSON(t *testing.T, id string, mrsigner [32]byte, prodID int) []byte {
	t.Helper()
	doc := map[string]any{
		"id": id, "version": 2, "issueDate": ts(synIssue), "nextUpdate": ts(synNext), "tcbEvaluationDataNumber": 17,
		"miscselect": "00000000", "miscselectMask": "FFFFFFFF",
		"attributes": "11000000000000000000000000000000", "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
		"mrsigner": strings.ToUpper(hex.EncodeToString(mrsigner[:])), "isvprodid": prodID,
		"tcbLevels": []map[string]any{
			{"tcb": map[string]any{"isvsvn": 8}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
			{"tcb": map[string]any{"isvsvn": 6}, "tcbDate": "2021-11-10T00:00:00Z", "tcbStatus": "OutOfDate", "advisoryIDs": []string{"INTEL-SA-QE"}},
			{"tcb": map[string]any{"isvsvn": 2}, "tcbDate": "2019-11-10T00:00:00Z", "tcbStatus": "Revoked", "advisoryIDs": []string{"INTEL-SA-QR"}},
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// env is one synthetic platform and its collateral.
type env struct {
	pki     *dcaptest.PKI
	params  dcaptest.PCKParams
	pck     *x509.Certificate
	qp      dcaptest.QuoteParams
	tee     attest.TEE
	levels  []lvl
	modules []moduleIdentity
	tcbInfo []byte // overrides levels when set
	qeID    []byte
	// revoked certificates listed in the root CA CRL and the PCK CRL
	rootRevoked, pckRevoked []*x509.Certificate
	crlThis, crlNext        time.Time
}

func newEnv(t *testing.T, tee attest.TEE) *env {
	t.Helper()
	e := &env{tee: tee, crlThis: synIssue, crlNext: synNext}
	e.pki = dcaptest.NewPKI(t, synNow.AddDate(-1, 0, 0), synNow.AddDate(5, 0, 0))
	e.params = dcaptest.PCKParams{FMSPC: synFMSPC, PCESVN: 10}
	for i := range e.params.CompSVN {
		e.params.CompSVN[i] = 5
	}
	pck, pckKey := e.pki.NewPCK(t, e.params)
	e.pck = pck
	qe := abi.EnclaveReport{MRSigner: qeMRSigner, ISVProdID: 1, ISVSVN: 8}
	qe.Attributes[0] = 0x15
	e.qp = dcaptest.QuoteParams{QEReport: qe, QEAuthData: []byte("0123456789abcdef0123456789abcdef"),
		PCK: pck, PCKKey: pckKey, PKI: e.pki}
	if tee == attest.SGX {
		r := &abi.EnclaveReport{MREnclave: [32]byte{1}, MRSigner: [32]byte{2}, ISVProdID: 3, ISVSVN: 4}
		r.Attributes[0] = abi.SGXAttrInit | abi.SGXAttrMode64Bit
		copy(r.ReportData[:], "synthetic")
		e.qp.SGX = r
		e.levels = []lvl{
			{sgx: 4, pcesvn: 9, status: "OutOfDate", adv: []string{"INTEL-SA-OLD"}},
			{sgx: 5, pcesvn: 10, status: "UpToDate"},
		}
		e.qeID = qeIdentityJSON(t, "QE", qeMRSigner, 1)
	} else {
		e.qp.QEReport.MRSigner = tdQEMRSigner
		e.qp.QEReport.ISVProdID = 2
		td := &abi.TDReport10{MRTD: [48]byte{7}}
		td.TEETCBSVN = [16]byte{6, 1, 3}
		td.TDAttributes[3] = 0x10
		e.qp.TD = td
		e.levels = []lvl{
			{sgx: 5, pcesvn: 10, tdx: append([]uint8{5, 0, 3}, make([]uint8, 13)...), status: "UpToDate"},
			{sgx: 5, pcesvn: 10, tdx: append([]uint8{5, 0, 2}, make([]uint8, 13)...), status: "OutOfDate", adv: []string{"INTEL-SA-TDX"}},
		}
		e.modules = []moduleIdentity{{id: "TDX_01", levels: []struct {
			isvsvn uint8
			status string
			adv    []string
		}{{4, "UpToDate", nil}, {2, "OutOfDate", []string{"INTEL-SA-MOD"}}}}}
		e.qeID = qeIdentityJSON(t, "TD_QE", tdQEMRSigner, 2)
	}
	return e
}

func (e *env) collateral(t *testing.T) *collateral.Collateral {
	t.Helper()
	ti := e.tcbInfo
	if ti == nil {
		id := "SGX"
		if e.tee == attest.TDX {
			id = "TDX"
		}
		ti = tcbInfoJSON(t, id, synFMSPC, e.levels, e.modules)
	}
	rootCRL := dcaptest.CRL(t, e.pki.Root, e.pki.RootKey, e.crlThis, e.crlNext, e.rootRevoked...)
	pckCRL := dcaptest.CRL(t, e.pki.CA, e.pki.CAKey, e.crlThis, e.crlNext, e.pckRevoked...)
	return e.pki.Collateral(t, ti, e.qeID, rootCRL, pckCRL)
}

func (e *env) verify(t *testing.T) (*dcap.Result, error) {
	t.Helper()
	v, err := dcap.New(e.tee, &dcap.Options{Root: e.pki.Root})
	if err != nil {
		t.Fatal(err)
	}
	return v.VerifyQuote(context.Background(), dcaptest.Quote(t, e.qp), e.collateral(t), synNow)
}

func expectStatus(t *testing.T, e *env, status attest.TCBStatus, advisories ...string) *dcap.Result {
	t.Helper()
	res, err := e.verify(t)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if res.TCBStatus != status || strings.Join(res.AdvisoryIDs, ",") != strings.Join(advisories, ",") {
		t.Errorf("status %s advisories %v, want %s %v", res.TCBStatus, res.AdvisoryIDs, status, advisories)
	}
	if res.Claims.TCBStatus != status {
		t.Errorf("claims status %s", res.Claims.TCBStatus)
	}
	return res
}

func expectErr(t *testing.T, e *env, step string, target error) {
	t.Helper()
	_, err := e.verify(t)
	if err == nil {
		t.Fatalf("verified, want failure at step %q", step)
	}
	if !dcap.IsStep(err, step) {
		t.Errorf("error %v, want step %q", err, step)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %v, want %v", err, target)
	}
}

func TestSyntheticSGX(t *testing.T) {
	res := expectStatus(t, newEnv(t, attest.SGX), attest.UpToDate)
	c := res.Claims
	if c.TEE != attest.SGX || c.MREnclave[0] != 1 || c.ISVProdID != 3 || c.ISVSVN != 4 || c.Debug || c.FMSPC != "00906EA10000" {
		t.Errorf("claims %+v", c)
	}
	if !c.ValidUntil.Equal(synNext) {
		t.Errorf("ValidUntil %v", c.ValidUntil)
	}

	t.Run("debug enclave", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.qp.SGX.Attributes[0] |= abi.SGXAttrDebug
		if res := expectStatus(t, e, attest.UpToDate); !res.Claims.Debug {
			t.Error("Debug not reported")
		}
	})
	t.Run("lower platform level", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.levels[1].sgx = 6
		expectStatus(t, e, attest.OutOfDate, "INTEL-SA-OLD")
	})
	t.Run("pcesvn below", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.levels[1].pcesvn = 11
		expectStatus(t, e, attest.OutOfDate, "INTEL-SA-OLD")
	})
	t.Run("below every level", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.levels = e.levels[1:]
		e.levels[0].sgx = 6
		expectErr(t, e, dcap.StepPlatformTCB, dcap.ErrTCBNotSupported)
	})
	t.Run("revoked platform level", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.levels[1].status = "Revoked"
		expectErr(t, e, dcap.StepTCBStatus, dcap.ErrTCBRevoked)
	})
	t.Run("unknown platform status", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.levels[1].status = "Fine"
		expectErr(t, e, dcap.StepPlatformTCB, nil)
	})
	for _, tc := range []struct {
		platform string
		qesvn    uint16
		want     attest.TCBStatus
		adv      []string
	}{
		{"UpToDate", 7, attest.OutOfDate, []string{"INTEL-SA-P", "INTEL-SA-QE"}},
		{"SWHardeningNeeded", 6, attest.OutOfDate, []string{"INTEL-SA-P", "INTEL-SA-QE"}},
		{"ConfigurationNeeded", 7, attest.OutOfDateConfigurationNeeded, []string{"INTEL-SA-P", "INTEL-SA-QE"}},
		{"ConfigurationAndSWHardeningNeeded", 7, attest.OutOfDateConfigurationNeeded, []string{"INTEL-SA-P", "INTEL-SA-QE"}},
		{"OutOfDateConfigurationNeeded", 7, attest.OutOfDateConfigurationNeeded, []string{"INTEL-SA-P", "INTEL-SA-QE"}},
		{"ConfigurationNeeded", 9, attest.ConfigurationNeeded, []string{"INTEL-SA-P"}},
		{"SWHardeningNeeded", 8, attest.SWHardeningNeeded, []string{"INTEL-SA-P"}},
	} {
		t.Run("converge "+tc.platform, func(t *testing.T) {
			e := newEnv(t, attest.SGX)
			e.levels[1].status, e.levels[1].adv = tc.platform, []string{"INTEL-SA-P", "INTEL-SA-QE"}[:1]
			e.qp.QEReport.ISVSVN = tc.qesvn
			res := expectStatus(t, e, tc.want, tc.adv...)
			if res.PlatformStatus != attest.TCBStatus(tc.platform) {
				t.Errorf("platform status %s", res.PlatformStatus)
			}
		})
	}
	t.Run("QE revoked", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.qp.QEReport.ISVSVN = 3
		expectErr(t, e, dcap.StepTCBStatus, dcap.ErrTCBRevoked)
	})
	t.Run("QE below every level", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.qp.QEReport.ISVSVN = 1
		expectErr(t, e, dcap.StepQEIdentityMatch, dcap.ErrTCBNotSupported)
	})
	for name, mod := range map[string]func(*abi.EnclaveReport){
		"QE mrsigner":   func(r *abi.EnclaveReport) { r.MRSigner[31] ^= 1 },
		"QE isvprodid":  func(r *abi.EnclaveReport) { r.ISVProdID = 2 },
		"QE miscselect": func(r *abi.EnclaveReport) { r.MiscSelect = 1 },
		"QE debug":      func(r *abi.EnclaveReport) { r.Attributes[0] |= abi.SGXAttrDebug },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, attest.SGX)
			mod(&e.qp.QEReport)
			expectErr(t, e, dcap.StepQEIdentityMatch, nil)
		})
	}
	t.Run("QE attributes outside mask ignored", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.qp.QEReport.Attributes[0] |= 0x04 // masked out by FB
		e.qp.QEReport.Attributes[9] = 0xFF
		expectStatus(t, e, attest.UpToDate)
	})
	t.Run("FMSPC mismatch", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.tcbInfo = tcbInfoJSON(t, "SGX", [6]byte{1, 2, 3, 4, 5, 6}, e.levels, nil)
		expectErr(t, e, dcap.StepFMSPC, nil)
	})
	t.Run("PCE-ID mismatch", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.tcbInfo = []byte(strings.Replace(string(tcbInfoJSON(t, "SGX", synFMSPC, e.levels, nil)), `"pceId":"0000"`, `"pceId":"0001"`, 1))
		expectErr(t, e, dcap.StepFMSPC, nil)
	})
	t.Run("TDX TCB Info for SGX quote", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		for i := range e.levels {
			e.levels[i].tdx = fill16(0)
		}
		e.tcbInfo = tcbInfoJSON(t, "TDX", synFMSPC, e.levels, nil)
		expectErr(t, e, dcap.StepFMSPC, nil)
	})
	t.Run("TD_QE identity for SGX quote", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.qeID = qeIdentityJSON(t, "TD_QE", qeMRSigner, 1)
		expectErr(t, e, dcap.StepQEIdentityMatch, nil)
	})
}

func TestSyntheticLevelOrder(t *testing.T) {
	// Levels listed in ascending order still select the highest level the
	// platform meets (Intel orders levels canonically).
	e := newEnv(t, attest.SGX)
	e.levels = []lvl{
		{sgx: 1, pcesvn: 1, status: "OutOfDate", adv: []string{"A"}},
		{sgx: 4, pcesvn: 9, status: "SWHardeningNeeded", adv: []string{"B"}},
		{sgx: 5, pcesvn: 10, status: "ConfigurationNeeded", adv: []string{"C"}},
		{sgx: 5, pcesvn: 9, status: "OutOfDate", adv: []string{"D"}},
	}
	expectStatus(t, e, attest.ConfigurationNeeded, "C")
}

func TestSyntheticRevocation(t *testing.T) {
	t.Run("PCK certificate revoked", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.pckRevoked = []*x509.Certificate{e.pck}
		expectErr(t, e, dcap.StepPCKCRL, dcap.ErrRevoked)
	})
	t.Run("other certificate revoked", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		other, _ := e.pki.NewPCK(t, e.params)
		e.pckRevoked = []*x509.Certificate{other}
		expectStatus(t, e, attest.UpToDate)
	})
	t.Run("PCK CA revoked", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.rootRevoked = []*x509.Certificate{e.pki.CA}
		expectErr(t, e, dcap.StepRootCACRL, dcap.ErrRevoked)
	})
	t.Run("TCB signing revoked", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.rootRevoked = []*x509.Certificate{e.pki.TCBSigning}
		expectErr(t, e, dcap.StepTCBInfo, dcap.ErrRevoked)
	})
	t.Run("CRLs expired", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.crlThis, e.crlNext = synNow.AddDate(0, -2, 0), synNow.AddDate(0, -1, 0)
		expectErr(t, e, dcap.StepRootCACRL, dcap.ErrCollateralExpired)
	})
	t.Run("CRLs not yet valid", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.crlThis = synNow.Add(time.Hour)
		expectErr(t, e, dcap.StepRootCACRL, dcap.ErrNotYetValid)
	})
	t.Run("PCK CRL signed by the wrong key", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		v, _ := dcap.New(attest.SGX, &dcap.Options{Root: e.pki.Root})
		col := e.collateral(t)
		col.PCKCRL = dcaptest.CRL(t, e.pki.CA, e.pki.RootKey, synIssue, synNext)
		_, err := v.VerifyQuote(context.Background(), dcaptest.Quote(t, e.qp), col, synNow)
		if !dcap.IsStep(err, dcap.StepPCKCRL) {
			t.Errorf("%v", err)
		}
	})
	t.Run("PCK CRL of another CA", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		v, _ := dcap.New(attest.SGX, &dcap.Options{Root: e.pki.Root})
		col := e.collateral(t)
		col.PCKCRL = dcaptest.CRL(t, e.pki.Root, e.pki.RootKey, synIssue, synNext)
		_, err := v.VerifyQuote(context.Background(), dcaptest.Quote(t, e.qp), col, synNow)
		if !dcap.IsStep(err, dcap.StepPCKCRL) {
			t.Errorf("%v", err)
		}
	})
}

func TestSyntheticChains(t *testing.T) {
	t.Run("not the pinned root", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		v, _ := dcap.New(attest.SGX, nil) // Intel's root
		_, err := v.VerifyQuote(context.Background(), dcaptest.Quote(t, e.qp), e.collateral(t), synNow)
		if !dcap.IsStep(err, dcap.StepPCKChain) || !errors.Is(err, dcap.ErrUntrustedRoot) {
			t.Errorf("%v", err)
		}
	})
	t.Run("chain without root", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.qp.Chain = []*x509.Certificate{e.pck, e.pki.CA}
		expectErr(t, e, dcap.StepPCKChain, nil)
	})
	t.Run("leaf from another CA", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		other := dcaptest.NewPKI(t, e.pki.NotBefore, e.pki.NotAfter)
		leaf, key := other.NewPCK(t, e.params)
		e.qp.PCK, e.qp.PCKKey = leaf, key
		e.qp.Chain = []*x509.Certificate{leaf, e.pki.CA, e.pki.Root}
		expectErr(t, e, dcap.StepPCKChain, nil)
	})
	t.Run("QE report signed by another key", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		_, key := e.pki.NewPCK(t, e.params)
		e.qp.PCKKey = key
		expectErr(t, e, dcap.StepQEReportSignature, dcap.ErrSignatureInvalid)
	})
	t.Run("QE report data tail not zero", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.qp.QEReportDataTail = []byte{0, 0, 1}
		expectErr(t, e, dcap.StepQEReportData, nil)
	})
	t.Run("PCK certificate expired", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.pki = dcaptest.NewPKI(t, synNow.AddDate(-2, 0, 0), synNow.AddDate(0, 0, -1))
		pck, key := e.pki.NewPCK(t, e.params)
		e.qp.PCK, e.qp.PCKKey, e.qp.PKI = pck, key, e.pki
		expectErr(t, e, dcap.StepPCKChain, dcap.ErrCertificateExpired)
	})
	t.Run("TCB Info expired", func(t *testing.T) {
		e := newEnv(t, attest.SGX)
		e.tcbInfo = []byte(strings.Replace(string(tcbInfoJSON(t, "SGX", synFMSPC, e.levels, nil)),
			ts(synNext), ts(synNow.Add(-time.Hour)), 1))
		e.tcbInfo = []byte(strings.Replace(string(e.tcbInfo), ts(synIssue), ts(synNow.Add(-2*time.Hour)), 1))
		expectErr(t, e, dcap.StepTCBInfo, dcap.ErrCollateralExpired)
	})
}

func TestSyntheticTDX(t *testing.T) {
	res := expectStatus(t, newEnv(t, attest.TDX), attest.UpToDate)
	if res.Claims.TEE != attest.TDX || res.Claims.MRTD[0] != 7 || res.TDXModuleStatus != attest.UpToDate || res.Claims.Debug {
		t.Errorf("result %+v", res.Claims)
	}
	t.Run("TD debug", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TDAttributes[0] = abi.TDAttrDebug
		if res := expectStatus(t, e, attest.UpToDate); !res.Claims.Debug {
			t.Error("Debug not reported")
		}
	})
	t.Run("module out of date", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TEETCBSVN[0] = 3
		res := expectStatus(t, e, attest.OutOfDate, "INTEL-SA-MOD")
		if res.TDXModuleStatus != attest.OutOfDate {
			t.Errorf("module status %s", res.TDXModuleStatus)
		}
	})
	t.Run("module out of date with configuration needed", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TEETCBSVN[0] = 2
		e.levels[0].status = "ConfigurationNeeded"
		expectStatus(t, e, attest.OutOfDateConfigurationNeeded, "INTEL-SA-MOD")
	})
	t.Run("module below every level", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TEETCBSVN[0] = 1
		expectErr(t, e, dcap.StepTDXModule, dcap.ErrTCBNotSupported)
	})
	t.Run("no identity for module version", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TEETCBSVN[1] = 2
		expectErr(t, e, dcap.StepTDXModule, nil)
	})
	t.Run("module version 0 compares all TDX components", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TEETCBSVN = [16]byte{5, 0, 3}
		res := expectStatus(t, e, attest.UpToDate)
		if res.TDXModuleStatus != "" {
			t.Errorf("module status %s without module identity", res.TDXModuleStatus)
		}
		e.qp.TD.TEETCBSVN = [16]byte{4, 0, 3}
		expectErr(t, e, dcap.StepPlatformTCB, dcap.ErrTCBNotSupported)
	})
	t.Run("module components 0 and 1 ignored for version > 0", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.levels[0].tdx[0], e.levels[0].tdx[1] = 200, 200
		expectStatus(t, e, attest.UpToDate)
	})
	t.Run("TDX components select lower level", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TEETCBSVN[2] = 2
		expectStatus(t, e, attest.OutOfDate, "INTEL-SA-TDX")
	})
	t.Run("TDX components below every level", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.TEETCBSVN[2] = 1
		expectErr(t, e, dcap.StepPlatformTCB, dcap.ErrTCBNotSupported)
	})
	t.Run("MRSIGNERSEAM mismatch", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.MRSignerSEAM[0] = 1
		expectErr(t, e, dcap.StepTDXModule, nil)
	})
	t.Run("SEAMATTRIBUTES set", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qp.TD.SEAMAttributes[7] = 0x80
		expectErr(t, e, dcap.StepTDXModule, nil)
	})
	t.Run("SGX QE identity for TDX quote", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		e.qeID = qeIdentityJSON(t, "QE", tdQEMRSigner, 2)
		expectErr(t, e, dcap.StepQEIdentityMatch, nil)
	})
	t.Run("SGX TCB Info for TDX quote", func(t *testing.T) {
		e := newEnv(t, attest.TDX)
		for i := range e.levels {
			e.levels[i].tdx = nil
		}
		e.tcbInfo = tcbInfoJSON(t, "SGX", synFMSPC, e.levels, nil)
		expectErr(t, e, dcap.StepFMSPC, nil)
	})
}
