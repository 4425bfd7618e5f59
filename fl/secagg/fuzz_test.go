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
