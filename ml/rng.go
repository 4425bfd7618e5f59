package ml

import (
	"math"
	"math/bits"
)

// rng is a small, fully specified PRNG (SplitMix64) so that initial weights
// and shuffle orders are bit-identical for a given seed on every platform and
// Go version — parties of a federation must be able to rebuild the same
// initial model from (kind, spec, seed).
type rng struct{ s uint64 }

func newRNG(seed int64, stream uint64) *rng {
	r := &rng{s: uint64(seed) ^ (stream * 0x9e3779b97f4a7c15)}
	r.next() // decorrelate nearby seeds
	return r
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float64 returns a uniform value in [0, 1).
func (r *rng) float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// uniform returns a uniform value in [-a, a).
func (r *rng) uniform(a float64) float32 { return float32((2*r.float64() - 1) * a) }

// normal returns a standard normal value (Box–Muller).
func (r *rng) normal() float64 {
	u1 := r.float64()
	for u1 == 0 {
		u1 = r.float64()
	}
	u2 := r.float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// intn returns an integer in [0, n) by multiply-shift (Lemire); the bias is
// negligible for n ≪ 2^64.
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int(hi)
}

// perm returns a Fisher–Yates permutation of 0..n-1.
func (r *rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
