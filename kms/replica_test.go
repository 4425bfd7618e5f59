package kms

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/kms/store"
)

// TestReplicasShareOneStore: two brokers on one PostgreSQL schema (and, for
// comparison, one SQLite file), each with its own admin and client
// connections, create keys and generate / unwrap data keys concurrently.
// Every key made at one replica unwraps at the other, and the shared audit
// chain verifies: the replicas never fork it.
func TestReplicasShareOneStore(t *testing.T) {
	e := newEnv(t)
	t.Run("postgres", func(t *testing.T) {
		schema := uniqueSchema()
		replicas(t, e, postgresStore(t, schema), postgresStore(t, schema))
	})
	t.Run("sqlite", func(t *testing.T) {
		a := sqliteStore(t)
		b, err := store.Open(context.Background(), store.Config{Driver: "sqlite", Path: sqlitePath(t, a)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		replicas(t, e, a, b)
	})
}

func sqlitePath(t *testing.T, s *store.Store) string {
	var seq int
	var name, file string
	if err := s.DB().QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

func replicas(t *testing.T, e *env, sa, sb *store.Store) {
	ctx := ctxT(t)
	root := newTestRoot(t) // the replicas share the root key (same TEE signer / HSM)
	_, addrA := e.serve(sa, root, "kms-a")
	_, addrB := e.serve(sb, root, "kms-b")
	addrs := []string{addrA, addrB}
	const workers, per = 4, 8
	type made struct {
		id, replica   int
		wrapped, want []byte
	}
	var mu sync.Mutex
	var all []made
	var wg sync.WaitGroup
	errs := make(chan error, workers*per*3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := w % 2
			admin := e.dial(addrs[r], "admin", mrGood, false)
			cli := e.dial(addrs[r], "col-1", mrGood, false)
			for i := range per {
				id := fmt.Sprintf("k-%d-%d", w, i)
				if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: id, ReleasePolicy: releaseCol1()}); err != nil {
					errs <- err
					return
				}
				g, err := cli.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: id, WithPlaintext: true})
				if err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					if _, err := admin.RotateKey(ctx, &kmsv1.KeyRequest{KeyId: id}); err != nil {
						errs <- err
						return
					}
				}
				mu.Lock()
				all = append(all, made{id: w*per + i, replica: r, wrapped: g.Wrapped, want: g.Plaintext})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Each data key unwraps at the other replica.
	clis := []kmsv1.KeyBrokerClient{e.dial(addrA, "col-1", mrGood, false), e.dial(addrB, "col-1", mrGood, false)}
	for _, m := range all {
		u, err := clis[1-m.replica].Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: m.wrapped})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(u.Plaintext, m.want) {
			t.Fatalf("key %d: unwrapped plaintext differs", m.id)
		}
	}
	rep, err := VerifyStore(ctx, sa, root)
	if err != nil {
		t.Fatal(err)
	}
	// creates + generates + rotations + cross unwraps, nothing refused.
	rot := workers * ((per + 2) / 3)
	if want := workers*per*3 + rot; rep.Granted != want || rep.Refused != 0 {
		t.Fatalf("audit: %d granted %d refused, want %d granted", rep.Granted, rep.Refused, want)
	}
}
