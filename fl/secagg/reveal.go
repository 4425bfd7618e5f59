package secagg

import (
	"fmt"
	"slices"
)

// revealVersion is the first byte of an encoded Reveal.
const revealVersion = 1

// Encode is a reveal's wire form: version, from, the number of seed
// shares and of key shares (one byte each), then per share the owner's id
// (one byte) and the 32-byte share, seeds first, each list by owner id.
func (r Reveal) Encode() []byte {
	b := make([]byte, 0, 4+33*(len(r.Seeds)+len(r.Keys)))
	b = append(b, revealVersion, byte(r.From), byte(len(r.Seeds)), byte(len(r.Keys)))
	for _, m := range []map[int][32]byte{r.Seeds, r.Keys} {
		for _, j := range sortedKeys(m) {
			s := m[j]
			b = append(b, byte(j))
			b = append(b, s[:]...)
		}
	}
	return b
}

// DecodeReveal parses a reveal's wire form (untrusted bytes). It checks
// the framing and that no owner repeats within a list; Aggregate (or
// CheckReveal) checks the lists against the round's survivors and dropped.
func DecodeReveal(b []byte) (Reveal, error) {
	if len(b) < 4 {
		return Reveal{}, fmt.Errorf("reveal of %d bytes, want at least 4: %w", len(b), ErrMalformed)
	}
	if b[0] != revealVersion {
		return Reveal{}, fmt.Errorf("reveal version %d, want %d: %w", b[0], revealVersion, ErrMalformed)
	}
	ns, nk := int(b[2]), int(b[3])
	if want := 4 + 33*(ns+nk); len(b) != want {
		return Reveal{}, fmt.Errorf("reveal of %d bytes, want %d for %d seed and %d key shares: %w", len(b), want, ns, nk, ErrMalformed)
	}
	r := Reveal{From: int(b[1]), Seeds: map[int][32]byte{}, Keys: map[int][32]byte{}}
	off := 4
	for i := range ns + nk {
		m, what := r.Seeds, "seed"
		if i >= ns {
			m, what = r.Keys, "key"
		}
		j := int(b[off])
		if _, dup := m[j]; dup {
			return Reveal{}, fmt.Errorf("reveal from client %d: second %s share of client %d: %w", r.From, what, j, ErrMalformed)
		}
		m[j] = [32]byte(b[off+1 : off+33])
		off += 33
	}
	return r, nil
}

// CheckReveal checks a decoded reveal against the round: it comes from
// from, holds a seed share of exactly the survivors and a key share of
// exactly the dropped (so the aggregator never gets both secrets of one
// client from it).
func CheckReveal(r Reveal, from int, survivors, dropped []int) error {
	if r.From != from {
		return fmt.Errorf("reveal from client %d claims sender %d: %w", from, r.From, ErrMalformed)
	}
	same := func(m map[int][32]byte, ids []int) bool {
		return len(m) == len(ids) && slices.Equal(sortedKeys(m), slices.Sorted(slices.Values(ids)))
	}
	if !same(r.Seeds, survivors) || !same(r.Keys, dropped) {
		return fmt.Errorf("reveal from client %d: seed shares of %v and key shares of %v, want survivors %v and dropped %v: %w",
			from, sortedKeys(r.Seeds), sortedKeys(r.Keys), survivors, dropped, ErrMalformed)
	}
	return nil
}

// Threshold is the Shamir threshold for n clients that tolerates a
// fraction dropout of them dropping out: n − ⌊dropout·n⌋, and at least
// ⌊n/2⌋ + 1.
func Threshold(n int, dropout float64) int {
	t := n - int(dropout*float64(n))
	return max(t, n/2+1)
}
