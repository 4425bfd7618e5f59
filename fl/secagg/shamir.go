package secagg

import (
	"fmt"
	"io"
	"slices"
)

// Shamir secret sharing over GF(2⁸) (the AES field, x⁸ + x⁴ + x³ + x + 1),
// byte by byte: share j is the random degree t−1 polynomial with constant
// term the secret byte, evaluated at x = j + 1.

func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

// gfInv is a⁻¹ = a²⁵⁴ (a ≠ 0).
func gfInv(a byte) byte {
	r := byte(1)
	for e := 254; e > 0; e >>= 1 {
		if e&1 != 0 {
			r = gfMul(r, a)
		}
		a = gfMul(a, a)
	}
	return r
}

// split shares secret among n holders with threshold t.
func split(secret []byte, n, t int, rand io.Reader) ([][]byte, error) {
	coef := make([]byte, len(secret)*(t-1))
	if _, err := io.ReadFull(rand, coef); err != nil {
		return nil, fmt.Errorf("secagg: shares: %w", err)
	}
	out := make([][]byte, n)
	for j := range out {
		x := byte(j + 1)
		s := make([]byte, len(secret))
		for k, c0 := range secret {
			// Horner: c0 + x(c1 + x(c2 + …)).
			var y byte
			for d := t - 2; d >= 0; d-- {
				y = gfMul(y, x) ^ coef[k*(t-1)+d]
			}
			s[k] = gfMul(y, x) ^ c0
		}
		out[j] = s
	}
	return out, nil
}

// combine rebuilds a secret from the first t shares (by holder id) of
// shares (holder → share), by Lagrange interpolation at 0.
func combine(shares map[int][32]byte, t int) []byte { return combineWith(nil, shares, t) }

func combineWith(lg lagrange, shares map[int][32]byte, t int) []byte {
	return interpolate(lg, shares, firstHolders(shares, t), 0)
}

// consistent reports whether every share of shares lies on the polynomial
// through the first t of them (false means a corrupt share among them;
// with exactly t shares nothing can be checked).
func consistent(lg lagrange, shares map[int][32]byte, t int) bool {
	base := firstHolders(shares, t)
	for k, s := range shares {
		if slices.Contains(base, k) {
			continue
		}
		if !slices.Equal(interpolate(lg, shares, base, byte(k+1)), s[:]) {
			return false
		}
	}
	return true
}

func firstHolders(shares map[int][32]byte, t int) []int {
	var holders []int
	for j := 0; j < 256 && len(holders) < t; j++ {
		if _, ok := shares[j]; ok {
			holders = append(holders, j)
		}
	}
	return holders
}

// lagrange caches Lagrange coefficients by holder set and point. They
// depend only on the holders' public x-coordinates, so an aggregator that
// rebuilds many secrets from the same holders computes them (and their
// field inversions) once, not once per secret. nil computes afresh.
type lagrange map[string][]byte

// coeffs are the coefficients l_i = Π_{j≠i} (x − x_j)/(x_i − x_j) of the
// holders at x, with − being ⊕ in GF(2⁸).
func (lg lagrange) coeffs(holders []int, x byte) []byte {
	key := make([]byte, 0, len(holders)+1)
	for _, h := range holders {
		key = append(key, byte(h))
	}
	key = append(key, x)
	if c, ok := lg[string(key)]; ok {
		return c
	}
	c := make([]byte, len(holders))
	for n, i := range holders {
		xi := byte(i + 1)
		l := byte(1)
		for _, j := range holders {
			if j == i {
				continue
			}
			xj := byte(j + 1)
			l = gfMul(l, gfMul(x^xj, gfInv(xi^xj)))
		}
		c[n] = l
	}
	if lg != nil {
		lg[string(key)] = c
	}
	return c
}

// interpolate evaluates at x the polynomial through the holders' shares:
// Σ_i s_i·l_i.
func interpolate(lg lagrange, shares map[int][32]byte, holders []int, x byte) []byte {
	out := make([]byte, 32)
	for n, l := range lg.coeffs(holders, x) {
		s := shares[holders[n]]
		for k := range out {
			out[k] ^= gfMul(l, s[k])
		}
	}
	return out
}
