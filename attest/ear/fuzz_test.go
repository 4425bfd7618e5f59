package ear

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"
)

// fuzzKey is a fixed P-256 key (private scalar 1…): the fuzzer can reach
// the claims checks with tokens it re-signs only through the seeds.
func fuzzKey() *ecdsa.PrivateKey {
	d := new(big.Int).SetBytes([]byte("teeml ear fuzz key, not secret!!"))
	k := &ecdsa.PrivateKey{D: d}
	k.Curve = elliptic.P256()
	k.X, k.Y = elliptic.P256().ScalarBaseMult(d.Bytes()) //nolint:staticcheck // building a fixed test key
	return k
}

func FuzzVerify(f *testing.F) {
	k := fuzzKey()
	now := time.Unix(1_750_000_000, 0)
	res := &Result{Profile: Profile, IssuedAt: now.Unix(), Expiry: now.Unix() + 600, Nonce: "n", VerifierID: testID,
		Submods: map[string]*Appraisal{"sgx": {Status: Affirming, TrustVector: &TrustVector{InstanceIdentity: 2, Hardware: 2},
			TEE: "sgx", ReportData: strings.Repeat("00", 64), Measurements: &Measurements{MREnclave: sgxMREnclave, MRSigner: sgxMRSigner}}}}
	tok, err := Sign(res, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(forge(`{"alg":"none"}`, `{}`, nil))
	f.Add(forge(`{"alg":"ES256","alg":"ES256"}`, `{"a":[[[{}]]]}`, k))
	f.Add("a.b.c")
	keys := []*ecdsa.PublicKey{&k.PublicKey}
	f.Fuzz(func(t *testing.T, tok string) {
		r, err := Verify(tok, VerifyOptions{Keys: keys, Now: now})
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if r.Profile != Profile || len(r.Submods) == 0 || r.IssuedAt <= 0 {
			t.Fatalf("accepted an invalid claims set: %+v", r)
		}
		for _, a := range r.Submods {
			_, _ = a.Claims()
		}
	})
}

// FuzzParse feeds claims sets to Parse directly (FuzzVerify cannot get
// past the signature with new claims): whatever it accepts is a valid
// claims set that survives re-encoding, and Claims never panics.
func FuzzParse(f *testing.F) {
	res := &Result{Profile: Profile, IssuedAt: 1_750_000_000, VerifierID: testID, RawEvidence: []byte{1, 2},
		Submods: map[string]*Appraisal{"tdx": {Status: Warning, TrustVector: &TrustVector{Hardware: 32},
			TEE: "tdx", Measurements: &Measurements{MRTD: strings.Repeat("ab", 48), RTMR: []string{strings.Repeat("00", 48)}}}}}
	b, err := json.Marshal(res)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"eat_profile":"` + Profile + `","iat":1,"ear.verifier-id":{"developer":"d","build":"b"},"submods":{"x":{"ear.status":"none"}},"submods":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(again); err != nil {
			t.Fatalf("re-encoded claims refused: %v\n%s", err, again)
		}
		for _, a := range r.Submods {
			_, _ = a.Claims()
		}
	})
}
