package kms

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
)

// auditedStore returns a store with n granted/refused decisions appended by a
// broker, and the broker's root key.
func auditedStore(t *testing.T, n int) (*store.Store, *testRoot, *Broker) {
	t.Helper()
	st := sqliteStore(t)
	root := newTestRoot(t)
	b, err := NewBroker(context.Background(), BrokerConfig{Name: "kms", Store: st, Root: root, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	for i := range n {
		rec := audit.NewRecord(b.cfg.Now(), "kms", OpUnwrap, audit.Granted)
		if i%3 == 1 {
			rec.Decision, rec.Reason = audit.Refused, "test refusal"
		}
		rec.KeyID = "k"
		rec.Caller.Name = "col-1"
		if _, err := b.audit.append(context.Background(), rec.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	return st, root, b
}

func exec(t *testing.T, st *store.Store, q string, args ...any) {
	t.Helper()
	if _, err := st.DB().Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

func wantBroken(t *testing.T, st *store.Store, root rootkey.Wrapper, parts []string, witnesses ...audit.Head) {
	t.Helper()
	_, err := VerifyStore(context.Background(), st, root, witnesses...)
	if err == nil {
		t.Fatal("tampered audit log verifies")
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestAuditVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	entry := func(t *testing.T, st *store.Store, seq uint64) audit.Entry {
		var e audit.Entry
		st.Entries(ctx, seq, 1, func(x audit.Entry) error { e = x; return nil })
		return e
	}
	t.Run("intact", func(t *testing.T) {
		st, root, _ := auditedStore(t, 10)
		rep, err := VerifyStore(ctx, st, root)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Head.Seq != 10 || rep.Granted+rep.Refused != 10 || !rep.MACChecked {
			t.Fatalf("%+v", rep)
		}
	})
	t.Run("edited body", func(t *testing.T) {
		st, root, _ := auditedStore(t, 10)
		exec(t, st, `UPDATE kms_audit SET body = CAST(REPLACE(CAST(body AS TEXT), '"refused"', '"granted"') AS BLOB) WHERE seq = 5`)
		wantBroken(t, st, root, []string{"entry 5", "edited"})
	})
	t.Run("edited and rehashed to the end", func(t *testing.T) {
		// The attacker recomputes every later hash and the head: only the
		// head MAC (root key) catches it.
		st, root, _ := auditedStore(t, 10)
		h := audit.Head{Seq: 4, Hash: entry(t, st, 4).Hash}
		orig6 := audit.Head{Seq: 6, Hash: entry(t, st, 6).Hash}
		for seq := uint64(5); seq <= 10; seq++ {
			e := entry(t, st, seq)
			body := []byte(strings.Replace(string(e.Body), `"refused"`, `"granted"`, 1))
			n := audit.Next(h, body)
			exec(t, st, `UPDATE kms_audit SET prev = ?, hash = ?, body = ? WHERE seq = ?`, n.Prev, n.Hash, n.Body, seq)
			h = audit.Head{Seq: seq, Hash: n.Hash}
		}
		exec(t, st, `UPDATE kms_audit_head SET hash = ? WHERE id = 1`, h.Hash)
		wantBroken(t, st, root, []string{"not authenticated by the broker's MAC"})
		// Without the root key only the chain is checked: it verifies, which
		// is why the MAC (or a witness) is needed.
		if _, err := VerifyStore(ctx, st, nil); err != nil {
			t.Fatalf("consistently rewritten chain, no MAC check: %v", err)
		}
		wantBroken(t, st, nil, []string{"entry 6", "witnessed"}, orig6)
	})
	t.Run("deleted entry", func(t *testing.T) {
		st, root, _ := auditedStore(t, 10)
		exec(t, st, `DELETE FROM kms_audit WHERE seq = 4`)
		wantBroken(t, st, root, []string{"entry 5", "entries 4 to 4 missing"})
	})
	t.Run("inserted entry", func(t *testing.T) {
		// Shift entries 6… up by one and insert a forged entry 6 chained to 5.
		st, root, _ := auditedStore(t, 10)
		exec(t, st, `UPDATE kms_audit SET seq = seq + 100 WHERE seq >= 6`)
		exec(t, st, `UPDATE kms_audit SET seq = seq - 99 WHERE seq >= 106`)
		rec := audit.NewRecord(time.Now(), "kms", OpUnwrap, audit.Granted)
		e := audit.Next(audit.Head{Seq: 5, Hash: entry(t, st, 5).Hash}, rec.Encode())
		exec(t, st, `INSERT INTO kms_audit (seq, prev, hash, body) VALUES (?, ?, ?, ?)`, e.Seq, e.Prev, e.Hash, e.Body)
		wantBroken(t, st, root, []string{"entry 7", "previous hash"})
	})
	t.Run("truncated tail", func(t *testing.T) {
		st, root, _ := auditedStore(t, 10)
		exec(t, st, `DELETE FROM kms_audit WHERE seq > 7`)
		wantBroken(t, st, root, []string{"chain ends at entry 7 but the head records entry 10", "truncated"})
	})
	t.Run("rolled back with head", func(t *testing.T) {
		// Truncating the tail and restoring an earlier head row (with its
		// valid MAC) is a rollback: only a witness kept from a later
		// response detects it.
		st, root, b := auditedStore(t, 7)
		old, oldMAC, err := st.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			b.audit.append(ctx, audit.NewRecord(b.cfg.Now(), "kms", OpList, audit.Granted).Encode())
		}
		later, _, _ := st.Head(ctx)
		exec(t, st, `DELETE FROM kms_audit WHERE seq > 7`)
		exec(t, st, `UPDATE kms_audit_head SET seq = ?, hash = ?, mac = ? WHERE id = 1`, int64(old.Seq), old.Hash, oldMAC)
		if _, err := VerifyStore(ctx, st, root); err != nil {
			t.Fatalf("rollback without witness (documented limit) failed to verify: %v", err)
		}
		wantBroken(t, st, root, []string{"witnessed entry 10 is beyond the chain's end 7"}, later)
	})
}
