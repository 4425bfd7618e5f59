package ear

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/teeml/teeml/internal/ecpem"
)

// LoadSigningKey reads a verifier's ES256 signing key: one PEM ECDSA P-256
// private key (PKCS #8 or SEC 1).
func LoadSigningKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ear signing key: %w", err)
	}
	k, err := ecpem.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ear signing key %s: %w", path, err)
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("ear signing key %s: %w: curve %s, ES256 needs P-256", path, ErrAlgorithm, k.Curve.Params().Name)
	}
	return k, nil
}

// ParsePublicKeys decodes trusted verifier keys: one or more PEM "PUBLIC
// KEY" blocks (PKIX), each ECDSA P-256. Text between blocks is allowed
// (RFC 7468); anything that is not a key block is refused.
func ParsePublicKeys(b []byte) ([]*ecdsa.PublicKey, error) {
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
			return nil, fmt.Errorf("key %d: %w: want an ECDSA P-256 key (ES256)", len(keys)+1, ErrAlgorithm)
		}
		keys = append(keys, ek)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, errors.New("a PEM block after the keys does not parse")
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	return keys, nil
}

// LoadPublicKeys reads ParsePublicKeys's format from path.
func LoadPublicKeys(path string) ([]*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ear verifier keys: %w", err)
	}
	keys, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("ear verifier keys %s: %w", path, err)
	}
	return keys, nil
}

// MarshalPublicKey encodes k as a PEM PUBLIC KEY block.
func MarshalPublicKey(k *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
