package kms

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/internal/fedtest"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/store"
)

// roomEnv is a federation with a broker, its admin, two data owners and an
// analytics party, and the example contract signed by both owners.
type roomEnv struct {
	*env
	raw, sigs []byte
	c         *contract.Contract
}

func newRoomEnv(t *testing.T) *roomEnv {
	fe := fedtest.New(t, fedtest.Options{
		Members: []fedtest.Party{{Name: "kms", Role: "kms"}, {Name: "admin", Role: "aggregator"},
			{Name: "bank", Role: "owner"}, {Name: "retailer", Role: "owner"}, {Name: "analytics", Role: "analytics"}},
		CertifyAt: time.Now().Add(-time.Minute),
	})
	e := &env{t: t, fe: fe, certPol: fe.CertPolicy, members: fe.Members, dir: fe.Dir}
	wide := sgxRole("", mrGood, mrOther)
	e.connPol = mustPolicy(t, "roles:\n  aggregator:\n"+wide+"  owner:\n"+wide+"  analytics:\n"+wide)
	e.cliPol = mustPolicy(t, "roles:\n  kms:\n"+sgxRole("", mrGood))
	r := &roomEnv{env: e}
	r.raw = exampleContract(t, 2.5)
	r.sigs = append(r.sign("bank", r.raw), r.sign("retailer", r.raw)...)
	var err error
	if r.c, err = contract.Parse(r.raw, "contract.yaml"); err != nil {
		t.Fatal(err)
	}
	return r
}

func exampleContract(t testing.TB, bankEps float64) []byte {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return contract.Example(contract.ExampleOptions{Attestation: sgxRole("", mrGood), Recipients: map[string]*ecdh.PublicKey{"bank": k.PublicKey()},
		BankEpsilon: bankEps, RetailEpsilon: 2, MinGroupSize: 5})
}

func (r *roomEnv) sign(name string, raw []byte) []byte {
	m := r.members[name]
	b, err := contract.Sign(raw, m.Issued.Cert, m.Key, time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// ownerPolicy: the owner itself (to seal its tables) or the contract.
func ownerPolicy(owner string, contracts ...string) string {
	s := fmt.Sprintf("members: [%s]\nattestation:\n  sgx:\n    - mr_enclave: %s\n      mr_signer: %s\n  allow_simulation: true\n",
		owner, hex.EncodeToString(mrGood[:]), hex.EncodeToString(mrSign[:]))
	if len(contracts) > 0 {
		s += "contracts: [" + strings.Join(contracts, ", ") + "]\n"
	}
	return s
}

func (r *roomEnv) query(tmpl string, params map[string]string, id string) *kmsv1.CleanRoomQuery {
	return &kmsv1.CleanRoomQuery{Contract: r.raw, Signatures: r.sigs, Template: tmpl, Params: params, QueryId: id}
}

func TestCleanRoomRelease(t *testing.T) {
	r := newRoomEnv(t)
	st := sqliteStore(t)
	root := newTestRoot(t)
	_, addr := r.serve(st, root, "kms-bank")
	ctx := ctxT(t)
	admin := r.dial(addr, "admin", mrGood, false)
	if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "bank-data", ReleasePolicy: ownerPolicy("bank", r.c.SHA256)}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "bank-other", ReleasePolicy: ownerPolicy("bank")}); err != nil {
		t.Fatal(err)
	}
	// The owner seals its table (ordinary release, no contract).
	bank := r.dial(addr, "bank", mrGood, false)
	dctx := []byte("teeml sealed v1")
	g, err := bank.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "bank-data", Context: dctx, WithPlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := bank.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "bank-other", Context: dctx})
	if err != nil {
		t.Fatal(err)
	}
	an := r.dial(addr, "analytics", mrGood, false)
	unwrap := func(c kmsv1.KeyBrokerClient, w []byte, q *kmsv1.CleanRoomQuery) (*kmsv1.UnwrapResponse, error) {
		return c.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: w, Context: dctx, Cleanroom: q})
	}
	// Approved template, parameters bound: released.
	u, err := unwrap(an, g.Wrapped, r.query("spend_by_segment", map[string]string{"min_balance": "100"}, "query-0001"))
	if err != nil {
		t.Fatal(err)
	}
	if string(u.Plaintext) != string(g.Plaintext) {
		t.Fatal("released key differs")
	}
	// Without naming the contract the analytics party is nobody to the key.
	_, err = unwrap(an, g.Wrapped, nil)
	wantRefused(t, "no contract named", err, codes.PermissionDenied, `member "analytics" (role analytics) is not allowed`, "bound to clean-room contract")
	// A template the contract does not hold: refused, nothing released.
	_, err = unwrap(an, g.Wrapped, r.query("dump_everything", nil, "query-0002"))
	wantRefused(t, "template not in contract", err, codes.PermissionDenied, `template "dump_everything" is not in the contract`)
	// Bad parameters.
	_, err = unwrap(an, g.Wrapped, r.query("flagged_shoppers", map[string]string{"segment": "x' OR 1=1"}, "query-0003"))
	wantRefused(t, "parameter outside its enum", err, codes.InvalidArgument, "is not one of budget")
	// One byte of the contract changed (re-signed by both owners even):
	// another contract, which this key is not bound to.
	changed := []byte(strings.Replace(string(r.raw), "min_group_size: 5", "min_group_size: 2", 1))
	q := r.query("spend_by_segment", map[string]string{"min_balance": "100"}, "query-0004")
	q.Contract, q.Signatures = changed, append(r.sign("bank", changed), r.sign("retailer", changed)...)
	_, err = unwrap(an, g.Wrapped, q)
	wantRefused(t, "changed contract", err, codes.PermissionDenied, "is not bound to contract sha256", "differs from the one its owner approved")
	// The right contract with one owner's signature missing.
	q = r.query("spend_by_segment", map[string]string{"min_balance": "100"}, "query-0005")
	q.Signatures = r.sign("bank", r.raw)
	_, err = unwrap(an, g.Wrapped, q)
	wantRefused(t, "unsigned", err, codes.PermissionDenied, "owner retailer: has not signed")
	// The analytics party in another enclave than the contract names.
	wrongMR := r.dial(addr, "analytics", mrOther, false)
	_, err = unwrap(wrongMR, g.Wrapped, r.query("spend_by_segment", map[string]string{"min_balance": "1"}, "query-0006"))
	wantRefused(t, "analytics measurement", err, codes.PermissionDenied, "analytics attestation", "mr_enclave")
	// An owner is not the analytics party.
	_, err = unwrap(bank, g.Wrapped, r.query("spend_by_segment", map[string]string{"min_balance": "1"}, "query-0007"))
	wantRefused(t, "owner as analyst", err, codes.PermissionDenied, `member "bank" is not its analytics party`)
	// A key of the owner that the contract does not name.
	_, err = unwrap(an, other.Wrapped, r.query("spend_by_segment", map[string]string{"min_balance": "1"}, "query-0008"))
	wantRefused(t, "key not bound", err, codes.PermissionDenied, `key "bank-other" is bound to no clean-room contract`)
	_, err = an.Rewrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx, Cleanroom: r.query("spend_by_segment", map[string]string{"min_balance": "1"}, "query-0009")})
	wantRefused(t, "rewrap", err, codes.InvalidArgument, "unwrap only")

	// ε: the bank's budget is 2.5, a noisy query costs 1.
	noisy := func(id string) error {
		_, err := unwrap(an, g.Wrapped, r.query("noisy_spend_by_segment", map[string]string{"since": "2024-01-01"}, id))
		return err
	}
	for _, id := range []string{"noisy-0001", "noisy-0001", "noisy-0002"} { // the repeated id pays once
		if err := noisy(id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	wantRefused(t, "budget spent", noisy("noisy-0003"), codes.ResourceExhausted, "privacy budget exhausted", "2 of 2.5 spent, the query needs 1")
	if n, err := st.Spent(ctx, r.c.SHA256, "bank"); err != nil || n != 2_000_000 {
		t.Fatalf("spent %d %v, want 2e6", n, err)
	}
	// A restarted broker on the same store still refuses.
	_, addr2 := r.serve(st, root, "kms-bank-restarted")
	an2 := r.dial(addr2, "analytics", mrGood, false)
	_, err = an2.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: g.Wrapped, Context: dctx, Cleanroom: r.query("noisy_spend_by_segment", map[string]string{"since": "2024-01-01"}, "noisy-0004")})
	wantRefused(t, "budget spent after restart", err, codes.ResourceExhausted, "privacy budget exhausted")

	// Every decision is in the audit, with the clean-room query.
	var rooms []*audit.CleanRoom
	var decisions []string
	if err := st.Entries(context.Background(), 1, 1000, func(e audit.Entry) error {
		rec, err := audit.Decode(e.Body)
		if err != nil {
			return err
		}
		if rec.CleanRoom != nil {
			rooms = append(rooms, rec.CleanRoom)
			decisions = append(decisions, rec.Decision+" "+rec.CleanRoom.Template+" "+rec.CleanRoom.Epsilon+" "+rec.CleanRoom.EpsilonSpent)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"granted spend_by_segment  ", "refused dump_everything  ", "refused flagged_shoppers  ", "refused spend_by_segment  ",
		"refused spend_by_segment  ", "refused spend_by_segment  ", "refused spend_by_segment  ", "refused spend_by_segment  ",
		"granted noisy_spend_by_segment 1 1", "granted noisy_spend_by_segment 0 1", "granted noisy_spend_by_segment 1 2",
		"refused noisy_spend_by_segment  ", "refused noisy_spend_by_segment  ",
	}
	if strings.Join(decisions, "\n") != strings.Join(want, "\n") {
		t.Fatalf("clean-room audit entries:\n%s\nwant:\n%s", strings.Join(decisions, "\n"), strings.Join(want, "\n"))
	}
	if rooms[0].Query != `{"template":"spend_by_segment","params":{"min_balance":"100"}}` || rooms[0].Owner != "bank" || rooms[0].Name != "bank-retail-demo" {
		t.Fatalf("first entry %+v", rooms[0])
	}
}

func TestSpendIsAtomicPerQuery(t *testing.T) {
	for name, st := range map[string]func(testing.TB) *store.Store{"sqlite": sqliteStore, "postgres": func(t testing.TB) *store.Store { return postgresStore(t, uniqueSchema()) }} {
		t.Run(name, func(t *testing.T) {
			s := st(t)
			ctx := context.Background()
			mac := make([]byte, 32)
			spend := func(id string) error {
				_, err := s.Update(ctx, mac, func(tx *store.Tx) error {
					_, _, err := tx.Spend("c", "o", id, 400_000, 1_000_000)
					return err
				}, func() []byte { return []byte(`{}`) })
				return err
			}
			for _, id := range []string{"a", "b", "b"} {
				if err := spend(id); err != nil {
					t.Fatal(err)
				}
			}
			if err := spend("c"); err == nil || !strings.Contains(err.Error(), "0.8 of 1 spent, the query needs 0.4") {
				t.Fatalf("third charge: %v", err)
			}
			if n, _ := s.Spent(ctx, "c", "o"); n != 800_000 {
				t.Fatalf("spent %d", n)
			}
		})
	}
}
