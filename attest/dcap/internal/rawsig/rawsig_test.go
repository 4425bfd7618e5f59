package rawsig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
)

func key(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func raw(k *ecdsa.PublicKey) []byte {
	b := make([]byte, 64)
	k.X.FillBytes(b[:32])
	k.Y.FillBytes(b[32:])
	return b
}

func TestSignVerify(t *testing.T) {
	k := key(t)
	sig, err := Sign(k, []byte("msg"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(raw(&k.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(pub, []byte("msg"), sig); err != nil {
		t.Fatal(err)
	}
	if err := Verify(pub, []byte("msh"), sig); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong message: %v", err)
	}
	for i := range sig {
		bad := append([]byte(nil), sig...)
		bad[i] ^= 0x10
		if Verify(pub, []byte("msg"), bad) == nil {
			t.Fatalf("flipped signature byte %d verified", i)
		}
	}
	if Verify(pub, []byte("msg"), sig[:63]) == nil || Verify(pub, []byte("msg"), make([]byte, 64)) == nil {
		t.Error("short or zero signature verified")
	}
	if Verify(nil, []byte("msg"), sig) == nil {
		t.Error("nil key verified")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if Verify(&p384.PublicKey, []byte("msg"), sig) == nil {
		t.Error("P-384 key accepted")
	}
}

func TestParsePublicKey(t *testing.T) {
	k := key(t)
	b := raw(&k.PublicKey)
	b[63] ^= 1 // off the curve
	if _, err := ParsePublicKey(b); err == nil {
		t.Error("point off the curve accepted")
	}
	if _, err := ParsePublicKey(make([]byte, 64)); err == nil {
		t.Error("zero point accepted")
	}
	if _, err := ParsePublicKey(b[:63]); err == nil {
		t.Error("short key accepted")
	}
}

// BenchmarkVerify is the cost floor of a DCAP verification: two of these
// per quote (QE report and quote signatures).
func BenchmarkVerify(b *testing.B) {
	k := key(b)
	sig, _ := Sign(k, make([]byte, 432))
	pub, _ := ParsePublicKey(raw(&k.PublicKey))
	msg := make([]byte, 432)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Verify(pub, msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}
