package sealedparquet

import (
	"bytes"
	"testing"
)

// FuzzKeyMetadata: key metadata comes from the file, i.e. from the attacker.
func FuzzKeyMetadata(f *testing.F) {
	f.Add([]byte(encodeKeyMeta("ds", []byte{1, 2, 3})))
	f.Add([]byte(`{"v":1,"key_id":"","wrapped":"AA=="}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, w, err := decodeKeyMeta(b)
		if err != nil {
			return
		}
		if len(w) == 0 || m.KeyID == "" {
			t.Fatalf("accepted %q", b)
		}
		if _, w2, err := decodeKeyMeta([]byte(encodeKeyMeta(m.KeyID, w))); err != nil || !bytes.Equal(w, w2) {
			t.Fatal("re-encoding does not round trip")
		}
	})
}

// FuzzCryptoMetadata: the plaintext FileCryptoMetaData that Inspect parses
// without any key.
func FuzzCryptoMetadata(f *testing.F) {
	f.Add([]byte{0x15, 0x00, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseCryptoMeta(b) // must not panic
	})
}
