package kms

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/store"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantRefused checks err is a gRPC refusal with code and a message
// containing every part.
func wantRefused(t *testing.T, what string, err error, code codes.Code, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: granted, want refused", what)
	}
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: code %s, want %s (%v)", what, st.Code(), code, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not contain %q", what, err, p)
		}
	}
}

// records returns all audit records in st.
func records(t *testing.T, st *store.Store) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	if err := st.Entries(context.Background(), 1, 0, func(e audit.Entry) error {
		r, err := audit.Decode(e.Body)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// findRecord returns the last record matching op, decision and caller
// whose reason contains reason.
func findRecord(t *testing.T, recs []*audit.Record, op, decision, caller, keyID, reason string) *audit.Record {
	t.Helper()
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Op == op && r.Decision == decision && r.Caller.Name == caller && r.KeyID == keyID && strings.Contains(r.Reason, reason) {
			return r
		}
	}
	t.Errorf("no audit record op=%s decision=%s caller=%q key=%q reason~%q", op, decision, caller, keyID, reason)
	return nil
}

func TestBrokerReleaseDecisionsAreEnforcedAndAudited(t *testing.T) {
	e := newEnv(t)
	t.Run("sqlite", func(t *testing.T) { brokerDecisions(t, e, sqliteStore(t)) })
	t.Run("postgres", func(t *testing.T) { brokerDecisions(t, e, postgresStore(t, uniqueSchema())) })
}

func brokerDecisions(t *testing.T, e *env, st *store.Store) {
	root := newTestRoot(t)
	_, addr := e.serve(st, root, "kms-a")
	ctx := ctxT(t)
	admin := e.dial(addr, "admin", mrGood, false)

	kr, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "model-key", ReleasePolicy: releaseCol1(), Description: "FL model"})
	if err != nil {
		t.Fatal(err)
	}
	if kr.Key.CurrentVersion != 1 || kr.Key.State != store.Enabled || kr.Audit.GetSeq() == 0 {
		t.Fatalf("created %+v", kr)
	}

	// Granted: col-1 in the accepted enclave.
	good := e.dial(addr, "col-1", mrGood, false)
	dctx := []byte("model round 3")
	g, err := good.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "model-key", Context: dctx, WithPlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Plaintext) != 32 || g.KeyVersion != 1 {
		t.Fatalf("data key: %d bytes, version %d", len(g.Plaintext), g.KeyVersion)
	}
	u, err := good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(u.Plaintext, g.Plaintext) {
		t.Fatal("unwrapped key differs from the generated one")
	}
	// The context is authenticated.
	_, err = good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: []byte("model round 4")})
	wantRefused(t, "unwrap with another context", err, codes.InvalidArgument, "does not authenticate")
	// A flipped header byte (key version) is refused too.
	bad := bytes.Clone(g.Wrapped)
	bad[len("tkdk")+2+len("model-key")+3] ^= 2
	_, err = good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: bad, Context: dctx})
	wantRefused(t, "unwrap with edited version", err, codes.InvalidArgument)

	// Refused: wrong measurement (the connection policy admits it; the key's
	// release policy does not).
	wrongMR := e.dial(addr, "col-1", mrOther, false)
	_, err = wrongMR.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	wantRefused(t, "wrong measurement", err, codes.PermissionDenied, "mr_enclave", "not in accepted list")
	_, err = wrongMR.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "model-key", WithPlaintext: true})
	wantRefused(t, "generate with wrong measurement", err, codes.PermissionDenied, "mr_enclave")

	// Refused: debug enclave.
	debug := e.dial(addr, "col-1", mrGood, true)
	_, err = debug.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	wantRefused(t, "debug enclave", err, codes.PermissionDenied, "debug enclave refused")

	// Refused: a member the policy does not name.
	other := e.dial(addr, "col-2", mrGood, false)
	_, err = other.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	wantRefused(t, "other member", err, codes.PermissionDenied, `member "col-2" (role collaborator) is not allowed`)

	// Refused: admin operations by a non-admin.
	_, err = good.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "mine", ReleasePolicy: releaseCol1()})
	wantRefused(t, "create by non-admin", err, codes.PermissionDenied, `"col-1" is not a broker admin`)

	// Refused at the handshake: revoked identity (no key id reaches the
	// broker; the connection refusal is audited with the reason).
	revoked := e.dial(addr, "col-3", mrGood, false)
	_, err = revoked.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked identity: %v, want a refusal naming revocation", err)
	}

	// Rotate: old wrapped keys still unwrap; rewrap moves to version 2.
	rot, err := admin.RotateKey(ctx, &kmsv1.KeyRequest{KeyId: "model-key"})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Key.CurrentVersion != 2 {
		t.Fatalf("rotated to version %d", rot.Key.CurrentVersion)
	}
	if u, err = good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx}); err != nil || !bytes.Equal(u.Plaintext, g.Plaintext) || u.KeyVersion != 1 {
		t.Fatalf("old version after rotation: %v", err)
	}
	rw, err := good.Rewrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	if err != nil {
		t.Fatal(err)
	}
	if rw.KeyVersion != 2 || bytes.Equal(rw.Wrapped, g.Wrapped) {
		t.Fatalf("rewrap: version %d", rw.KeyVersion)
	}
	if u, err = good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: rw.Wrapped, Context: dctx}); err != nil || !bytes.Equal(u.Plaintext, g.Plaintext) || u.KeyVersion != 2 {
		t.Fatalf("rewrapped key: %v", err)
	}
	g2, err := good.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "model-key"})
	if err != nil || g2.KeyVersion != 2 || g2.Plaintext != nil {
		t.Fatalf("generate after rotation: version %d plaintext %v err %v", g2.GetKeyVersion(), g2.GetPlaintext() != nil, err)
	}

	// Disabled key: refused; enabled again: granted.
	if _, err := admin.DisableKey(ctx, &kmsv1.KeyRequest{KeyId: "model-key"}); err != nil {
		t.Fatal(err)
	}
	_, err = good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	wantRefused(t, "disabled key", err, codes.FailedPrecondition, `key "model-key" is disabled`)
	if _, err := admin.EnableKey(ctx, &kmsv1.KeyRequest{KeyId: "model-key"}); err != nil {
		t.Fatal(err)
	}
	if _, err = good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx}); err != nil {
		t.Fatal(err)
	}

	// List shows metadata only.
	l, err := admin.ListKeys(ctx, &kmsv1.ListKeysRequest{})
	if err != nil || len(l.Keys) != 1 || l.Keys[0].KeyId != "model-key" || l.Keys[0].CurrentVersion != 2 {
		t.Fatalf("list: %v %v", l, err)
	}

	// Destroyed key: refused forever, its material is gone from the store.
	if _, err := admin.DestroyKey(ctx, &kmsv1.KeyRequest{KeyId: "model-key"}); err != nil {
		t.Fatal(err)
	}
	_, err = good.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx})
	wantRefused(t, "destroyed key", err, codes.FailedPrecondition, "destroyed")
	if _, err := st.Material(ctx, "model-key", 1); err == nil {
		t.Fatal("destroyed key's material still stored")
	}
	_, err = admin.EnableKey(ctx, &kmsv1.KeyRequest{KeyId: "model-key"})
	wantRefused(t, "enable destroyed key", err, codes.FailedPrecondition, "destroyed")

	// Every decision is in the audit log.
	recs := records(t, st)
	findRecord(t, recs, OpCreate, audit.Granted, "admin", "model-key", "")
	findRecord(t, recs, OpGenerate, audit.Granted, "col-1", "model-key", "")
	granted := findRecord(t, recs, OpUnwrap, audit.Granted, "col-1", "model-key", "")
	if granted != nil && (granted.Evidence == nil || granted.Evidence.Measurement != hexOf(mrGood) || !granted.Evidence.Simulated || granted.PolicyHash == "") {
		t.Errorf("granted unwrap record lacks the evidence summary / policy hash: %+v", granted)
	}
	wr := findRecord(t, recs, OpUnwrap, audit.Refused, "col-1", "model-key", "mr_enclave")
	if wr != nil && (wr.Evidence == nil || wr.Evidence.Measurement != hexOf(mrOther)) {
		t.Errorf("wrong-measurement record: evidence %+v", wr.Evidence)
	}
	findRecord(t, recs, OpGenerate, audit.Refused, "col-1", "model-key", "mr_enclave")
	dr := findRecord(t, recs, OpUnwrap, audit.Refused, "col-1", "model-key", "debug enclave refused")
	if dr != nil && !dr.Evidence.Debug {
		t.Error("debug refusal record does not say debug")
	}
	findRecord(t, recs, OpUnwrap, audit.Refused, "col-2", "model-key", "not allowed")
	findRecord(t, recs, OpCreate, audit.Refused, "col-1", "mine", "not a broker admin")
	if findRecord(t, recs, OpConnection, audit.Refused, "", "", `peer "col-3" (unverified): certificate revoked (identity)`) == nil {
		for _, r := range recs {
			t.Logf("%+v", r)
		}
	}
	findRecord(t, recs, OpUnwrap, audit.Refused, "col-1", "model-key", "is disabled")
	findRecord(t, recs, OpUnwrap, audit.Refused, "col-1", "model-key", "destroyed")
	findRecord(t, recs, OpRotate, audit.Granted, "admin", "model-key", "")
	findRecord(t, recs, OpRewrap, audit.Granted, "col-1", "model-key", "")
	findRecord(t, recs, OpDestroy, audit.Granted, "admin", "model-key", "")

	// The chain verifies, head MAC included.
	rep, err := VerifyStore(ctx, st, root)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.MACChecked || rep.Head.Seq != uint64(len(recs)) || rep.Granted == 0 || rep.Refused < 9 {
		t.Fatalf("verify: %+v for %d records", rep, len(recs))
	}

	// ReadAudit streams the same chain to an admin, and only to an admin.
	s, err := admin.ReadAudit(ctx, &kmsv1.ReadAuditRequest{FromSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	v := audit.NewVerifier(audit.Head{Seq: kr.Audit.Seq, Hash: kr.Audit.Hash}, audit.Head{Seq: u.Audit.Seq, Hash: u.Audit.Hash})
	var head *kmsv1.AuditHead
	for {
		c, err := s.Recv()
		if err != nil {
			break
		}
		for _, en := range c.Entries {
			if err := v.Add(audit.Entry{Seq: en.Seq, Prev: en.PrevHash, Hash: en.Hash, Body: en.Body}); err != nil {
				t.Fatal(err)
			}
		}
		if c.Head != nil {
			head = c.Head
		}
	}
	if head == nil || !head.MacOk {
		t.Fatalf("stream head %v", head)
	}
	if err := v.Finish(&audit.Head{Seq: head.Seq, Hash: head.Hash}); err != nil {
		t.Fatal(err)
	}
	rs, err := good.ReadAudit(ctx, &kmsv1.ReadAuditRequest{})
	if err == nil {
		_, err = rs.Recv()
	}
	wantRefused(t, "audit read by non-admin", err, codes.PermissionDenied, "not a broker admin")
}

func hexOf(b [32]byte) string { return hex.EncodeToString(b[:]) }
