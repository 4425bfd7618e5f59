package ecpem

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestRoundTripAndRejections(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePrivateKey(b)
	if err != nil || !got.Equal(key) {
		t.Fatalf("round trip: %v", err)
	}
	sec1, _ := x509.MarshalECPrivateKey(key)
	if got, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})); err != nil || !got.Equal(key) {
		t.Fatalf("SEC 1: %v", err)
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	rder, _ := x509.MarshalPKCS8PrivateKey(rk)
	cases := map[string][]byte{
		"no PEM block":     []byte("hello"),
		"data after":       append(append([]byte{}, b...), b...),
		"want PRIVATE KEY": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
		"want ECDSA":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rder}),
	}
	for want, in := range cases {
		if _, err := ParsePrivateKey(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
}
