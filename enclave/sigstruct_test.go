package enclave

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSigstructFixedVector builds a SIGSTRUCT byte by byte with literal
// offsets from the Intel SDM table (not the package's constants) and checks
// what ParseSigstruct reads from it.
func TestSigstructFixedVector(t *testing.T) {
	b := make([]byte, 1808)
	copy(b[0:], mustHex(t, "06000000e10000000000010000000000"))  // HEADER
	copy(b[16:], []byte{0x86, 0x80, 0x00, 0x00})                 // VENDOR 0x8086
	copy(b[20:], []byte{0x31, 0x12, 0x99, 0x19})                 // DATE 1999-12-31 (BCD, little-endian 0x19991231)
	copy(b[24:], mustHex(t, "01010000600000006000000001000000")) // HEADER2
	copy(b[40:], []byte{0x04, 0x03, 0x02, 0x01})                 // SWDEFINED 0x01020304
	b[44], b[127] = 0xaa, 0xbb                                   // reserved1 ends
	for i := 128; i < 512; i++ {                                 // MODULUS: byte i-128
		b[i] = byte(i - 128)
	}
	copy(b[512:], []byte{3, 0, 0, 0}) // EXPONENT
	for i := 516; i < 900; i++ {      // SIGNATURE
		b[i] = 0x5a
	}
	copy(b[900:], []byte{0x01, 0x00, 0x00, 0x00})                                                 // MISCSELECT = EXINFO
	copy(b[904:], []byte{0xff, 0xff, 0xff, 0xff})                                                 // MISCMASK
	b[908], b[909] = 0x11, 0x22                                                                   // CET attributes, mask
	copy(b[912:], mustHex(t, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"))                                 // ISVFAMILYID
	copy(b[928:], mustHex(t, "0600000000000000"+"0300000000000000"))                              // ATTRIBUTES: 64BIT|DEBUG, x87|SSE
	copy(b[944:], mustHex(t, "ffffffffffffffff"+"1bfff9ffffffffff"))                              // ATTRIBUTEMASK
	copy(b[960:], mustHex(t, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")) // ENCLAVEHASH
	copy(b[1008:], mustHex(t, "e0e1e2e3e4e5e6e7e8e9eaebecedeeef"))                                // ISVEXTPRODID
	copy(b[1024:], []byte{0x34, 0x12})                                                            // ISVPRODID 0x1234
	copy(b[1026:], []byte{0x07, 0x05})                                                            // ISVSVN 0x0507
	for i := 1040; i < 1424; i++ {                                                                // Q1
		b[i] = 0x01
	}
	for i := 1424; i < 1808; i++ { // Q2
		b[i] = 0x02
	}

	s, err := ParseSigstruct(b)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !bytes.Equal(jsonBytes(t, got), jsonBytes(t, want)) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("Vendor", s.Vendor, uint32(0x8086))
	check("Date", s.Date, Date{Year: 1999, Month: 12, Day: 31})
	check("SWDefined", s.SWDefined, uint32(0x01020304))
	check("Reserved1[0]", s.Reserved1[0], byte(0xaa))
	check("Reserved1[83]", s.Reserved1[83], byte(0xbb))
	check("Modulus[0]", s.Modulus[0], byte(0))
	check("Modulus[383]", s.Modulus[383], byte(383-256))
	check("Exponent", s.Exponent, uint32(3))
	check("Signature[0]", s.Signature[0], byte(0x5a))
	check("MiscSelect", s.MiscSelect, uint32(1))
	check("MiscMask", s.MiscMask, uint32(0xffffffff))
	check("CETAttributes", s.CETAttributes, uint8(0x11))
	check("CETAttributesMask", s.CETAttributesMask, uint8(0x22))
	check("ISVFamilyID[0]", s.ISVFamilyID[0], byte(0xf0))
	check("Attributes", s.Attributes, Attributes{Flags: 6, XFRM: 3})
	check("AttributeMask", s.AttributeMask, Attributes{Flags: 0xffffffffffffffff, XFRM: 0xfffffffffff9ff1b})
	check("EnclaveHash[31]", s.EnclaveHash[31], byte(0xff))
	check("ISVExtProdID[15]", s.ISVExtProdID[15], byte(0xef))
	check("ISVProdID", s.ISVProdID, uint16(0x1234))
	check("ISVSVN", s.ISVSVN, uint16(0x0507))
	check("Q1[383]", s.Q1[383], byte(1))
	check("Q2[0]", s.Q2[0], byte(2))

	info := s.Info()
	wantModulus := make([]byte, 384)
	for i := range wantModulus {
		wantModulus[i] = byte(i)
	}
	wantSigner := sha256.Sum256(wantModulus)
	check("Info", info, SigstructInfo{
		MREnclave:  Measurement(mustHex(t, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")),
		MRSigner:   Measurement(wantSigner),
		ISVProdID:  0x1234,
		ISVSVN:     0x0507,
		Debug:      true,
		Date:       "1999-12-31",
		Attributes: mustHex(t, "06000000000000000300000000000000"),
		MiscSelect: 1,
	})

	// The signed data is bytes [0,128) and [900,1028).
	data, err := s.SigningData()
	if err != nil {
		t.Fatal(err)
	}
	if want := append(bytes.Clone(b[0:128]), b[900:1028]...); !bytes.Equal(data, want) {
		t.Error("SigningData is not b[0:128] ‖ b[900:1028]")
	}
	out, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, b) {
		t.Error("Marshal(ParseSigstruct(b)) != b")
	}
	if err := s.Verify(); err == nil {
		t.Error("Verify accepted a SIGSTRUCT with a made-up signature")
	}
}

func jsonBytes(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSigstructPythonVector reads testdata/test-vector.sig, made by
// testdata/sigstruct_vector.py (literal offsets, `openssl dgst -sha256
// -sign`, Python integers for Q1/Q2) with the committed test key.
func TestSigstructPythonVector(t *testing.T) {
	b, err := os.ReadFile(testVectorPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigstruct(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	key := testKey(t)
	enclaveHash := sha256.Sum256([]byte("teeml test enclave"))
	want := SigstructInfo{
		MREnclave:  Measurement(enclaveHash),
		MRSigner:   Measurement(MRSigner(&key.PublicKey)),
		ISVProdID:  0x1234,
		ISVSVN:     0x0507,
		Debug:      true,
		Date:       "2024-03-15",
		Attributes: mustHex(t, "06000000000000000300000000000000"),
	}
	if got := s.Info(); !bytes.Equal(jsonBytes(t, got), jsonBytes(t, want)) {
		t.Fatalf("Info = %s\nwant   %s", jsonBytes(t, got), jsonBytes(t, want))
	}
	// The same fields through NewSigstruct and Sign give the same bytes:
	// PKCS#1 v1.5 signatures are deterministic.
	ns := NewSigstruct(SigstructParams{MREnclave: enclaveHash, ISVProdID: 0x1234, ISVSVN: 0x0507, Debug: true, Date: Date{2024, 3, 15}})
	if err := ns.Sign(key); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, b) {
		for i := range out {
			if out[i] != b[i] {
				t.Fatalf("Go-signed SIGSTRUCT differs from the Python/OpenSSL vector, first at byte %d", i)
			}
		}
	}
}

func signedTestSigstruct(t testing.TB) *Sigstruct {
	t.Helper()
	s := NewSigstruct(SigstructParams{
		MREnclave: sha256.Sum256([]byte("round trip")),
		ISVProdID: 7,
		ISVSVN:    3,
		Date:      Date{2026, 1, 2},
	})
	if err := s.Sign(testKey(t)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSigstructRoundTrip(t *testing.T) {
	s := signedTestSigstruct(t)
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != SigstructSize {
		t.Fatalf("%d bytes", len(b))
	}
	p, err := ParseSigstruct(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(); err != nil {
		t.Fatal(err)
	}
	if *p != *s {
		t.Fatal("parsed SIGSTRUCT differs from the signed one")
	}
	info := p.Info()
	key := testKey(t)
	if info.MRSigner != Measurement(MRSigner(&key.PublicKey)) || info.MREnclave != Measurement(sha256.Sum256([]byte("round trip"))) ||
		info.ISVProdID != 7 || info.ISVSVN != 3 || info.Debug || info.Date != "2026-01-02" {
		t.Fatalf("Info = %+v", info)
	}
	if p.Attributes != (Attributes{Flags: FlagMode64Bit, XFRM: XFRMLegacy}) {
		t.Fatalf("attributes %+v", p.Attributes)
	}
}

// TestSigstructCrossCheckPython has the independent Python checker verify a
// Go-signed SIGSTRUCT (signature by modular exponentiation, Q1, Q2) and
// compares the fields it reads with Info.
func TestSigstructCrossCheckPython(t *testing.T) {
	needTools(t, "/usr/bin/python3")
	for _, debug := range []bool{false, true} {
		s := NewSigstruct(SigstructParams{MREnclave: sha256.Sum256([]byte("x")), ISVProdID: 65535, ISVSVN: 258, Debug: debug, Date: Date{2025, 10, 9}})
		if err := s.Sign(generatedKey(t)); err != nil {
			t.Fatal(err)
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "x.sig")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("/usr/bin/python3", testVectorScript, "check", path).Output()
		if err != nil {
			t.Fatalf("python check: %v", err)
		}
		var got struct {
			Verified bool `json:"verified"`
			SigstructInfo
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !got.Verified {
			t.Fatal("Python checker rejects the Go signature or Q1/Q2")
		}
		want := s.Info()
		want.Attributes, want.MiscSelect = nil, 0 // the checker does not print these
		if !bytes.Equal(jsonBytes(t, got.SigstructInfo), jsonBytes(t, want)) {
			t.Fatalf("python: %s\ngo:     %s", jsonBytes(t, got.SigstructInfo), jsonBytes(t, want))
		}
	}
}

// TestSigstructVectorRegenerate re-runs the Python/OpenSSL maker with the
// committed key: OpenSSL's deterministic PKCS#1 v1.5 signature must give
// the committed vector again.
func TestSigstructVectorRegenerate(t *testing.T) {
	needTools(t, "/usr/bin/python3", "openssl")
	out := filepath.Join(t.TempDir(), "v.sig")
	if msg, err := exec.Command("/usr/bin/python3", testVectorScript, "make", testKeyPath, out).CombinedOutput(); err != nil {
		t.Fatalf("python make: %v: %s", err, msg)
	}
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(testVectorPath)
	if !bytes.Equal(got, want) {
		t.Fatal("regenerated vector differs from testdata/test-vector.sig")
	}
}

func TestSigstructTamper(t *testing.T) {
	s := signedTestSigstruct(t)
	good, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Offsets in every signed field, the modulus, signature, Q1 and Q2.
	for _, off := range []int{16, 20, 40, 44, 127, 128, 300, 511, 516, 899, 900, 904, 908, 912, 928, 936, 944, 960, 991, 992, 1008, 1024, 1025, 1026, 1027, 1040, 1423, 1424, 1807} {
		b := bytes.Clone(good)
		b[off] ^= 0x01
		if off == 20 { // keep the date valid BCD: 02 → 03
			b[off] = 0x03
		}
		p, err := ParseSigstruct(b)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		if err := p.Verify(); err == nil {
			t.Errorf("tampering byte %d was not detected", off)
		}
	}
	// reserved4 (1028..1039) is not covered by the signature in SGX either.
	b := bytes.Clone(good)
	b[1030] ^= 1
	if p, _ := ParseSigstruct(b); p.Verify() != nil {
		t.Error("reserved4 is outside the signed data, but Verify failed")
	}
	// Exponent other than 3.
	p, _ := ParseSigstruct(good)
	p.Exponent = 65537
	if err := p.Verify(); err == nil || !strings.Contains(err.Error(), "exponent is 65537") {
		t.Errorf("exponent 65537: %v", err)
	}
	// Signature not less than the modulus.
	p, _ = ParseSigstruct(good)
	p.Signature = p.Modulus
	if err := p.Verify(); err == nil || !strings.Contains(err.Error(), "not less than the modulus") {
		t.Errorf("signature = modulus: %v", err)
	}
	// Short modulus.
	p, _ = ParseSigstruct(good)
	p.Modulus[383] = 0
	if err := p.Verify(); err == nil || !strings.Contains(err.Error(), "modulus has") {
		t.Errorf("short modulus: %v", err)
	}
}

func TestParseSigstructErrors(t *testing.T) {
	good, err := signedTestSigstruct(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"short", func(b []byte) []byte { return b[:1807] }, "sigstruct: length is 1807 bytes, want 1808"},
		{"long", func(b []byte) []byte { return append(b, 0) }, "sigstruct: length is 1809 bytes, want 1808"},
		{"empty", func(b []byte) []byte { return nil }, "sigstruct: length is 0 bytes, want 1808"},
		{"header", func(b []byte) []byte { b[4] = 0; return b }, "sigstruct: header is"},
		{"header2", func(b []byte) []byte { b[32] = 0; return b }, "sigstruct: header2 is"},
		{"date", func(b []byte) []byte { b[21] = 0x1a; return b }, "sigstruct: date 0x20261a02 is not binary-coded decimal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSigstruct(tc.edit(bytes.Clone(good)))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestDateBCD(t *testing.T) {
	for _, tc := range []struct {
		d   Date
		bcd uint32
	}{
		{Date{2023, 4, 14}, 0x20230414},
		{Date{0, 0, 0}, 0},
		{Date{9999, 99, 99}, 0x99999999},
		{Date{1970, 1, 1}, 0x19700101},
	} {
		got, err := tc.d.bcd()
		if err != nil || got != tc.bcd {
			t.Errorf("%v.bcd() = %#x, %v; want %#x", tc.d, got, err, tc.bcd)
		}
		back, err := dateFromBCD(tc.bcd)
		if err != nil || back != tc.d {
			t.Errorf("dateFromBCD(%#x) = %v, %v", tc.bcd, back, err)
		}
	}
	for _, d := range []Date{{10000, 1, 1}, {2020, 100, 1}, {2020, 1, -1}} {
		if _, err := d.bcd(); err == nil {
			t.Errorf("%v accepted", d)
		}
		if _, err := (&Sigstruct{Date: d}).Marshal(); err == nil {
			t.Errorf("Marshal with date %v succeeded", d)
		}
	}
	// Little-endian storage: 2023-04-14 is bytes 14 04 23 20 (Gramine's comment).
	b, _ := (&Sigstruct{Date: Date{2023, 4, 14}}).Marshal()
	if !bytes.Equal(b[20:24], []byte{0x14, 0x04, 0x23, 0x20}) {
		t.Errorf("date bytes % x", b[20:24])
	}
	if binary.LittleEndian.Uint32(b[20:]) != 0x20230414 {
		t.Error("date is not 0x20230414 little-endian")
	}
}

func TestSigstructInfoJSON(t *testing.T) {
	s := signedTestSigstruct(t)
	b, err := json.Marshal(s.Info())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(s.EnclaveHash[:])
	if m["mr_enclave"] != want {
		t.Errorf("mr_enclave %v, want %s", m["mr_enclave"], want)
	}
	signer := s.MRSigner()
	if m["mr_signer"] != hex.EncodeToString(signer[:]) {
		t.Errorf("mr_signer %v", m["mr_signer"])
	}
	for _, k := range []string{"isv_prod_id", "isv_svn", "debug", "date", "attributes", "misc_select"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
	var back SigstructInfo
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(jsonBytes(t, back), b) {
		t.Error("JSON round trip differs")
	}
	var meas Measurement
	if err := meas.UnmarshalText([]byte("abcd")); err == nil {
		t.Error("short measurement accepted")
	}
	if err := meas.UnmarshalText([]byte(strings.Repeat("zz", 32))); err == nil {
		t.Error("non-hex measurement accepted")
	}
}

func TestSignRejectsBadKey(t *testing.T) {
	s := NewSigstruct(SigstructParams{})
	if err := s.Sign(nil); err == nil {
		t.Fatal("nil key accepted")
	}
	k := *testKey(t)
	k.E = 65537
	if err := s.Sign(&k); err == nil || !strings.Contains(err.Error(), "exponent") {
		t.Fatalf("e=65537: %v", err)
	}
}

func FuzzParseSigstruct(f *testing.F) {
	if b, err := os.ReadFile(testVectorPath); err == nil {
		f.Add(b)
	}
	f.Add(make([]byte, SigstructSize))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSigstruct(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		out, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed SIGSTRUCT: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatal("Marshal(ParseSigstruct(b)) != b")
		}
		_ = s.Verify()
		_ = s.Info()
	})
}
