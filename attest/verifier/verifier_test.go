package verifier

import (
	"context"
	"crypto/ecdsa"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/verify/testdata"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
)

func TestDispatchesRealEvidence(t *testing.T) {
	v, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dir    string
		tee    attest.TEE
		status attest.TCBStatus
	}{
		{"sgx-dcap", attest.SGX, attest.ConfigurationAndSWHardeningNeeded},
		{"tdx-dcap", attest.TDX, attest.UpToDate},
	}
	for _, c := range cases {
		q := dcaptest.Read(t, c.dir+"/quote.bin")
		col := dcaptest.Read(t, c.dir+"/collateral.json")
		k, err := Detect(q)
		if err != nil || k.TEE != c.tee || k.Simulated {
			t.Fatalf("%s: Detect = %+v, %v", c.dir, k, err)
		}
		cl, err := v.Verify(context.Background(), &attest.Evidence{Quote: q, Collateral: col}, dcaptest.VerifyTime)
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		if cl.TEE != c.tee || cl.TCBStatus != c.status || cl.Simulated {
			t.Fatalf("%s: claims %+v", c.dir, cl)
		}
		// A caller that expects TDX must not get an SGX verification.
		other := attest.TDX
		if c.tee == attest.TDX {
			other = attest.SGX
		}
		if _, err := v.Verify(context.Background(), &attest.Evidence{TEE: other, Quote: q, Collateral: col}, dcaptest.VerifyTime); err == nil || !strings.Contains(err.Error(), "declared TEE") {
			t.Fatalf("%s declared as %s: err = %v", c.dir, other, err)
		}
	}

	snpNow := time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
	k, err := Detect(testdata.AttestationBytes)
	if err != nil || k.TEE != attest.SNP {
		t.Fatalf("SNP Detect = %+v, %v", k, err)
	}
	cl, err := v.Verify(context.Background(), &attest.Evidence{Quote: testdata.AttestationBytes, Collateral: testdata.VcekBytes}, snpNow)
	if err != nil || cl.TEE != attest.SNP {
		t.Fatalf("SNP: %+v, %v", cl, err)
	}
}

func TestSimulatedEvidenceNeedsATrustedKey(t *testing.T) {
	key, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := sim.NewIssuer(key, sim.Identity{TEE: attest.SGX, MREnclave: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := iss.Issue(context.Background(), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	none, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.Verify(context.Background(), ev, time.Now()); err == nil || !strings.Contains(err.Error(), "no trusted simulation key") {
		t.Fatalf("err = %v", err)
	}
	// Claiming real hardware for simulated evidence is caught.
	lie := *ev
	lie.Simulated = false
	withKey, err := New(Config{SimulationKeys: []*ecdsa.PublicKey{&key.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := withKey.Verify(context.Background(), &lie, time.Now()); err == nil || !strings.Contains(err.Error(), "simulated") {
		t.Fatalf("err = %v", err)
	}
	cl, err := withKey.Verify(context.Background(), ev, time.Now())
	if err != nil || !cl.Simulated {
		t.Fatalf("claims %+v, %v", cl, err)
	}
	if f := cl.Fields(); f[0].Name != "simulated" {
		t.Fatalf("simulated claims must lead with the simulated field: %+v", f[0])
	}
}

func TestDetectRejectsJunk(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("hello"), make([]byte, 100)} {
		if _, err := Detect(b); err == nil {
			t.Fatalf("Detect(%d bytes) accepted", len(b))
		}
	}
}

// The validation layer refuses a debug enclave by default even when every
// signature checked out: verify the real SGX quote, then set the DEBUG flag
// on its claims as if the enclave had been launched in debug mode.
func TestRealQuoteWithDebugFlagRefusedByDefaultPolicy(t *testing.T) {
	q := dcaptest.Read(t, "sgx-dcap/quote.bin")
	col := dcaptest.Read(t, "sgx-dcap/collateral.json")
	v, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), &attest.Evidence{Quote: q, Collateral: col}, dcaptest.VerifyTime)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte(`roles:
  aggregator:
    sgx:
      - mr_enclave: 33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb
    tcb_statuses: [ConfigurationAndSWHardeningNeeded]
    advisory_ids: [INTEL-SA-00289, INTEL-SA-00615]
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Evaluate("aggregator", c, policy.At(dcaptest.VerifyTime)); !d.Accepted {
		t.Fatalf("production claims refused: %s", d)
	}
	c.Debug = true
	c.Attributes[0] |= 0x02
	d := p.Evaluate("aggregator", c, policy.At(dcaptest.VerifyTime))
	if d.Accepted || !strings.Contains(d.String(), "debug") {
		t.Fatalf("debug claims: %s", d)
	}
}
