package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/ecpem"
	"github.com/teeml/teeml/internal/pemcerts"
)

// Curve names accepted for CA and identity keys.
const (
	P256 = "P-256"
	P384 = "P-384"
)

func curveByName(name string) (elliptic.Curve, error) {
	switch name {
	case "", P256:
		return elliptic.P256(), nil
	case P384:
		return elliptic.P384(), nil
	}
	return nil, fmt.Errorf("unknown curve %q (P-256 or P-384)", name)
}

func checkCurve(pub *ecdsa.PublicKey) error {
	if pub == nil || (pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384()) {
		return errors.New("key is not ECDSA P-256 or P-384")
	}
	return nil
}

// GenerateKey makes a new ECDSA key on curve (P256 or P384; "" is P-256)
// for a CA or a party's identity.
func GenerateKey(curve string) (*ecdsa.PrivateKey, error) {
	c, err := curveByName(curve)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return ecdsa.GenerateKey(c, rand.Reader)
}

// MarshalPrivateKey encodes key as a PEM "PRIVATE KEY" (PKCS #8) block.
func MarshalPrivateKey(key *ecdsa.PrivateKey) ([]byte, error) {
	b, err := ecpem.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	return b, nil
}

// SaveKey writes key to path atomically as PEM with mode 0600.
func SaveKey(path string, key *ecdsa.PrivateKey) error {
	b, err := MarshalPrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(path, b, 0o600); err != nil {
		return fmt.Errorf("pki: private key %s: %w", path, err)
	}
	return nil
}

// LoadKey reads an ECDSA P-256 or P-384 private key (PEM "PRIVATE KEY" or
// "EC PRIVATE KEY"). It refuses a key file that group or others can read.
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return nil, fmt.Errorf("pki: private key %s: permissions %04o, want 0600 (chmod 600 %s)", path, m, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	key, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("pki: private key %s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKey decodes one PEM ECDSA P-256 or P-384 private key.
func ParsePrivateKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	key, err := ecpem.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, err
	}
	if err := checkCurve(&key.PublicKey); err != nil {
		return nil, err
	}
	return key, nil
}

// KeyHash is SHA-256 of the DER SubjectPublicKeyInfo of a public key: what
// a CSR's evidence must carry as report data (zero padded to 64 bytes).
func KeyHash(spkiDER []byte) [32]byte { return sha256.Sum256(spkiDER) }

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER encoding,
// the form in which operators compare a federation root out of band.
func Fingerprint(cert *x509.Certificate) string {
	h := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(h[:])
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ParseCertificatePEM decodes exactly one PEM "CERTIFICATE" block.
// Explanatory text around it is allowed (RFC 7468 section 2, e.g. `openssl
// x509 -text` output); a second certificate, a malformed block or a block of
// another type is refused.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	ders, err := pemcerts.DER(b)
	if err != nil {
		return nil, err
	}
	if len(ders) != 1 {
		return nil, fmt.Errorf("%d PEM certificates, want exactly one", len(ders))
	}
	return x509.ParseCertificate(ders[0])
}

// LoadCertificate reads a file holding exactly one PEM certificate.
func LoadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	c, err := ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate %s: %w", path, err)
	}
	return c, nil
}
