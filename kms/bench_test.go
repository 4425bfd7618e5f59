package kms

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/kms/store"
)

// Unwrap throughput over mutual RA-TLS (PKI mode, simulated evidence, the
// verified-evidence cache warm), every unwrap judged against the key's
// release policy and recorded durably in the audit chain before the key is
// returned. Run with
//
//	TEEML_TEST_POSTGRES_DSN=… go test ./kms -run '^$' -bench Unwrap -benchtime 3s -count 3
//
// Sub-benchmarks: the backend (sqlite: WAL, synchronous=FULL; postgres:
// default synchronous_commit=on), then
//
//	serial         one caller, one connection: latency-bound (one fsync per unwrap)
//	parallel       64 concurrent callers over 8 established connections:
//	               the audit writer's group commit shares each fsync
//	conn-per-call  8 callers, each unwrap on a new connection (full RA-TLS
//	               handshake, evidence cache warm)
//
// Brokers run with their audit anchor file (as `kms serve` does: one more
// atomic file write per group commit); sqlite-no-anchor measures without it.
func BenchmarkUnwrap(b *testing.B) {
	e := newEnv(b)
	b.Run("sqlite", func(b *testing.B) { benchUnwrap(b, e, sqliteStore(b), true) })
	b.Run("sqlite-no-anchor", func(b *testing.B) { benchUnwrap(b, e, sqliteStore(b), false) })
	b.Run("postgres", func(b *testing.B) { benchUnwrap(b, e, postgresStore(b, uniqueSchema()), true) })
}

func benchUnwrap(b *testing.B, e *env, st *store.Store, anchored bool) {
	ctx := context.Background()
	_, addr := e.serveAnchored(st, newTestRoot(b), "kms-bench", anchored)
	admin := e.dial(addr, "admin", mrGood, false)
	if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "bench", ReleasePolicy: releaseCol1()}); err != nil {
		b.Fatal(err)
	}
	const conns = 8
	clients := make([]kmsv1.KeyBrokerClient, conns)
	for i := range clients {
		clients[i] = e.dial(addr, "col-1", mrGood, false)
	}
	g, err := clients[0].GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	req := &kmsv1.UnwrapRequest{Wrapped: g.Wrapped}
	for _, c := range clients { // establish every connection
		if _, err := c.Unwrap(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	report := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "unwraps/s")
	}
	b.Run("serial", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			if _, err := clients[0].Unwrap(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Int64
		b.SetParallelism(64 / max(1, runtimeProcs()))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			c := clients[next.Add(1)%conns]
			for pb.Next() {
				if _, err := c.Unwrap(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, start)
	})
	b.Run("conn-per-call", func(b *testing.B) {
		leaf := e.leaf("col-1", mrGood, false)
		b.SetParallelism(8 / max(1, runtimeProcs()))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c, closeConn := e.dialLeaf(addr, leaf)
				_, err := c.Unwrap(ctx, req)
				closeConn()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, start)
	})
}

// BenchmarkUnwrapSQLiteVsPostgres alternates the two backends inside each
// iteration (64 concurrent callers, established connections), so load
// drift on a shared machine hits both alike; the ratio is the number to
// quote.
//
//	TEEML_TEST_POSTGRES_DSN=… go test ./kms -run '^$' -bench UnwrapSQLiteVsPostgres -benchtime 3s -count 3
func BenchmarkUnwrapSQLiteVsPostgres(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	type backend struct {
		clients []kmsv1.KeyBrokerClient
		req     *kmsv1.UnwrapRequest
		ns      atomic.Int64
	}
	setup := func(st *store.Store) *backend {
		_, addr := e.serve(st, newTestRoot(b), "kms-bench")
		admin := e.dial(addr, "admin", mrGood, false)
		if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "bench", ReleasePolicy: releaseCol1()}); err != nil {
			b.Fatal(err)
		}
		bk := &backend{}
		for range 8 {
			bk.clients = append(bk.clients, e.dial(addr, "col-1", mrGood, false))
		}
		g, err := bk.clients[0].GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		bk.req = &kmsv1.UnwrapRequest{Wrapped: g.Wrapped}
		for _, c := range bk.clients {
			if _, err := c.Unwrap(ctx, bk.req); err != nil {
				b.Fatal(err)
			}
		}
		return bk
	}
	sq := setup(sqliteStore(b))
	pg := setup(postgresStore(b, uniqueSchema()))
	var next atomic.Int64
	b.SetParallelism(64 / max(1, runtimeProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		for pb.Next() {
			for _, bk := range []*backend{sq, pg} {
				t0 := time.Now()
				if _, err := bk.clients[i%8].Unwrap(ctx, bk.req); err != nil {
					b.Error(err)
					return
				}
				bk.ns.Add(int64(time.Since(t0)))
			}
		}
	})
	b.ReportMetric(float64(sq.ns.Load())/float64(b.N)/1e6, "sqlite-ms/unwrap")
	b.ReportMetric(float64(pg.ns.Load())/float64(b.N)/1e6, "postgres-ms/unwrap")
	b.ReportMetric(float64(pg.ns.Load())/float64(sq.ns.Load()), "postgres/sqlite")
}
