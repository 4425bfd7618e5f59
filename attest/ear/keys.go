package ear

import (
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
	keys, err := ecpem.ParsePublicKeys(b, true)
	if errors.Is(err, ecpem.ErrNotP256) {
		return nil, fmt.Errorf("%w: %w (ES256)", ErrAlgorithm, err)
	}
	return keys, err
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
