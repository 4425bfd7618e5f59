package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/kms/audit"
)

var macKey = []byte("0123456789abcdef0123456789abcdef")

// backends opens two handles ("replicas") on one fresh database per
// backend: SQLite (one file) and PostgreSQL (one schema) when
// TEEML_TEST_POSTGRES_DSN is set (required under CI=true).
func backends(t *testing.T) map[string][2]*Store {
	t.Helper()
	ctx := context.Background()
	out := map[string][2]*Store{}
	path := filepath.Join(t.TempDir(), "kms.db")
	var sq [2]*Store
	for i := range sq {
		s, err := Open(ctx, Config{Driver: "sqlite", Path: path})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sq[i] = s
	}
	out["sqlite"] = sq
	dsn := os.Getenv("TEEML_TEST_POSTGRES_DSN")
	if dsn == "" {
		if testenv.InCI() {
			t.Fatal("TEEML_TEST_POSTGRES_DSN is not set under CI=true")
		}
		t.Log("TEEML_TEST_POSTGRES_DSN not set: PostgreSQL backend skipped")
		return out
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "kms_store_" + hex.EncodeToString(b)
	var pg [2]*Store
	for i := range pg {
		s, err := Open(ctx, Config{Driver: "postgres", DSN: dsn, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		pg[i] = s
	}
	t.Cleanup(func() {
		pg[0].DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
		pg[0].Close()
		pg[1].Close()
	})
	out["postgres"] = pg
	return out
}

func rec(i int) []byte {
	r := audit.NewRecord(time.Unix(0, 0), "test", "op", audit.Granted)
	r.KeyID = fmt.Sprintf("k%d", i)
	return r.Encode()
}

func verifyChain(t *testing.T, s *Store) audit.Head {
	t.Helper()
	ctx := context.Background()
	head, mac, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head.Seq > 0 && !audit.CheckHeadMAC(macKey, head, mac) {
		t.Fatal("head MAC does not verify")
	}
	v := audit.NewVerifier()
	if err := s.Entries(ctx, 1, 0, v.Add); err != nil {
		t.Fatal(err)
	}
	if err := v.Finish(&head); err != nil {
		t.Fatal(err)
	}
	return head
}

func TestKeysLifecycle(t *testing.T) {
	ctx := context.Background()
	for name, st := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := st[0]
			body := func() []byte { return rec(0) }
			if _, err := s.Update(ctx, macKey, func(tx *Tx) error {
				return tx.InsertKey(&Key{ID: "a", Policy: "p", Description: "d"}, []byte("m1"))
			}, body); err != nil {
				t.Fatal(err)
			}
			_, err := st[1].Update(ctx, macKey, func(tx *Tx) error {
				return tx.InsertKey(&Key{ID: "a", Policy: "p"}, []byte("x"))
			}, body)
			if !errors.Is(err, ErrExists) {
				t.Fatalf("duplicate create: %v", err)
			}
			if _, err := s.Update(ctx, macKey, func(tx *Tx) error {
				k, err := tx.LockKey("a")
				if err != nil {
					return err
				}
				return tx.AddVersion(k, []byte("m2"))
			}, body); err != nil {
				t.Fatal(err)
			}
			k, err := st[1].Key(ctx, "a")
			if err != nil || k.Current != 2 || k.State != Enabled || k.RowVersion != 2 {
				t.Fatalf("after rotate: %+v %v", k, err)
			}
			// A stale row version is refused, not silently lost.
			_, err = s.Update(ctx, macKey, func(tx *Tx) error {
				stale := *k
				stale.RowVersion = 1
				return tx.SetState(&stale, Disabled)
			}, body)
			if err == nil {
				t.Fatal("stale update accepted")
			}
			if _, err := s.Update(ctx, macKey, func(tx *Tx) error {
				k, err := tx.LockKey("a")
				if err != nil {
					return err
				}
				return tx.SetState(k, Destroyed)
			}, body); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Material(ctx, "a", 2); !errors.Is(err, ErrNotFound) {
				t.Fatalf("destroyed material: %v", err)
			}
			if _, err := s.Key(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing key: %v", err)
			}
			// Failed updates wrote no audit entry: 3 successful changes (create, rotate, destroy).
			if h := verifyChain(t, s); h.Seq != 3 {
				t.Fatalf("head %d, want 3", h.Seq)
			}
		})
	}
}

// TestConcurrentReplicasKeepOneChain: two handles (replicas) append and
// create keys concurrently; the chain must never fork and nothing is lost.
func TestConcurrentReplicasKeepOneChain(t *testing.T) {
	ctx := context.Background()
	for name, st := range backends(t) {
		t.Run(name, func(t *testing.T) {
			const workers, per = 4, 25
			var wg sync.WaitGroup
			errs := make(chan error, 2*workers*per)
			for w := range workers {
				s := st[w%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range per {
						id := fmt.Sprintf("k-%d-%d", w, i)
						if _, err := s.Update(ctx, macKey, func(tx *Tx) error {
							return tx.InsertKey(&Key{ID: id, Policy: "p"}, []byte(id))
						}, func() []byte { return rec(i) }); err != nil {
							errs <- err
						}
						if _, err := s.Append(ctx, macKey, [][]byte{rec(i), rec(i + 1)}); err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if h := verifyChain(t, st[1]); h.Seq != workers*per*3 {
				t.Fatalf("head %d, want %d", h.Seq, workers*per*3)
			}
			keys, err := st[0].Keys(ctx)
			if err != nil || len(keys) != workers*per {
				t.Fatalf("%d keys, want %d (%v)", len(keys), workers*per, err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no driver"},
		{Config{Driver: "mysql"}, `driver "mysql"`},
		{Config{Driver: "sqlite"}, "no path"},
		{Config{Driver: "postgres", DSN: "postgres://x@127.0.0.1:1/db", Schema: "Bad-Name"}, "schema"},
		{Config{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")}, "sqlite"},
	} {
		_, err := Open(ctx, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want error containing %q", c.cfg, err, c.want)
		}
	}
}
