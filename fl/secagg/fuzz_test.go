package secagg

import (
	"bytes"
	"testing"
)

// FuzzDecodeShare: untrusted share bytes never panic, and whatever decodes
// encodes back to the same bytes.
func FuzzDecodeShare(f *testing.F) {
	f.Add(Share{From: 1, To: 2}.Encode())
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, shareSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeShare(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Encode(), b) {
			t.Fatalf("re-encoding %x gave %x", b, s.Encode())
		}
	})
}

// FuzzDecodeReveal: untrusted reveal bytes never panic, and whatever
// decodes encodes back to the same bytes when its lists are in id order.
func FuzzDecodeReveal(f *testing.F) {
	f.Add(Reveal{From: 1, Seeds: map[int][32]byte{0: {1}, 1: {2}}, Keys: map[int][32]byte{2: {3}}}.Encode())
	f.Add(Reveal{From: 0}.Encode())
	f.Add([]byte{1, 0, 1, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReveal(b)
		if err != nil {
			return
		}
		r2, err := DecodeReveal(r.Encode())
		if err != nil {
			t.Fatalf("re-encoding %x does not decode: %v", b, err)
		}
		if r2.From != r.From || len(r2.Seeds) != len(r.Seeds) || len(r2.Keys) != len(r.Keys) {
			t.Fatalf("round trip of %x changed the reveal", b)
		}
		for j, s := range r.Seeds {
			if r2.Seeds[j] != s {
				t.Fatalf("round trip of %x changed seed share %d", b, j)
			}
		}
	})
}
