package psi

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%010d", i)
	}
	return ids
}

// BenchmarkBlind is one party's first pass, single-threaded: hash to the
// group (RFC 9380 XMD + ristretto255 map) and raise to the secret.
func BenchmarkBlind(b *testing.B) {
	k, _ := newSecret(rand.Reader)
	ids := benchIDs(1024)
	dst := hashDST([32]byte{1})
	out := make([]byte, len(ids)*pointLen)
	c0 := cpuTime()
	for b.Loop() {
		blindIDs(out, dst, k, ids)
	}
	reportRates(b, b.N*len(ids), cpuTime()-c0)
}

// BenchmarkReblind is the peer's pass, single-threaded: decode, raise to
// the other secret, encode and digest.
func BenchmarkReblind(b *testing.B) {
	k, _ := newSecret(rand.Reader)
	ids := benchIDs(1024)
	in := make([]byte, len(ids)*pointLen)
	blindIDs(in, hashDST([32]byte{1}), k, ids)
	out := make([]byte, len(ids)*DigestLen)
	c0 := cpuTime()
	for b.Loop() {
		if err := reblind(out, k, in); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, b.N*len(ids), cpuTime()-c0)
}

// BenchmarkProtocol runs whole sessions (both parties in this process, RA-TLS
// on loopback, mode both, 50% overlap) and reports IDs per second of wall
// time and per CPU-second (both parties' IDs over both parties' CPU: the
// per-core rate, independent of how many cores the machine lends).
//
// Under -short (CI runs every benchmark once so) it uses 2000 IDs a side,
// a second instead of fifteen.
func BenchmarkProtocol(b *testing.B) {
	sizes := []int{20_000}
	if testing.Short() {
		sizes = []int{2_000}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			e := newVFLEnv(b)
			rng := mrand.New(mrand.NewPCG(5, 6))
			lids, fids := genIDs(rng, "l", n, n/2), genIDs(rng, "f", n, n/2)
			var cpu time.Duration
			b.ResetTimer()
			for b.Loop() {
				l, f := &party{name: "bank", role: Leader, mr: mrGood, ids: lids}, &party{name: "shop", role: Follower, mr: mrGood, ids: fids}
				c0 := cpuTime()
				r := e.runPair(Both, l, f)
				cpu += cpuTime() - c0
				if r.errs[0] != nil || r.errs[1] != nil || r.res[0].Intersection != n/2 {
					b.Fatalf("%v %v", r.errs[0], r.errs[1])
				}
			}
			reportRates(b, b.N*2*n, cpu)
		})
	}
}

// reportRates reports IDs per second of wall time and per CPU-second. On a
// shared machine wall time includes waiting for a core; CPU time does not,
// so ids/cpu-s is the per-core rate.
func reportRates(b *testing.B, ids int, cpu time.Duration) {
	b.ReportMetric(float64(ids)/b.Elapsed().Seconds(), "ids/s")
	b.ReportMetric(float64(ids)/cpu.Seconds(), "ids/cpu-s")
}

// BenchmarkBlindWorkers is one batch's blinding on the session's bounded
// worker pool (Config.Workers goroutines): ids/s is the total rate of the
// pool, ids/cpu-s the per-core rate.
func BenchmarkBlindWorkers(b *testing.B) {
	k, _ := newSecret(rand.Reader)
	ids := benchIDs(DefaultBatchSize)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			s := &session{cfg: Config{Workers: w}, dst: hashDST([32]byte{1}), secret: k}
			c0 := cpuTime()
			for b.Loop() {
				if out := s.blind(ids); len(out) != len(ids)*pointLen {
					b.Fatal(len(out))
				}
			}
			reportRates(b, b.N*len(ids), cpuTime()-c0)
		})
	}
}

// BenchmarkScalarMult is the physical limit the protocol is measured
// against: one constant-time variable-base ristretto255 scalar
// multiplication by a secret scalar, single-threaded, no encoding. Each ID
// of the protocol costs two of them (its owner's and the peer's), so the
// protocol's ceiling in IDs per CPU-second is half this rate.
func BenchmarkScalarMult(b *testing.B) {
	k, _ := newSecret(rand.Reader)
	p := hashToGroup(hashDST([32]byte{1}), "user-0000000001")
	const perOp = 1024
	c0 := cpuTime()
	for b.Loop() {
		for range perOp {
			p.ScalarMult(k, p)
		}
	}
	rate := float64(b.N*perOp) / (cpuTime() - c0).Seconds()
	b.ReportMetric(rate, "mults/cpu-s")
	b.ReportMetric(rate/2, "ceiling-ids/cpu-s")
}
