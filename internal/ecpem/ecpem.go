// Package ecpem reads and writes single ECDSA private keys as PEM, the one
// format teeml's simulation keys and federation identity keys share. Callers
// add their own curve rules and error prefixes.
package ecpem

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ParsePrivateKey decodes exactly one PEM ECDSA private key: "PRIVATE KEY"
// (PKCS #8) or "EC PRIVATE KEY" (SEC 1). Anything after the block is an
// error, so a file cannot carry a second, unnoticed key.
func ParsePrivateKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM key block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, want ECDSA", k)
		}
		return ek, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
}

// MarshalPrivateKey encodes key as a PKCS #8 "PRIVATE KEY" PEM block.
func MarshalPrivateKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ErrNotP256 is a PUBLIC KEY block holding another algorithm or curve.
var ErrNotP256 = errors.New("want an ECDSA P-256 key")

// ParsePublicKeys decodes one or more PEM "PUBLIC KEY" blocks (PKIX, ECDSA
// P-256 only); errors name the key's place ("key 2: …"). Explanatory text
// between and around the blocks (RFC 7468) is allowed when text is true;
// otherwise only whitespace may follow the last block. Input with no key,
// or with a PEM block after the keys that does not parse, is refused.
func ParsePublicKeys(b []byte, text bool) ([]*ecdsa.PublicKey, error) {
	var keys []*ecdsa.PublicKey
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("key %d: PEM block %q, want PUBLIC KEY", len(keys)+1, block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", len(keys)+1, err)
		}
		ek, ok := k.(*ecdsa.PublicKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, fmt.Errorf("key %d is %T: %w", len(keys)+1, k, ErrNotP256)
		}
		keys = append(keys, ek)
	}
	switch {
	case bytes.Contains(rest, []byte("-----BEGIN")):
		return nil, errors.New("a PEM block after the keys does not parse")
	case !text && len(bytes.TrimSpace(rest)) != 0:
		return nil, errors.New("data that is not a PEM block")
	case len(keys) == 0:
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	return keys, nil
}
