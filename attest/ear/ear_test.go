package ear

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/verifier"
)

const (
	sgxMREnclave = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
	sgxMRSigner  = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
	tdxMRTD      = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
)

var testID = VerifierID{Developer: "https://github.com/teeml/teeml", Build: "teeml test"}

func key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// report verifies the recorded real quote in dir and judges it with the
// policy YAML pol ("" for none).
func report(t testing.TB, dir, pol string) *verifier.Report {
	t.Helper()
	v, err := verifier.New(verifier.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ev := &attest.Evidence{Quote: dcaptest.Read(t, dir+"/quote.bin"), Collateral: dcaptest.Read(t, dir+"/collateral.json")}
	var j verifier.Judge
	if pol != "" {
		if j.Policy, err = policy.Parse([]byte(pol), "test policy"); err != nil {
			t.Fatal(err)
		}
	}
	r, err := v.VerifyAndJudge(context.Background(), dir, ev, dcaptest.VerifyTime, j)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const sgxPolicy = `roles:
  app:
    sgx:
      - mr_enclave: ` + sgxMREnclave + `
        mr_signer: ` + sgxMRSigner + `
    tcb_statuses: [ConfigurationAndSWHardeningNeeded]
    advisory_ids: [INTEL-SA-00289, INTEL-SA-00615]
`

func TestRealSGXQuoteRoundTrip(t *testing.T) {
	r := report(t, "sgx-dcap", sgxPolicy)
	if !r.Accepted {
		t.Fatalf("policy refused the recorded quote: %s", r.Summary)
	}
	now := dcaptest.VerifyTime
	res, err := New(r, Options{VerifierID: testID, Now: now, Validity: 10 * time.Minute, Nonce: "n-1", PolicySource: []byte(sgxPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	k := key(t)
	tok, err := Sign(res, k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(tok, VerifyOptions{Keys: []*ecdsa.PublicKey{&k.PublicKey}, Now: now.Add(time.Minute), MaxAge: 5 * time.Minute, Nonce: "n-1"})
	if err != nil {
		t.Fatal(err)
	}
	name, a, err := got.Only()
	if err != nil || name != "sgx" {
		t.Fatalf("submod %q, %v", name, err)
	}
	// The hardware TCB is not UpToDate: warning, whatever the policy says.
	if a.Status != Warning || a.TrustVector.Hardware != UnsafeHardware || a.TrustVector.Executables != ApprovedRuntime || a.TrustVector.InstanceIdentity != TrustworthyInstance {
		t.Fatalf("status %s, vector %+v", a.Status, a.TrustVector)
	}
	if !a.Policy.Applied || !a.Policy.Accepted || a.Policy.Role != "app" || !strings.HasPrefix(a.PolicyID, "teeml:policy:sha256:") {
		t.Fatalf("policy claims %+v %q", a.Policy, a.PolicyID)
	}
	c, err := a.Claims()
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(c.MREnclave) != sgxMREnclave || hex.EncodeToString(c.MRSigner) != sgxMRSigner ||
		c.TCBStatus != attest.ConfigurationAndSWHardeningNeeded || len(c.AdvisoryIDs) != 2 || c.Debug || c.Simulated ||
		!bytes.HasPrefix(c.ReportData, []byte("Hello, world!")) {
		t.Fatalf("claims back: %+v", c)
	}
	// The same policy accepts the claims rebuilt from the token.
	p, _ := policy.Parse([]byte(sgxPolicy), "p")
	if d := p.Evaluate("app", c, policy.At(now)); !d.Accepted {
		t.Fatalf("rebuilt claims refused: %s", d)
	}
	// The claim names on the wire are the draft's.
	payload := decodePart(t, tok, 1)
	for _, name := range []string{`"eat_profile":"tag:github.com,2023:veraison/ear"`, `"iat":`, `"ear.verifier-id":{"developer":`, `"submods":{"sgx":{"ear.status":"warning"`, `"ear.trustworthiness-vector":{"instance-identity":2,`, `"eat_nonce":"n-1"`, `"teeml.measurements":{"mr-enclave":"` + sgxMREnclave} {
		if !strings.Contains(string(payload), name) {
			t.Errorf("claims lack %s:\n%s", name, payload)
		}
	}
}

func TestRealTDXQuoteAffirmingAndRefusals(t *testing.T) {
	pol := "roles:\n  td:\n    tdx:\n      - mrtd: " + tdxMRTD + "\n"
	r := report(t, "tdx-dcap", pol)
	res, err := New(r, Options{VerifierID: testID, Now: dcaptest.VerifyTime})
	if err != nil {
		t.Fatal(err)
	}
	a := res.Submods["tdx"]
	if a == nil || a.Status != Affirming || a.TrustVector.Worst() != Affirming {
		t.Fatalf("TDX up to date and accepted: %+v", a)
	}
	if c, err := a.Claims(); err != nil || hex.EncodeToString(c.MRTD) != tdxMRTD {
		t.Fatalf("claims %v %v", c, err)
	}
	// A policy that refuses: contraindicated, executables not recognised.
	other := strings.Replace(pol, tdxMRTD[:8], "00000000", 1)
	res, err = New(report(t, "tdx-dcap", other), Options{VerifierID: testID, Now: dcaptest.VerifyTime})
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Submods["tdx"]; a.Status != Contraindicated || a.TrustVector.Executables != UnrecognizedRuntime || a.Policy.Accepted {
		t.Fatalf("refused policy: %+v %+v", a, a.TrustVector)
	}
	// No policy: never better than warning.
	res, err = New(report(t, "tdx-dcap", ""), Options{VerifierID: testID, Now: dcaptest.VerifyTime})
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Submods["tdx"]; a.Status != Warning || a.Policy.Applied || a.TrustVector.Configuration != UnappraisedConfig {
		t.Fatalf("no policy: %+v", a)
	}
}

func decodePart(t testing.TB, tok string, i int) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge builds a token from header and payload JSON signed by k (nil: an
// empty signature).
func forge(header, payload string, k *ecdsa.PrivateKey) string {
	s := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	if k == nil {
		return s + "."
	}
	h := sha256.Sum256([]byte(s))
	r, ss, _ := ecdsa.Sign(rand.Reader, k, h[:])
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return s + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyRefusals(t *testing.T) {
	k, other := key(t), key(t)
	now := time.Unix(1_750_000_000, 0)
	keys := []*ecdsa.PublicKey{&k.PublicKey}
	res, err := New(report(t, "tdx-dcap", ""), Options{VerifierID: testID, Now: now, Validity: 10 * time.Minute, Nonce: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	good, err := Sign(res, k)
	if err != nil {
		t.Fatal(err)
	}
	payload := string(decodePart(t, good, 1))
	hs := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, elliptic.Marshal(elliptic.P256(), k.PublicKey.X, k.PublicKey.Y)) //nolint:staticcheck // the classic key-confusion forgery
	mac.Write([]byte(hs))
	hs += "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	sig := strings.Split(good, ".")[2]
	flipped := []byte(sig)
	flipped[5] ^= 1
	cases := []struct {
		name  string
		tok   string
		o     VerifyOptions
		want  error
		inErr string
	}{
		{"other key", good, VerifyOptions{Keys: []*ecdsa.PublicKey{&other.PublicKey}, Now: now}, ErrSignature, ""},
		{"no keys", good, VerifyOptions{Now: now}, ErrSignature, "no trusted"},
		{"alg none", forge(`{"alg":"none"}`, payload, nil), VerifyOptions{Keys: keys, Now: now}, ErrAlgorithm, `"none"`},
		{"HS256 with the public key", hs, VerifyOptions{Keys: keys, Now: now}, ErrAlgorithm, "HS256"},
		{"ES384", forge(`{"alg":"ES384"}`, payload, k), VerifyOptions{Keys: keys, Now: now}, ErrAlgorithm, "ES384"},
		{"crit", forge(`{"alg":"ES256","crit":["x"],"x":1}`, payload, k), VerifyOptions{Keys: keys, Now: now}, ErrMalformed, "crit"},
		{"duplicate alg", forge(`{"alg":"ES256","alg":"none"}`, payload, k), VerifyOptions{Keys: keys, Now: now}, ErrMalformed, "duplicate"},
		{"flipped signature", strings.Join([]string{strings.Split(good, ".")[0], strings.Split(good, ".")[1], string(flipped)}, "."), VerifyOptions{Keys: keys, Now: now}, nil, ""},
		{"padded", good + "=", VerifyOptions{Keys: keys, Now: now}, ErrMalformed, "base64url"},
		{"two parts", strings.Join(strings.Split(good, ".")[:2], "."), VerifyOptions{Keys: keys, Now: now}, ErrMalformed, "parts"},
		{"expired", good, VerifyOptions{Keys: keys, Now: now.Add(11 * time.Minute)}, ErrStale, "expired"},
		{"too old", good, VerifyOptions{Keys: keys, Now: now.Add(3 * time.Minute), MaxAge: 2 * time.Minute}, ErrStale, "more than 2m0s"},
		{"future", good, VerifyOptions{Keys: keys, Now: now.Add(-2 * time.Minute)}, ErrStale, "future"},
		{"nonce", good, VerifyOptions{Keys: keys, Now: now, Nonce: "xyz"}, ErrNonce, "xyz"},
		{"profile", forge(`{"alg":"ES256"}`, strings.Replace(payload, "2023:veraison", "2022:veraison", 1), k), VerifyOptions{Keys: keys, Now: now}, ErrProfile, "2022"},
		{"duplicate claim", forge(`{"alg":"ES256"}`, strings.Replace(payload, `"eat_nonce":"abc"`, `"eat_nonce":"abc","eat_nonce":"abd"`, 1), k), VerifyOptions{Keys: keys, Now: now}, ErrMalformed, "duplicate member \"eat_nonce\""},
		{"bad status", forge(`{"alg":"ES256"}`, strings.Replace(payload, `"ear.status":"warning"`, `"ear.status":"fine"`, 1), k), VerifyOptions{Keys: keys, Now: now}, ErrMalformed, `"fine"`},
		{"no submods", forge(`{"alg":"ES256"}`, `{"eat_profile":"`+Profile+`","iat":1750000000,"ear.verifier-id":{"developer":"d","build":"b"},"submods":{}}`, k), VerifyOptions{Keys: keys, Now: now}, ErrMalformed, "submods"},
	}
	for _, c := range cases {
		_, err := Verify(c.tok, c.o)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if !strings.Contains(err.Error(), c.inErr) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %q lacks %q or is not one line", c.name, err, c.inErr)
		}
	}
	if _, err := Verify(good, VerifyOptions{Keys: []*ecdsa.PublicKey{&other.PublicKey, &k.PublicKey}, Now: now, Nonce: "abc"}); err != nil {
		t.Fatalf("second trusted key: %v", err)
	}
	// Every single flipped bit of the signed part is refused.
	signed := []byte(strings.Join(strings.Split(good, ".")[:2], "."))
	for i := range signed {
		if signed[i] == '.' {
			continue
		}
		b := bytes.Clone(signed)
		b[i] ^= 1
		if _, err := Verify(string(b)+"."+sig, VerifyOptions{Keys: keys, Now: now}); err == nil {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
}

func TestClaimsRefuseBadMeasurements(t *testing.T) {
	for _, a := range []Appraisal{
		{TEE: "sgx"},
		{TEE: "arm-cca", Measurements: &Measurements{}},
		{TEE: "sgx", Measurements: &Measurements{MREnclave: "00"}},
		{TEE: "tdx", Measurements: &Measurements{RTMR: []string{"zz"}}},
		{TEE: "sgx", ReportData: "01", Measurements: &Measurements{}},
	} {
		if _, err := a.Claims(); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v: %v", a, err)
		}
	}
}

func TestTier(t *testing.T) {
	for v, want := range map[int8]Status{0: None, -1: None, 1: None, 2: Affirming, 31: Affirming, -32: Affirming, 32: Warning, 95: Warning, -96: Warning, 96: Contraindicated, 127: Contraindicated, -97: Contraindicated, -128: Contraindicated} {
		if got := Tier(v); got != want {
			t.Errorf("Tier(%d) = %s, want %s", v, got, want)
		}
	}
}

func TestSignRefusesOtherCurves(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res := &Result{Profile: Profile, IssuedAt: 1, VerifierID: testID, Submods: map[string]*Appraisal{"x": {Status: None}}}
	if _, err := Sign(res, k); !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("P-384 key: %v", err)
	}
	b, _ := json.Marshal(res)
	if _, err := Parse(b); err != nil {
		t.Fatalf("minimal claims set: %v", err)
	}
}

// TestVeraisonRustEARToken checks the JWS layer against a token another
// implementation signed: Veraison's rust-ear README example. Its
// signature must verify with its published key (so the refusal is the
// profile "test", checked after the signature), and not with another key.
func TestVeraisonRustEARToken(t *testing.T) {
	tok, err := os.ReadFile("testdata/rust-ear-readme.jwt")
	if err != nil {
		t.Fatal(err)
	}
	jwkBytes, err := os.ReadFile("testdata/rust-ear-readme.jwk.json")
	if err != nil {
		t.Fatal(err)
	}
	var jwk struct{ Kty, Crv, X, Y string }
	if err := json.Unmarshal(jwkBytes, &jwk); err != nil || jwk.Kty != "EC" || jwk.Crv != "P-256" {
		t.Fatalf("jwk %+v %v", jwk, err)
	}
	x, _ := base64.RawURLEncoding.DecodeString(jwk.X)
	y, _ := base64.RawURLEncoding.DecodeString(jwk.Y)
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	_, err = Verify(string(tok), VerifyOptions{Keys: []*ecdsa.PublicKey{pub}, Now: time.Unix(100, 0)})
	if !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), `"test"`) {
		t.Fatalf("rust-ear token with its key: %v, want the profile refused after the signature verified", err)
	}
	if _, err := Verify(string(tok), VerifyOptions{Keys: []*ecdsa.PublicKey{&key(t).PublicKey}, Now: time.Unix(100, 0)}); !errors.Is(err, ErrSignature) {
		t.Fatalf("rust-ear token with another key: %v", err)
	}
	// Its claims set, apart from the profile, is what teeml reads.
	payload := decodePart(t, strings.TrimSpace(string(tok)), 1)
	var r Result
	if err := json.Unmarshal(payload, &r); err != nil || r.VerifierID.Developer != "https://veraison-project.org" || r.Submods["test"] == nil || r.Submods["test"].Status != None {
		t.Fatalf("claims %+v %v", r, err)
	}
}
