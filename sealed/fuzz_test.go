package sealed

import (
	"bytes"
	"context"
	"testing"
)

// FuzzHeader feeds arbitrary bytes to the header parser: it must never panic
// or over-read, and whatever it accepts must re-encode to the same bytes.
func FuzzHeader(f *testing.F) {
	ks := testKeys(f, "k1")
	var buf bytes.Buffer
	w, err := NewWriter(context.Background(), &buf, ks, "k1", nil)
	if err != nil {
		f.Fatal(err)
	}
	w.Write([]byte("seed"))
	w.Close()
	good := buf.Bytes()
	f.Add(good)
	f.Add(good[:fixedLen])
	f.Add(good[:fixedLen+3])
	f.Add([]byte(Magic))
	f.Add([]byte{})
	long := (&Header{Algorithm: AlgAES256GCMHKDF, SegmentSize: MaxSegmentSize, KeyID: string(bytes.Repeat([]byte("x"), MaxKeyIDLen)), Wrapped: make([]byte, MaxWrappedLen)})
	if b, err := long.MarshalBinary(); err == nil {
		f.Add(b)
	} else {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			return
		}
		if n > len(b) || n != h.Len() {
			t.Fatalf("consumed %d of %d bytes, header says %d", n, len(b), h.Len())
		}
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted header does not re-encode: %v", err)
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatal("re-encoding differs from the parsed bytes")
		}
	})
}

// FuzzOpen feeds arbitrary files to both decryption paths: neither may panic,
// and nothing but the sealed plaintext may ever come out.
func FuzzOpen(f *testing.F) {
	ks := testKeys(f, "k1")
	plain := []byte("the only plaintext under this key")
	var buf bytes.Buffer
	w, err := NewWriter(context.Background(), &buf, ks, "k1", &Options{SegmentSize: MinSegmentSize})
	if err != nil {
		f.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, wt := range []bool{false, true} {
			var got []byte
			var err error
			if wt {
				got, err = openWT(ks, b)
			} else {
				got, err = open(ks, b, false)
			}
			if err == nil && !bytes.Equal(got, plain) {
				t.Fatalf("decrypted something else: %q", got)
			}
			if err != nil && !bytes.HasPrefix(plain, got) {
				t.Fatalf("released unauthenticated bytes before failing: %q", got)
			}
		}
	})
}
