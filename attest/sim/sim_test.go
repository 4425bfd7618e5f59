package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"

	"github.com/teeml/teeml/internal/testlog"
)

type logBuf = testlog.Buffer

func testLogger() (*slog.Logger, *logBuf) {
	buf := &logBuf{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn})), buf
}

func sgxIdentity() Identity {
	id := Identity{TEE: attest.SGX, ISVProdID: 7, ISVSVN: 3}
	for i := range id.MREnclave {
		id.MREnclave[i] = byte(i)
		id.MRSigner[i] = byte(0xa0 + i)
	}
	id.Attributes[0] = 0x04 // MODE64BIT, no DEBUG
	return id
}

func newPair(t *testing.T, id Identity) (*Issuer, *Verifier, *logBuf) {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(key, id)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(iss.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	l, buf := testLogger()
	iss.Logger, v.Logger = l, l
	return iss, v, buf
}

func TestIssueVerifySGX(t *testing.T) {
	iss, v, logs := newPair(t, sgxIdentity())
	rd := []byte("nonce-1234")
	ev, err := iss.Issue(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Simulated || ev.TEE != attest.SGX || len(ev.Quote) != QuoteSize || !strings.HasPrefix(string(ev.Quote), Magic) {
		t.Fatalf("evidence = %+v", ev)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), Warning) || !strings.Contains(logs.String(), "op=issue") {
		t.Fatalf("issue did not warn: %q", logs.String())
	}
	c, err := v.Verify(context.Background(), ev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "op=verify") {
		t.Fatalf("verify did not warn: %q", logs.String())
	}
	want := sgxIdentity()
	if !c.Simulated || c.TEE != attest.SGX || c.TCBStatus != attest.TCBUnknown || c.Debug {
		t.Fatalf("claims = %+v", c)
	}
	if !bytes.Equal(c.MREnclave, want.MREnclave[:]) || !bytes.Equal(c.MRSigner, want.MRSigner[:]) ||
		c.ISVProdID != 7 || c.ISVSVN != 3 || !bytes.Equal(c.Attributes, want.Attributes[:]) {
		t.Fatalf("SGX identity claims = %+v", c)
	}
	wantRD := make([]byte, 64)
	copy(wantRD, rd)
	if !bytes.Equal(c.ReportData, wantRD) {
		t.Fatalf("report data = %x, want %x", c.ReportData, wantRD)
	}
	if c.MRTD != nil || c.Measurement != nil {
		t.Fatalf("claims carry foreign TEE fields: %+v", c)
	}
}

func TestDebugBitPerTEE(t *testing.T) {
	for _, tee := range []attest.TEE{attest.SGX, attest.TDX, attest.SNP} {
		t.Run(string(tee), func(t *testing.T) {
			id := Identity{TEE: tee, Debug: true}
			iss, v, _ := newPair(t, id)
			ev, err := iss.Issue(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(context.Background(), ev, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !c.Debug {
				t.Fatalf("debug identity verified with Debug=false: %+v", c)
			}
			switch tee {
			case attest.SGX:
				if c.Attributes[0]&2 == 0 {
					t.Fatalf("SGX attributes %x lack DEBUG", c.Attributes)
				}
			case attest.TDX:
				if c.TDAttributes[0]&1 == 0 {
					t.Fatalf("TD attributes %x lack DEBUG", c.TDAttributes)
				}
			case attest.SNP:
				if c.SNPPolicy&(1<<19) == 0 {
					t.Fatalf("SNP policy %x lacks DEBUG", c.SNPPolicy)
				}
			}
		})
	}
}

func TestTDXAndSNPClaims(t *testing.T) {
	tdx := Identity{TEE: attest.TDX}
	tdx.MRTD[0], tdx.RTMR[2][5], tdx.MRConfigID[1], tdx.MROwner[2], tdx.XFAM[0] = 1, 2, 3, 4, 0xe7
	iss, v, _ := newPair(t, tdx)
	ev, _ := iss.Issue(context.Background(), []byte{9})
	c, err := v.Verify(context.Background(), ev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != attest.TDX || c.MRTD[0] != 1 || c.RTMR[2][5] != 2 || c.MRConfigID[1] != 3 || c.MROwner[2] != 4 || c.XFAM[0] != 0xe7 || c.Debug || c.MREnclave != nil {
		t.Fatalf("TDX claims = %+v", c)
	}
	snp := Identity{TEE: attest.SNP, SNPPolicy: 0x30000}
	snp.Measurement[47], snp.HostData[0] = 0x55, 0x66
	iss, v, _ = newPair(t, snp)
	ev, _ = iss.Issue(context.Background(), nil)
	c, err = v.Verify(context.Background(), ev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != attest.SNP || c.Measurement[47] != 0x55 || c.HostData[0] != 0x66 || c.SNPPolicy != 0x30000 || c.Debug {
		t.Fatalf("SNP claims = %+v", c)
	}
}

func TestRefusals(t *testing.T) {
	iss, v, _ := newPair(t, sgxIdentity())
	ev, err := iss.Issue(context.Background(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := newPair(t, sgxIdentity())
	otherEv, _ := other.Issue(context.Background(), []byte("x"))

	mod := func(f func(e *attest.Evidence)) *attest.Evidence {
		e := *ev
		e.Quote = bytes.Clone(ev.Quote)
		f(&e)
		return &e
	}
	cases := []struct {
		name    string
		v       *Verifier
		ev      *attest.Evidence
		wantErr string
	}{
		{"zero verifier", &Verifier{}, ev, "no trusted simulation keys"},
		{"untrusted key", v, otherEv, "not trusted"},
		{"not marked simulated", v, mod(func(e *attest.Evidence) { e.Simulated = false }), "not marked Simulated"},
		{"TEE mismatch", v, mod(func(e *attest.Evidence) { e.TEE = attest.TDX }), "imitates"},
		{"collateral", v, mod(func(e *attest.Evidence) { e.Collateral = []byte{1} }), "collateral"},
		{"truncated", v, mod(func(e *attest.Evidence) { e.Quote = e.Quote[:QuoteSize-1] }), "want 712"},
		{"extended", v, mod(func(e *attest.Evidence) { e.Quote = append(e.Quote, 0) }), "want 712"},
		{"no magic", v, mod(func(e *attest.Evidence) { e.Quote[0] = 'X' }), "magic"},
		{"bad kind", v, mod(func(e *attest.Evidence) { e.Quote[offKind] = 9 }), "unknown TEE kind"},
		{"reserved", v, mod(func(e *attest.Evidence) { e.Quote[offReserved+1] = 1 }), "reserved"},
		{"foreign field", v, mod(func(e *attest.Evidence) { e.Quote[offMRTD] = 1 }), "non-zero tdx fields"},
		{"nil evidence", v, nil, "no evidence"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(context.Background(), tc.ev, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Verify = %+v, %v; want error containing %q", c, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// TestEveryBitFlipRefused flips every bit of a valid quote: each must be
// refused, by the parser or by the signature.
func TestEveryBitFlipRefused(t *testing.T) {
	iss, v, _ := newPair(t, sgxIdentity())
	v.Logger = slog.New(slog.DiscardHandler)
	ev, err := iss.Issue(context.Background(), []byte("bind me"))
	if err != nil {
		t.Fatal(err)
	}
	for bit := 0; bit < 8*QuoteSize; bit++ {
		e := *ev
		e.Quote = bytes.Clone(ev.Quote)
		e.Quote[bit/8] ^= 1 << (bit % 8)
		if c, err := v.Verify(context.Background(), &e, time.Now()); err == nil {
			t.Fatalf("bit %d (byte %d) flipped: accepted %+v", bit, bit/8, c)
		}
	}
}

func TestNewIssuerChecks(t *testing.T) {
	key, _ := GenerateKey()
	if _, err := NewIssuer(nil, sgxIdentity()); err == nil {
		t.Fatal("nil key accepted")
	}
	if _, err := NewIssuer(key, Identity{TEE: "sev"}); err == nil || !strings.Contains(err.Error(), `"sev"`) {
		t.Fatalf("bad TEE: %v", err)
	}
	id := sgxIdentity()
	id.Measurement[0] = 1
	if _, err := NewIssuer(key, id); err == nil || !strings.Contains(err.Error(), "sev-snp fields") {
		t.Fatalf("foreign field: %v", err)
	}
	if _, err := NewVerifier(); err == nil {
		t.Fatal("verifier with no keys built")
	}
	iss, _ := NewIssuer(key, sgxIdentity())
	if _, err := iss.Issue(context.Background(), make([]byte, 65)); err == nil {
		t.Fatal("65-byte report data accepted")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	key, _ := GenerateKey()
	path := filepath.Join(dir, "sim.key")
	if err := SaveKey(path, key); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(key) {
		t.Fatal("loaded key differs")
	}
	pub, _ := MarshalPublicKey(&key.PublicKey)
	other, _ := GenerateKey()
	pub2, _ := MarshalPublicKey(&other.PublicKey)
	keys, err := ParsePublicKeys(append(pub, pub2...))
	if err != nil || len(keys) != 2 || !keys[0].Equal(&key.PublicKey) {
		t.Fatalf("ParsePublicKeys = %v, %v", keys, err)
	}
	for name, in := range map[string][]byte{
		"empty":    nil,
		"garbage":  []byte("hello"),
		"trailing": append(bytes.Clone(pub), "junk"...),
		"private":  mustPriv(t, key),
	} {
		if _, err := ParsePublicKeys(in); err == nil {
			t.Errorf("%s: ParsePublicKeys accepted", name)
		}
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("LoadKey missing: %v", err)
	}
	pubPath := filepath.Join(dir, "trusted.pem")
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if keys, err := LoadPublicKeys(pubPath); err != nil || len(keys) != 1 || !keys[0].Equal(&key.PublicKey) {
		t.Fatalf("LoadPublicKeys = %v, %v", keys, err)
	}
	if err := os.WriteFile(pubPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPublicKeys(pubPath); err == nil || !strings.Contains(err.Error(), "no PEM PUBLIC KEY block") {
		t.Fatalf("empty trusted-key file: %v", err)
	}
}

func mustPriv(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRoundTrip(t *testing.T) {
	iss, _, _ := newPair(t, sgxIdentity())
	ev, _ := iss.Issue(context.Background(), []byte("rt"))
	q, err := ParseQuote(ev.Quote)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(q.Marshal(), ev.Quote) {
		t.Fatal("Marshal(ParseQuote(b)) != b")
	}
	if binary.LittleEndian.Uint16(ev.Quote[offISVSVN:]) != 3 {
		t.Fatal("isv_svn offset")
	}
}

func FuzzParseSimQuote(f *testing.F) {
	key, _ := GenerateKey()
	for _, tee := range []attest.TEE{attest.SGX, attest.TDX, attest.SNP} {
		iss, err := NewIssuer(key, Identity{TEE: tee, Debug: true})
		if err != nil {
			f.Fatal(err)
		}
		iss.Logger = slog.New(slog.DiscardHandler)
		ev, _ := iss.Issue(context.Background(), []byte("seed"))
		f.Add(ev.Quote)
	}
	f.Add([]byte(Magic))
	f.Add([]byte{})
	v, _ := NewVerifier(&key.PublicKey)
	v.Logger = slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuote(b)
		if err != nil {
			if q != nil {
				t.Fatal("quote returned with error")
			}
			return
		}
		if !bytes.Equal(q.Marshal(), b) {
			t.Fatal("parsed quote does not re-encode to its input")
		}
		ev := &attest.Evidence{TEE: q.TEE, Simulated: true, Quote: b}
		c, err := v.Verify(context.Background(), ev, time.Time{})
		if err == nil && (!c.Simulated || c.TCBStatus != attest.TCBUnknown) {
			t.Fatalf("verified simulated quote without simulation marks: %+v", c)
		}
	})
}

// TestConcurrent shares an Issuer and a Verifier across goroutines (run with
// -race).
func TestConcurrent(t *testing.T) {
	iss, v, _ := newPair(t, sgxIdentity())
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func(i int) {
			ev, err := iss.Issue(context.Background(), []byte{byte(i)})
			if err == nil {
				_, err = v.Verify(context.Background(), ev, time.Now())
			}
			errs <- err
		}(i)
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
