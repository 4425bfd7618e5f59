package kms

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/ear"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/verifier"
	"github.com/teeml/teeml/kms/audit"
)

// The recorded real TDX quote (shared/testdata/attestation/tdx-dcap).
const tdxMRTD = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"

// tdxResult is what a trusted verifier says of the recorded real TDX
// quote, appraised at its collateral's time under pol, re-bound (as the
// verifier would for evidence whose report data binds it) to the RA-TLS
// key of leaf, issued at iat and signed with k.
func tdxResult(t *testing.T, pol string, leaf *tls.Certificate, iat time.Time, k *ecdsa.PrivateKey) string {
	t.Helper()
	return tdxResultFor(t, pol, sha256.Sum256(leaf.Leaf.RawSubjectPublicKeyInfo), iat, k)
}

// tdxResultFor is tdxResult bound to the key whose SPKI hashes to keyHash.
func tdxResultFor(t *testing.T, pol string, keyHash [32]byte, iat time.Time, k *ecdsa.PrivateKey) string {
	t.Helper()
	v, err := verifier.New(verifier.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte(pol), "verifier policy")
	if err != nil {
		t.Fatal(err)
	}
	ev := &attest.Evidence{Quote: dcaptest.Read(t, "tdx-dcap/quote.bin"), Collateral: dcaptest.Read(t, "tdx-dcap/collateral.json")}
	r, err := v.VerifyAndJudge(context.Background(), "tdx", ev, dcaptest.VerifyTime, verifier.Judge{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ear.New(r, ear.Options{VerifierID: ear.VerifierID{Developer: "https://verifier.example", Build: "test"}, Now: iat, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rd := make([]byte, 64)
	copy(rd, keyHash[:])
	res.Submods["tdx"].ReportData = hex.EncodeToString(rd)
	tok, err := ear.Sign(res, k)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestBrokerReleasesOnTrustedAttestationResult(t *testing.T) {
	e := newEnv(t)
	st := sqliteStore(t)
	vk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	at := func(tm time.Time) { clock.Store(tm.UnixNano()) }
	issued := dcaptest.VerifyTime
	at(issued.Add(2 * time.Minute))
	b, err := NewBroker(context.Background(), BrokerConfig{Name: "kms-ear", Store: st, Root: newTestRoot(t), Admins: []string{"admin"}, Logger: quiet(),
		Federation: e.fe.Fed, EARVerifiers: []*ecdsa.PublicKey{&vk.PublicKey},
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := e.serveBroker(b)
	t.Cleanup(stop)
	ctx := ctxT(t)
	admin := e.dial(addr, "admin", mrGood, false)
	tdxPol := "roles:\n  td:\n    tdx:\n      - mrtd: " + tdxMRTD + "\n"
	release := "members: [col-1]\nattestation:\n  tdx:\n    - mrtd: " + tdxMRTD + "\naccept_ear:\n  max_age: 10m\n"
	for id, rp := range map[string]string{"ear-key": release, "plain-key": releaseCol1(),
		"ear-other": strings.Replace(release, tdxMRTD[:16], strings.Repeat("0", 16), 1)} {
		if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: id, ReleasePolicy: rp}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	// col-1 connects with simulated SGX evidence (admitted by the broker's
	// connection policy, not by ear-key's release policy) and presents a
	// trusted verifier's result for a TDX trust domain bound to its key.
	leaf := e.leaf("col-1", mrGood, false)
	col1, closeCol1 := e.dialLeaf(addr, leaf)
	t.Cleanup(closeCol1)
	tok := tdxResult(t, tdxPol, leaf, issued, vk)
	g, err := col1.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "ear-key", WithPlaintext: true, AttestationResult: tok})
	if err != nil {
		t.Fatalf("generate on a trusted result: %v", err)
	}
	u, err := col1.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, AttestationResult: tok})
	if err != nil || string(u.Plaintext) != string(g.Plaintext) {
		t.Fatalf("unwrap on a trusted result: %v", err)
	}
	// A result bound to col-1's identity key (the enrolment binding) serves
	// every connection of col-1.
	idTok := tdxResultFor(t, tdxPol, sha256.Sum256(e.members["col-1"].Issued.Cert.RawSubjectPublicKeyInfo), issued, vk)
	for i := 0; i < 2; i++ {
		c, closeC := e.dialLeaf(addr, e.leaf("col-1", mrGood, false))
		if _, err := c.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, AttestationResult: idTok}); err != nil {
			t.Fatalf("identity-bound result, connection %d: %v", i, err)
		}
		closeC()
	}
	// Without the result, its own evidence does not satisfy the policy.
	_, err = col1.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped})
	wantRefused(t, "raw evidence", err, codes.PermissionDenied, "sgx")

	refusals := []struct {
		name  string
		c     kmsv1.KeyBrokerClient
		key   string
		tok   string
		now   time.Time
		code  codes.Code
		parts []string
	}{
		{"untrusted verifier", col1, "ear-key", tdxResult(t, tdxPol, leaf, issued, rogue), issued, codes.PermissionDenied, []string{"signature not by a trusted verifier key"}},
		{"older than max_age", col1, "ear-key", tok, issued.Add(11 * time.Minute), codes.PermissionDenied, []string{"more than 10m0s"}},
		{"key without accept_ear", col1, "plain-key", tok, issued, codes.PermissionDenied, []string{"does not accept attestation results"}},
		{"measurement not in the release policy", col1, "ear-other", tok, issued, codes.PermissionDenied, []string{"mrtd", "not in accepted list"}},
		{"not affirming", col1, "ear-key", tdxResult(t, strings.Replace(tdxPol, tdxMRTD[:16], strings.Repeat("0", 16), 1), leaf, issued, vk), issued, codes.PermissionDenied, []string{"ear.status contraindicated, want affirming"}},
		{"collateral expired by now", col1, "ear-key", tdxResult(t, tdxPol, leaf, time.Now(), vk), time.Now(), codes.PermissionDenied, []string{"claims expired at 2025-07-19"}},
		{"not bound to this connection", e.dial(addr, "col-1", mrGood, false), "ear-key", tok, issued, codes.PermissionDenied, []string{"binds report data", "neither the caller's RA-TLS key"}},
		{"bound to another member's identity", col1, "ear-key", tdxResultFor(t, tdxPol, sha256.Sum256(e.members["col-2"].Issued.Cert.RawSubjectPublicKeyInfo), issued, vk), issued, codes.PermissionDenied, []string{"nor its identity key"}},
		{"malformed", col1, "ear-key", "x.y.z", issued, codes.PermissionDenied, []string{"malformed token"}},
	}
	// A member the policy does not name, with a result bound to its own key.
	leaf2 := e.leaf("col-2", mrGood, false)
	col2, closeCol2 := e.dialLeaf(addr, leaf2)
	t.Cleanup(closeCol2)
	refusals = append(refusals, struct {
		name  string
		c     kmsv1.KeyBrokerClient
		key   string
		tok   string
		now   time.Time
		code  codes.Code
		parts []string
	}{"other member", col2, "ear-key", tdxResult(t, tdxPol, leaf2, issued, vk), issued, codes.PermissionDenied, []string{`member "col-2" (role collaborator) is not allowed`}})
	for _, r := range refusals {
		at(r.now.Add(time.Minute))
		_, err := r.c.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: r.key, AttestationResult: r.tok})
		wantRefused(t, r.name, err, r.code, r.parts...)
	}
	// A clean-room request never rides on a result.
	at(issued.Add(time.Minute))
	_, err = col1.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, AttestationResult: tok, Cleanroom: &kmsv1.CleanRoomQuery{Contract: []byte("x")}})
	wantRefused(t, "clean room", err, codes.InvalidArgument, "clean-room key is released on the caller's RA-TLS evidence only")

	// The grant's audit record names the result and the TD it described.
	recs := records(t, st)
	if r := findRecord(t, recs, OpUnwrap, audit.Granted, "col-1", "ear-key", ""); r != nil {
		if r.Evidence == nil || r.Evidence.TEE != "tdx" || r.Evidence.Measurement != tdxMRTD || !strings.HasPrefix(r.Evidence.Result, "ear sha256:") || !strings.Contains(r.Evidence.Result, "https://verifier.example") {
			t.Fatalf("audit evidence %+v", r.Evidence)
		}
	}
}

func TestBrokerWithoutTrustedVerifiersRefusesResults(t *testing.T) {
	e := newEnv(t)
	st := sqliteStore(t)
	_, addr := e.serve(st, newTestRoot(t), "kms-a")
	ctx := ctxT(t)
	admin := e.dial(addr, "admin", mrGood, false)
	release := "members: [col-1]\nattestation:\n  tdx:\n    - mrtd: " + tdxMRTD + "\naccept_ear:\n  max_age: 10m\n"
	if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "ear-key", ReleasePolicy: release}); err != nil {
		t.Fatal(err)
	}
	_, err := e.dial(addr, "col-1", mrGood, false).GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "ear-key", AttestationResult: "a.b.c"})
	wantRefused(t, "no ear_verifiers", err, codes.FailedPrecondition, "trusts no attestation result verifier")
}

func TestReleasePolicyAcceptEAR(t *testing.T) {
	base := "members: [col-1]\nattestation:\n  tdx:\n    - mrtd: " + tdxMRTD + "\n"
	rp, err := ParseReleasePolicy(base + "accept_ear:\n  max_age: 90s\n")
	if err != nil || rp.AcceptEAR == nil || rp.AcceptEAR.MaxAge != 90*time.Second {
		t.Fatalf("%+v %v", rp, err)
	}
	if rp, err := ParseReleasePolicy(base); err != nil || rp.AcceptEAR != nil {
		t.Fatalf("without accept_ear: %+v %v", rp, err)
	}
	for _, c := range []struct{ y, want string }{
		{"accept_ear: true\n", "want a mapping with max_age"},
		{"accept_ear: {}\n", "missing max_age"},
		{"accept_ear: {max_age: soon}\n", `max_age "soon"`},
		{"accept_ear: {max_age: 0s}\n", "more than 0"},
		{"accept_ear: {max_age: 48h}\n", "at most 24h0m0s"},
		{"accept_ear: {max_age: 1m, nonce: x}\n", `unknown key "nonce"`},
	} {
		_, err := ParseReleasePolicy(base + c.y)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "accept_ear") {
			t.Errorf("%q: %v, want %q", c.y, err, c.want)
		}
	}
}
