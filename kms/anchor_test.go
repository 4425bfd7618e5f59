package kms

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/kms/store"
)

// anchorBackend opens handles on one database.
type anchorBackend struct {
	cfg store.Config
	// truncate empties the database the way an operator (or attacker)
	// would: a zero-length SQLite file, TRUNCATE of every PostgreSQL table.
	truncate func(t *testing.T)
}

var brokerTables = []string{"kms_key_versions", "kms_keys", "kms_audit", "kms_audit_head", "kms_budgets", "kms_budget_queries", "kms_meta"}

func sqliteBackend(t *testing.T) anchorBackend {
	path := filepath.Join(t.TempDir(), "kms.db")
	return anchorBackend{cfg: store.Config{Driver: "sqlite", Path: path}, truncate: func(t *testing.T) {
		for _, sfx := range []string{"-wal", "-shm"} {
			os.Remove(path + sfx)
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
	}}
}

func postgresBackend(t *testing.T) anchorBackend {
	schema := uniqueSchema()
	b := anchorBackend{cfg: store.Config{Driver: "postgres", DSN: postgresDSN(t), Schema: schema}}
	b.truncate = func(t *testing.T) {
		st := b.open(t)
		defer st.Close()
		exec(t, st, `TRUNCATE `+strings.Join(brokerTables, ", "))
	}
	t.Cleanup(func() {
		if st, err := store.Open(context.Background(), b.cfg); err == nil {
			st.DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
			st.Close()
		}
	})
	return b
}

func (b anchorBackend) open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// session starts a broker with an audit anchor on the backend, runs ops
// against it over RA-TLS, and stops it (closing its store).
func (b anchorBackend) session(t *testing.T, e *env, root *testRoot, anchorPath string, ops func(admin, col kmsv1.KeyBrokerClient)) {
	t.Helper()
	st := b.open(t)
	defer st.Close()
	br, err := NewBroker(context.Background(), BrokerConfig{Name: "kms", Store: st, Root: root, Admins: []string{"admin"},
		Logger: quiet(), Federation: e.fe.Fed, AnchorPath: anchorPath})
	if err != nil {
		t.Fatalf("broker start on an intact store: %v", err)
	}
	addr, stop := e.serveBroker(br)
	defer stop()
	ops(e.dial(addr, "admin", mrGood, false), e.dial(addr, "col-1", mrGood, false))
}

// someOps creates key id (admin path: Store.Update) and generates data
// keys (group-commit path).
func someOps(t *testing.T, id string, n int) func(admin, col kmsv1.KeyBrokerClient) {
	return func(admin, col kmsv1.KeyBrokerClient) {
		ctx := ctxT(t)
		if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: id, ReleasePolicy: releaseCol1()}); err != nil {
			t.Fatal(err)
		}
		for range n {
			if _, err := col.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// wantAnchorRefusal checks err is a one-line refusal containing every part.
func wantAnchorRefusal(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted a wiped or rolled-back store", what)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not contain %q", what, err, p)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: error is not one line: %q", what, err)
	}
}

// verifyLocal is what `kms audit verify --local` does: a read-only open,
// then the anchored verification.
func (b anchorBackend) verifyLocal(root *testRoot, anchorPath string) (*AuditReport, error) {
	st, err := store.OpenReadOnly(context.Background(), b.cfg)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return VerifyStoreAnchored(context.Background(), st, root, anchorPath)
}

// restart is a broker start on the (tampered) store.
func (b anchorBackend) restart(root *testRoot, anchorPath string) error {
	st, err := store.Open(context.Background(), b.cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	br, err := NewBroker(context.Background(), BrokerConfig{Name: "kms", Store: st, Root: root, Logger: quiet(), AnchorPath: anchorPath})
	if err == nil {
		br.Close()
	}
	return err
}

// TestAuditAnchorDetectsWipeTruncateAndRollback reproduces issue 23 defect
// 1: deleting every audit row and the head row (the broker then restarted
// its chain at entry 1 and `audit verify --local` said OK), truncating the
// store to empty, deleting it, and replacing it with an older copy. Each is
// refused at broker start and by the local verification, in one line.
func TestAuditAnchorDetectsWipeTruncateAndRollback(t *testing.T) {
	e := newEnv(t)
	for _, bk := range []struct {
		name string
		new  func(t *testing.T) anchorBackend
	}{{"sqlite", sqliteBackend}, {"postgres", postgresBackend}} {
		t.Run(bk.name, func(t *testing.T) {
			type tamper struct {
				name             string
				do               func(t *testing.T, b anchorBackend)
				verify, atStart  []string
				afterStartVerify []string // after the refused start's migration, if it differs
			}
			cases := []tamper{
				{name: "wipe audit rows and head row", do: func(t *testing.T, b anchorBackend) {
					st := b.open(t)
					defer st.Close()
					exec(t, st, `DELETE FROM kms_audit`)
					exec(t, st, `DELETE FROM kms_audit_head`)
				}, verify: []string{"no audit head row", "wiped"},
					atStart:          []string{"holds 1 keys but its audit log is empty", "wiped"},
					afterStartVerify: []string{"holds 1 keys but its audit log is empty"}},
				{name: "wipe every row", do: func(t *testing.T, b anchorBackend) {
					st := b.open(t)
					defer st.Close()
					for _, tb := range brokerTables {
						exec(t, st, `DELETE FROM `+tb)
					}
				}, verify: []string{"no audit head row", "wiped"},
					atStart:          []string{"no audit MAC key but the audit anchor", "wiped or replaced"},
					afterStartVerify: []string{"no audit MAC key but the audit anchor"}},
				{name: "truncate to empty", do: func(t *testing.T, b anchorBackend) { b.truncate(t) }},
				{name: "replace with an older copy", do: nil, // see below
					verify:  []string{"audit head is entry 4 but the anchor", "records entry 8", "older copy"},
					atStart: []string{"audit head is entry 4 but the anchor", "records entry 8", "older copy"}},
			}
			if bk.name == "sqlite" {
				cases[2].verify = []string{"empty (0 bytes)"}
				cases[2].atStart = []string{"empty (0 bytes)"}
				cases = append(cases, tamper{name: "delete the store file", do: func(t *testing.T, b anchorBackend) {
					for _, sfx := range []string{"", "-wal", "-shm"} {
						os.Remove(b.cfg.Path + sfx)
					}
				}, verify: []string{"no such file"}, atStart: []string{"no audit MAC key but the audit anchor"}})
			} else {
				cases[2].verify = []string{"no audit head row", "wiped"}
				cases[2].atStart = []string{"no audit MAC key but the audit anchor"}
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					b := bk.new(t)
					root := newTestRoot(t)
					anchorPath := filepath.Join(t.TempDir(), "audit.anchor")
					// create + 3 data keys = entries 1..4.
					b.session(t, e, root, anchorPath, someOps(t, "k1", 3))
					do := c.do
					if do == nil {
						// An older copy: snapshot every table now, then more
						// acknowledged operations, then restore the snapshot.
						st := b.open(t)
						for _, tb := range brokerTables {
							exec(t, st, `CREATE TABLE old_`+tb+` AS SELECT * FROM `+tb)
						}
						st.Close()
						b.session(t, e, root, anchorPath, someOps(t, "k2", 3)) // entries 5..8
						do = func(t *testing.T, b anchorBackend) {
							st := b.open(t)
							defer st.Close()
							for _, tb := range brokerTables {
								exec(t, st, `DELETE FROM `+tb)
							}
							for i := len(brokerTables) - 1; i >= 0; i-- {
								exec(t, st, `INSERT INTO `+brokerTables[i]+` SELECT * FROM old_`+brokerTables[i])
							}
						}
					}
					// Intact: the restart and the verification accept it.
					if rep, err := b.verifyLocal(root, anchorPath); err != nil || rep.Anchored == nil || rep.Anchored.Seq != rep.Head.Seq {
						t.Fatalf("intact store: %+v, %v", rep, err)
					}
					if err := b.restart(root, anchorPath); err != nil {
						t.Fatalf("restart on the intact store: %v", err)
					}
					do(t, b)
					_, err := b.verifyLocal(root, anchorPath)
					wantAnchorRefusal(t, "audit verify --local", err, c.verify...)
					err = b.restart(root, anchorPath)
					wantAnchorRefusal(t, "broker start", err, c.atStart...)
					if c.afterStartVerify != nil {
						_, err = b.verifyLocal(root, anchorPath)
						wantAnchorRefusal(t, "audit verify --local after the refused start", err, c.afterStartVerify...)
					}
					if strings.Contains(c.atStart[0], "anchor") && !errors.Is(err, ErrAnchor) {
						t.Errorf("start refusal %v does not match ErrAnchor", err)
					}
				})
			}
		})
	}
}

// TestAuditAnchorMissingOrForeign: a store with entries and no anchor is
// refused unless adopted; an anchor from another broker (another MAC key)
// is refused; an adopted store is anchored at its head.
func TestAuditAnchorMissingOrForeign(t *testing.T) {
	e := newEnv(t)
	b := sqliteBackend(t)
	root := newTestRoot(t)
	anchorPath := filepath.Join(t.TempDir(), "audit.anchor")
	b.session(t, e, root, anchorPath, someOps(t, "k1", 2))
	if err := os.Remove(anchorPath); err != nil {
		t.Fatal(err)
	}
	wantAnchorRefusal(t, "start without the anchor", b.restart(root, anchorPath), "audit anchor", "is missing but the store's audit head is entry 3", "--adopt-audit-head")
	_, err := b.verifyLocal(root, anchorPath)
	wantAnchorRefusal(t, "verify without the anchor", err, "is missing")

	st := b.open(t)
	br, err := NewBroker(context.Background(), BrokerConfig{Name: "kms", Store: st, Root: root, Logger: quiet(), AnchorPath: anchorPath, AdoptHead: true})
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	br.Close()
	st.Close()
	if rep, err := b.verifyLocal(root, anchorPath); err != nil || rep.Anchored == nil || rep.Anchored.Seq != 3 {
		t.Fatalf("after adopting: %+v %v", rep, err)
	}

	// A write torn by a crash: the newer slot is garbage, the older one
	// (one commit behind, never ahead of the store) is the anchor.
	b.session(t, e, root, anchorPath, someOps(t, "k3", 2)) // entries 4..6
	raw, err := os.ReadFile(anchorPath)
	if err != nil || len(raw) != 2*anchorSlot {
		t.Fatalf("anchor file: %d bytes, %v", len(raw), err)
	}
	a, slot, ok, err := readAnchorSlot(anchorPath, mustMACKey(t, b, root))
	if err != nil || !ok || a.Seq != 6 {
		t.Fatalf("anchor before the tear: %v %v %v", a, ok, err)
	}
	copy(raw[slot*anchorSlot+40:], "torn write")
	os.WriteFile(anchorPath, raw, 0o600)
	if a, _, err := readAnchor(anchorPath, mustMACKey(t, b, root)); err != nil || a.Seq >= 6 || a.Seq == 0 {
		t.Fatalf("anchor after the tear: %v %v, want the older slot", a, err)
	}
	if err := b.restart(root, anchorPath); err != nil {
		t.Fatalf("restart after a torn anchor write: %v", err)
	}

	// Another broker's anchor (its own store, so its own MAC key).
	other := sqliteBackend(t)
	otherAnchor := filepath.Join(t.TempDir(), "audit.anchor")
	other.session(t, e, root, otherAnchor, someOps(t, "k9", 1))
	wantAnchorRefusal(t, "foreign anchor", b.restart(root, otherAnchor), "is not authenticated by this store's audit MAC key")
	// A garbled anchor.
	os.WriteFile(otherAnchor, []byte("hello\n"), 0o600)
	wantAnchorRefusal(t, "garbled anchor", b.restart(root, otherAnchor), "not a \"teeml-kms-audit-anchor v1")
}

// mustMACKey unwraps the audit MAC key of b's store.
func mustMACKey(t *testing.T, b anchorBackend, root *testRoot) []byte {
	t.Helper()
	st := b.open(t)
	defer st.Close()
	w, err := st.Meta(context.Background(), macKeyMeta)
	if err != nil {
		t.Fatal(err)
	}
	k, err := root.Unwrap(w, macKeyAAD)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
