package rootkey

import (
	"fmt"
	"path/filepath"
	"testing"
)

// Benchmarks wrap a 32-byte data key (the broker's typical payload) with a
// 32-byte aad. Run:
//
//	go test ./kms/rootkey/ -run '^$' -bench . -benchtime 2s
func benchWrap(b *testing.B, w Wrapper) {
	pt, aad := make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Wrap(pt, aad); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "wraps/s")
}

func benchUnwrap(b *testing.B, w Wrapper) {
	pt, aad := make([]byte, 32), make([]byte, 32)
	blob, err := w.Wrap(pt, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Unwrap(blob, aad); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
}

func benchFile(b *testing.B) Wrapper {
	path := filepath.Join(b.TempDir(), "root.key")
	if err := CreateFile(path); err != nil {
		b.Fatal(err)
	}
	w, err := Open("file:" + path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	return w
}

// benchPKCS11 opens a fresh SoftHSM2 token's root key with the given
// session pool size.
func benchPKCS11(b *testing.B, sessions int) Wrapper {
	cfg := newSoftHSMToken(b)
	if err := InitPKCS11(cfg); err != nil {
		b.Fatal(err)
	}
	w, err := OpenConfig(Config{Spec: cfg.uri(), PKCS11Sessions: sessions})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	return w
}

func BenchmarkWrap(b *testing.B) {
	b.Run("file", func(b *testing.B) { benchWrap(b, benchFile(b)) })
	b.Run("pkcs11-softhsm2", func(b *testing.B) { benchWrap(b, benchPKCS11(b, 1)) })
}

func BenchmarkUnwrap(b *testing.B) {
	b.Run("file", func(b *testing.B) { benchUnwrap(b, benchFile(b)) })
	b.Run("pkcs11-softhsm2", func(b *testing.B) { benchUnwrap(b, benchPKCS11(b, 1)) })
}

// BenchmarkWrapParallel measures the session pool: with one session every
// caller queues for it (the same as a mutex around a single session); with
// more, the token's operations overlap.
func BenchmarkWrapParallel(b *testing.B) {
	b.Run("file", func(b *testing.B) { benchWrapParallel(b, benchFile(b)) })
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("pkcs11-sessions=%d", n), func(b *testing.B) { benchWrapParallel(b, benchPKCS11(b, n)) })
	}
}

func benchWrapParallel(b *testing.B, w Wrapper) {
	pt, aad := make([]byte, 32), make([]byte, 32)
	b.SetParallelism(4) // 4×GOMAXPROCS callers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.Wrap(pt, aad); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "wraps/s")
}
