package collateral_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

func load(t *testing.T, dir string) (*collateral.Collateral, map[string]string) {
	t.Helper()
	raw := dcaptest.Read(t, dir+"/collateral.json")
	c, err := collateral.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return c, m
}

func TestParseCollateral(t *testing.T) {
	for _, dir := range []string{"sgx-dcap", "tdx-dcap"} {
		c, m := load(t, dir)
		// The bodies are the exact strings.
		if string(c.TCBInfo) != m["tcb_info"] || string(c.QEIdentity) != m["qe_identity"] {
			t.Errorf("%s: bodies not kept exactly", dir)
		}
		if len(c.TCBInfoSignature) != 64 || len(c.QEIdentitySignature) != 64 || len(c.RootCACRL) == 0 || len(c.PCKCRL) == 0 {
			t.Errorf("%s: decoded sizes", dir)
		}
		for _, chain := range []string{c.TCBInfoIssuerChain, c.QEIdentityIssuerChain, c.PCKCRLIssuerChain} {
			certs, err := collateral.ParseCertChain(chain)
			if err != nil || len(certs) != 2 {
				t.Errorf("%s: chain: %d certs, %v", dir, len(certs), err)
			}
		}
		// Round trip through MarshalJSON.
		b, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := collateral.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if c.Digest() != c2.Digest() {
			t.Errorf("%s: round trip changes digest", dir)
		}
	}
}

func TestParseCollateralErrors(t *testing.T) {
	_, m := load(t, "sgx-dcap")
	enc := func(m map[string]string) []byte { b, _ := json.Marshal(m); return b }
	for k := range m {
		mm := map[string]string{}
		for k2, v := range m {
			if k2 != k {
				mm[k2] = v
			}
		}
		if _, err := collateral.Parse(enc(mm)); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("missing %s: %v", k, err)
		}
	}
	bad := func(field, val string) {
		mm := map[string]string{}
		for k, v := range m {
			mm[k] = v
		}
		mm[field] = val
		if _, err := collateral.Parse(enc(mm)); err == nil {
			t.Errorf("%s = %.20q accepted", field, val)
		}
	}
	sig := m["tcb_info_signature"]
	bad("tcb_info_signature", sig[:len(sig)-2])
	bad("tcb_info_signature", sig+"00")
	bad("tcb_info_signature", "zz"+sig[2:])
	// Mixed case: flip the case of one letter.
	i := strings.IndexAny(sig, "abcdef")
	bad("tcb_info_signature", sig[:i]+strings.ToUpper(sig[i:i+1])+sig[i+1:])
	bad("pck_crl", m["pck_crl"][:3])
	for _, s := range []string{"", "[]", "{", `{"tcb_info":1}`, string(enc(m)) + "{}"} {
		if _, err := collateral.Parse([]byte(s)); err == nil {
			t.Errorf("Parse(%.30q) accepted", s)
		}
	}
	// All-upper-case hex is fine.
	mm := map[string]string{}
	for k, v := range m {
		mm[k] = v
	}
	mm["tcb_info_signature"] = strings.ToUpper(sig)
	if _, err := collateral.Parse(enc(mm)); err != nil {
		t.Errorf("upper-case hex refused: %v", err)
	}
}

func TestParseTCBInfo(t *testing.T) {
	c, _ := load(t, "sgx-dcap")
	ti, err := collateral.ParseTCBInfo(c.TCBInfo)
	if err != nil {
		t.Fatal(err)
	}
	if ti.ID != "SGX" || ti.Version != 3 || ti.FMSPC != [6]byte{0x00, 0xA0, 0x67, 0x11, 0x00, 0x00} || ti.PCEID != [2]byte{} {
		t.Errorf("%+v", ti)
	}
	if !ti.IssueDate.Equal(time.Date(2025, 6, 19, 10, 56, 11, 0, time.UTC)) || !ti.NextUpdate.Equal(time.Date(2025, 7, 19, 10, 56, 11, 0, time.UTC)) {
		t.Errorf("dates %v %v", ti.IssueDate, ti.NextUpdate)
	}
	if len(ti.TCBLevels) != 11 || ti.TCBLevels[1].TCBStatus != "ConfigurationAndSWHardeningNeeded" ||
		ti.TCBLevels[0].SGXComponents[6].SVN != 12 || ti.TCBLevels[0].PCESVN != 13 || ti.TDXModule != nil {
		t.Errorf("levels %+v", ti.TCBLevels[:2])
	}
	if got := ti.TCBLevels[1].AdvisoryIDs; len(got) != 2 || got[0] != "INTEL-SA-00289" {
		t.Errorf("advisories %v", got)
	}

	c, _ = load(t, "tdx-dcap")
	ti, err = collateral.ParseTCBInfo(c.TCBInfo)
	if err != nil {
		t.Fatal(err)
	}
	if ti.ID != "TDX" || ti.TDXModule == nil || len(ti.TDXModuleIdentities) != 2 || !ti.TCBLevels[0].HasTDXComponents {
		t.Fatalf("%+v", ti)
	}
	if ti.TCBLevels[0].TDXComponents[0].SVN != 5 || ti.TCBLevels[0].TDXComponents[0].Type != "TDX Module" {
		t.Errorf("tdx components %+v", ti.TCBLevels[0].TDXComponents[:3])
	}
	if id := ti.FindTDXModuleIdentity(1); id == nil || id.ID != "TDX_01" || len(id.TCBLevels) != 2 || id.TCBLevels[0].ISVSVN != 4 {
		t.Errorf("TDX_01: %+v", id)
	}
	if ti.FindTDXModuleIdentity(2) != nil {
		t.Error("TDX_02 found")
	}
}

func TestParseTCBInfoErrors(t *testing.T) {
	c, _ := load(t, "tdx-dcap")
	body := string(c.TCBInfo)
	for _, tc := range []struct{ old, new string }{
		{`"version":3`, `"version":2`},
		{`"id":"TDX"`, `"id":"XYZ"`},
		{`"fmspc":"B0C06F000000"`, `"fmspc":"B0C06F00000"`},
		{`"fmspc":"B0C06F000000"`, `"fmspc":"B0C06F0000ZZ"`},
		{`"issueDate":"2025-06-19T10:16:03Z"`, `"issueDate":"yesterday"`},
		{`"nextUpdate":"2025-07-19T10:16:03Z"`, `"nextUpdate":"2025-06-19T10:16:03Z"`},
		{`{"svn":2,"category":"BIOS","type":"Early Microcode Update"},`, ``},
		{`"pcesvn":11`, `"pcesvn":70000`},
		{`"svn":5,"category":"OS/VMM","type":"TDX Module"`, `"svn":256,"category":"OS/VMM","type":"TDX Module"`},
		{`"tcbType":0`, `"tcbType":1`},
		{`"tdxModule":{`, `"tdxModuleX":{`},
	} {
		if !strings.Contains(body, tc.old) {
			t.Fatalf("test body lacks %q", tc.old)
		}
		if _, err := collateral.ParseTCBInfo([]byte(strings.Replace(body, tc.old, tc.new, 1))); err == nil {
			t.Errorf("%q → %q accepted", tc.old, tc.new)
		}
	}
	if _, err := collateral.ParseTCBInfo([]byte(body + "x")); err == nil {
		t.Error("trailing data accepted")
	}
}

func TestParseQEIdentity(t *testing.T) {
	c, _ := load(t, "sgx-dcap")
	q, err := collateral.ParseQEIdentity(c.QEIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if q.ID != "QE" || q.Version != 2 || q.ISVProdID != 1 || q.MiscSelect != 0 || q.MiscSelectMask != 0xFFFFFFFF ||
		q.Attributes[0] != 0x11 || q.AttributesMask[0] != 0xFB || q.MRSigner[0] != 0x8C || len(q.TCBLevels) != 6 ||
		q.TCBLevels[0].ISVSVN != 8 || q.TCBLevels[1].AdvisoryIDs[0] != "INTEL-SA-00615" {
		t.Errorf("%+v", q)
	}
	c, _ = load(t, "tdx-dcap")
	if q, err = collateral.ParseQEIdentity(c.QEIdentity); err != nil || q.ID != "TD_QE" || q.ISVProdID != 2 {
		t.Errorf("TD_QE: %+v %v", q, err)
	}
	body := string(c.QEIdentity)
	for _, tc := range []struct{ old, new string }{
		{`"version":2`, `"version":1`},
		{`"id":"TD_QE"`, `"id":"QQ"`},
		{`"mrsigner":"DC9E`, `"mrsigner":"DC9`},
		{`"isvprodid":2`, `"isvprodid":-2`},
		{`"miscselectMask":"FFFFFFFF"`, `"miscselectMask":"FFFFFFF"`},
		{`"tcbLevels":[{"tcb":{"isvsvn":4}`, `"tcbLevels":[{"tcb":{"isvsvnX":4}`},
	} {
		if _, err := collateral.ParseQEIdentity([]byte(strings.Replace(body, tc.old, tc.new, 1))); err == nil {
			t.Errorf("%q → %q accepted", tc.old, tc.new)
		}
	}
}

func TestDecodeHex(t *testing.T) {
	for s, ok := range map[string]bool{"": true, "00ff": true, "00FF": true, "0aF0": false, "0g": false, "abc": false} {
		if _, err := collateral.DecodeHex(s); (err == nil) != ok {
			t.Errorf("DecodeHex(%q) err %v", s, err)
		}
	}
}

func TestCache(t *testing.T) {
	c, _ := load(t, "sgx-dcap")
	dir := filepath.Join(t.TempDir(), "cache")
	cache, err := collateral.NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := collateral.Key{TEE: attest.SGX, FMSPC: "00A067110000", CA: collateral.CAProcessor}
	if _, err := cache.Get(key); !errors.Is(err, collateral.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty cache Get: %v", err)
	}
	if err := cache.Put(key, c); err != nil {
		t.Fatal(err)
	}
	got, err := cache.Get(key)
	if err != nil || got.Digest() != c.Digest() {
		t.Fatalf("Get after Put: %v", err)
	}
	keys, err := cache.Keys()
	if err != nil || len(keys) != 1 || keys[0] != key {
		t.Errorf("Keys = %v, %v", keys, err)
	}
	// No temporary files are left behind; the file is private.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "sgx-00A067110000-processor.json" {
		t.Errorf("cache dir entries %v", ents)
	}
	if st, _ := os.Stat(filepath.Join(dir, ents[0].Name())); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	// Invalid keys never reach the file system.
	for _, k := range []collateral.Key{
		{TEE: "snp", FMSPC: "00A067110000", CA: "processor"},
		{TEE: attest.SGX, FMSPC: "../../etc/pw", CA: "processor"},
		{TEE: attest.SGX, FMSPC: "00a067110000", CA: "processor"},
		{TEE: attest.SGX, FMSPC: "00A067110000", CA: "x/y"},
	} {
		if err := cache.Put(k, c); err == nil {
			t.Errorf("Put(%v) accepted", k)
		}
		if _, err := cache.Get(k); err == nil {
			t.Errorf("Get(%v) accepted", k)
		}
	}
	// Concurrent writers and readers never observe a partial file.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); _ = cache.Put(key, c) }()
		go func() {
			defer wg.Done()
			if _, err := cache.Get(key); err != nil {
				t.Errorf("concurrent Get: %v", err)
			}
		}()
	}
	wg.Wait()
	// A corrupt entry is an error, not a panic.
	if err := os.WriteFile(filepath.Join(dir, ents[0].Name()), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(key); err == nil {
		t.Error("corrupt entry accepted")
	}
	if err := cache.Delete(key); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(key); !errors.Is(err, collateral.ErrNotFound) {
		t.Errorf("after Delete: %v", err)
	}
}

func TestDigestSeparatesFields(t *testing.T) {
	a := &collateral.Collateral{TCBInfo: []byte("ab"), QEIdentity: []byte("c")}
	b := &collateral.Collateral{TCBInfo: []byte("a"), QEIdentity: []byte("bc")}
	if a.Digest() == b.Digest() {
		t.Error("digest ignores field boundaries")
	}
	if !bytes.Equal(a.TCBInfo, []byte("ab")) {
		t.Error("digest mutated input")
	}
}

// TestParseCertChainAnnotated parses Intel's real TCB signing chain (the
// sgx-dcap sample's tcb_info_issuer_chain) as `openssl x509 -text` prints
// it: explanatory text before each block, as RFC 7468 allows. The
// certificates must be exactly those of the plain chain; a damaged block in
// the same file must still be refused.
func TestParseCertChainAnnotated(t *testing.T) {
	c, _ := load(t, "sgx-dcap")
	plain, err := collateral.ParseCertChain(c.TCBInfoIssuerChain)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join("testdata", "intel-tcb-signing-chain.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(text, []byte("Certificate:\n")) {
		t.Fatal("testdata does not start with explanatory text")
	}
	got, err := collateral.ParseCertChain(string(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(plain) {
		t.Fatalf("%d certificates, want %d", len(got), len(plain))
	}
	for i := range got {
		if !bytes.Equal(got[i].Raw, plain[i].Raw) {
			t.Errorf("certificate %d differs from the plain chain", i)
		}
	}
	if err := got[0].CheckSignatureFrom(got[1]); err != nil {
		t.Errorf("TCB signing certificate not signed by the root: %v", err)
	}
	// Damage the second block's base64 (one byte that is not base64).
	i := bytes.LastIndex(text, []byte("-----BEGIN CERTIFICATE-----\n")) + len("-----BEGIN CERTIFICATE-----\n")
	bad := append(bytes.Clone(text[:i]), append([]byte("*"), text[i+1:]...)...)
	if _, err := collateral.ParseCertChain(string(bad)); err == nil || !strings.Contains(err.Error(), "PEM block 2 (line 98): malformed") {
		t.Errorf("damaged block: %v", err)
	}
	if _, err := collateral.ParseCertChain("Certificate:\n    Data:\n"); err == nil || !strings.Contains(err.Error(), "certificate chain: no PEM certificate found") {
		t.Errorf("text only: %v", err)
	}
}

// tcbInfoV2 has the layout of a TCB Info version 2 body as Intel PCS API v3
// (and PCCS caches still serving it) return it: no id, and the TCB
// components as sgxtcbcompNNsvn fields. It is written from that layout, not
// recorded, and unsigned: it exercises the parser's refusal only.
const tcbInfoV2 = `{"version":2,"issueDate":"2025-06-19T10:56:11Z","nextUpdate":"2025-07-19T10:56:11Z","fmspc":"00a067110000","pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":17,` +
	`"tcbLevels":[{"tcb":{"sgxtcbcomp01svn":17,"sgxtcbcomp02svn":17,"sgxtcbcomp03svn":2,"sgxtcbcomp04svn":4,"sgxtcbcomp05svn":1,"sgxtcbcomp06svn":128,"sgxtcbcomp07svn":0,"sgxtcbcomp08svn":0,` +
	`"sgxtcbcomp09svn":0,"sgxtcbcomp10svn":0,"sgxtcbcomp11svn":0,"sgxtcbcomp12svn":0,"sgxtcbcomp13svn":0,"sgxtcbcomp14svn":0,"sgxtcbcomp15svn":0,"sgxtcbcomp16svn":0,"pcesvn":11},` +
	`"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"UpToDate"}]}`

func TestTCBInfoV2Refused(t *testing.T) {
	const want = "collateral: tcb info: TCB Info version 2 (PCS API v3) is not supported: fetch v3 from PCS API v4"
	for name, body := range map[string]string{
		"v2":           tcbInfoV2,
		"v2 spaced":    strings.Replace(tcbInfoV2, `"version":2`, `"version" : 2 `, 1),
		"v2 with id":   strings.Replace(tcbInfoV2, `{"version":2`, `{"id":"SGX","version":2`, 1),
		"v2 reordered": strings.Replace(tcbInfoV2, `{"version":2,`, `{`, 1)[:len(tcbInfoV2)-len(`"version":2,`)-1] + `,"version":2}`,
	} {
		_, err := collateral.ParseTCBInfo([]byte(body))
		if err == nil || err.Error() != want || !errors.Is(err, collateral.ErrTCBInfoV2) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	// Other versions keep their own error; version 3 is unaffected.
	if _, err := collateral.ParseTCBInfo([]byte(strings.Replace(tcbInfoV2, `"version":2`, `"version":1`, 1))); err == nil || errors.Is(err, collateral.ErrTCBInfoV2) {
		t.Errorf("version 1: %v", err)
	}
	c, _ := load(t, "sgx-dcap")
	if _, err := collateral.ParseTCBInfo(c.TCBInfo); err != nil {
		t.Errorf("real v3 body: %v", err)
	}
	if _, err := collateral.ParseTCBInfo([]byte(`{"version":"2"}`)); errors.Is(err, collateral.ErrTCBInfoV2) {
		t.Error("string version taken for version 2")
	}
}
