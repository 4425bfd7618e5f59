package rootkey

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

func TestParseBlob(t *testing.T) {
	b := append(newHeader(KindPKCS11, KeyID{1, 2, 3, 4, 5, 6, 7, 8}, bytes.Repeat([]byte{9}, nonceSize)), make([]byte, tagSize)...)
	p, err := ParseBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindPKCS11 || p.KeyID.String() != "0102030405060708" || len(p.Nonce) != nonceSize || len(p.Ciphertext) != tagSize {
		t.Fatalf("parsed %+v", p)
	}
	bad := bytes.Clone(b)
	bad[1] = 9
	if _, err := ParseBlob(bad); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if _, err := ParseBlob(b[:len(b)-1]); err == nil {
		t.Fatal("short blob accepted")
	}
}

// FuzzParseBlob feeds arbitrary bytes to the blob parser and to Unwrap: they
// must never panic, and anything the parser accepts must re-serialise to the
// same bytes.
func FuzzParseBlob(f *testing.F) {
	key := bytes.Repeat([]byte{0x42}, 32)
	w, err := newSoftKey(KindFile, key, "fuzz", true)
	if err != nil {
		f.Fatal(err)
	}
	// The genuine blob uses a fixed nonce: fuzz workers rerun this setup,
	// and a random nonce would give each process a different "good" blob.
	nonce := bytes.Repeat([]byte{0x11}, nonceSize)
	h := newHeader(KindFile, w.id, nonce)
	good := (*w.aead.Load()).Seal(bytes.Clone(h), nonce, []byte("seed plaintext"), gcmAAD(h, []byte("aad")))
	if pt, err := w.Unwrap(good, []byte("aad")); err != nil || string(pt) != "seed plaintext" {
		f.Fatalf("seed blob does not unwrap: %v", err)
	}
	f.Add(good, []byte("aad"))
	f.Add(good[:Overhead-1], []byte(nil))
	f.Add([]byte{FormatV1, byte(KindPKCS11)}, []byte("x"))
	f.Add(append([]byte{2}, good[1:]...), []byte("aad"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, b, aad []byte) {
		p, err := ParseBlob(b)
		if err == nil {
			re := append(bytes.Clone(p.header), p.Ciphertext...)
			if !bytes.Equal(re, b) || p.Version != FormatV1 || len(p.Nonce) != nonceSize || len(p.Ciphertext) < tagSize {
				t.Fatalf("parse/serialise mismatch for %x", b)
			}
		}
		pt, err := w.Unwrap(b, aad)
		if err == nil && !(bytes.Equal(b, good) && string(aad) == "aad") {
			// Only the genuine blob may authenticate.
			t.Fatalf("forged blob %x with aad %q unwrapped to %q", b, aad, pt)
		}
	})
}

// TestHeaderIsGCMAdditionalData pins the documented construction: the GCM
// additional data is the 22-byte header followed by the caller's aad, so
// the header is authenticated even where Unwrap's own checks would not
// catch a change (a future format accepting several key IDs).
func TestHeaderIsGCMAdditionalData(t *testing.T) {
	key := bytes.Repeat([]byte{0x24}, 32)
	w, err := newSoftKey(KindFile, key, "test", true)
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("row")
	b, err := w.Wrap([]byte("dek"), aad)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce, ct := b[10:22], b[22:]
	if _, err := gcm.Open(nil, nonce, ct, aad); err == nil {
		t.Fatal("blob opens with the caller's aad alone: header not authenticated")
	}
	pt, err := gcm.Open(nil, nonce, ct, append(bytes.Clone(b[:22]), aad...))
	if err != nil || string(pt) != "dek" {
		t.Fatalf("blob does not open with header||aad: %v", err)
	}
}
