package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/internal/ecpem"
)

// Warning is the message logged at WARN level on every simulated Issue and
// Verify.
const Warning = "SIMULATED attestation: no hardware protection"

func logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}

// KeyID is the SHA-256 of the PKIX DER encoding of pub; quotes carry it so a
// verifier can name the key that signed them.
func KeyID(pub *ecdsa.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("sim: simulation public key: %w", err)
	}
	return sha256.Sum256(der), nil
}

// GenerateKey makes a new simulation signing key (ECDSA P-256).
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// MarshalPrivateKey encodes key as a PEM "PRIVATE KEY" (PKCS #8) block.
func MarshalPrivateKey(key *ecdsa.PrivateKey) ([]byte, error) {
	b, err := ecpem.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("sim: simulation key: %w", err)
	}
	return b, nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" (PKIX) block, the form a
// verifier's trusted-key file takes.
func MarshalPublicKey(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("sim: simulation public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// SaveKey writes key to path as PEM with mode 0600.
func SaveKey(path string, key *ecdsa.PrivateKey) error {
	b, err := MarshalPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("sim: simulation key %s: %w", path, err)
	}
	return nil
}

// LoadKey reads a simulation signing key written by SaveKey (PEM "PRIVATE
// KEY" PKCS #8 or "EC PRIVATE KEY" SEC 1, P-256 only).
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: simulation key %s: %w", path, err)
	}
	key, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("sim: simulation key %s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKey decodes a PEM P-256 private key.
func ParsePrivateKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	key, err := ecpem.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, err
	}
	if key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key curve %s, want P-256", key.Curve.Params().Name)
	}
	return key, nil
}

// ParsePublicKeys decodes one or more PEM "PUBLIC KEY" blocks (P-256 only).
// It refuses input with no key or with anything else in it.
func ParsePublicKeys(pemBytes []byte) ([]*ecdsa.PublicKey, error) {
	keys, err := ecpem.ParsePublicKeys(pemBytes, false)
	if err != nil {
		return nil, fmt.Errorf("sim: trusted simulation keys: %w", err)
	}
	return keys, nil
}

// LoadPublicKeys reads a trusted-key file of PEM "PUBLIC KEY" blocks (see
// ParsePublicKeys).
func LoadPublicKeys(path string) ([]*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: trusted simulation keys: %w", err)
	}
	keys, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return keys, nil
}

// Issuer makes simulated quotes for a fixed Identity.
type Issuer struct {
	key   *ecdsa.PrivateKey
	keyID [32]byte
	id    Identity
	// Logger receives the WARN on every Issue; nil means slog.Default().
	Logger *slog.Logger
}

// NewIssuer returns an Issuer signing with key (P-256) for identity id.
func NewIssuer(key *ecdsa.PrivateKey, id Identity) (*Issuer, error) {
	if key == nil {
		return nil, errors.New("sim: issuer: no simulation key")
	}
	if key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("sim: issuer: key curve %s, want P-256", key.Curve.Params().Name)
	}
	kid, err := KeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	nid, err := id.normalized()
	if err != nil {
		return nil, err
	}
	return &Issuer{key: key, keyID: kid, id: nid}, nil
}

// PublicKey is the key a Verifier must trust to accept this issuer's quotes.
func (i *Issuer) PublicKey() *ecdsa.PublicKey { return &i.key.PublicKey }

// Identity returns the identity the issuer claims, debug bits folded in.
func (i *Issuer) Identity() Identity { return i.id }

// Issue implements attest.Issuer: a signed simulated quote binding
// reportData (at most 64 bytes, zero padded).
func (i *Issuer) Issue(ctx context.Context, reportData []byte) (*attest.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim: issue: %w", err)
	}
	if len(reportData) > 64 {
		return nil, fmt.Errorf("sim: issue: report data is %d bytes, at most 64 allowed", len(reportData))
	}
	q := &Quote{Identity: i.id, KeyID: i.keyID}
	copy(q.ReportData[:], reportData)
	d := q.Digest()
	r, s, err := ecdsa.Sign(rand.Reader, i.key, d[:])
	if err != nil {
		return nil, fmt.Errorf("sim: issue: signing: %w", err)
	}
	r.FillBytes(q.Signature[:32])
	s.FillBytes(q.Signature[32:])
	logger(i.Logger).Warn(Warning, "op", "issue", "tee", string(q.TEE), "debug", q.Debug)
	return &attest.Evidence{TEE: q.TEE, Simulated: true, Quote: q.marshal()}, nil
}

// Verifier checks simulated quotes against trusted simulation keys. The zero
// Verifier trusts no key and refuses everything.
type Verifier struct {
	keys map[[32]byte]*ecdsa.PublicKey
	// Logger receives the WARN on every Verify; nil means slog.Default().
	Logger *slog.Logger
}

// NewVerifier returns a Verifier trusting exactly keys; it is an error to
// give none.
func NewVerifier(keys ...*ecdsa.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("sim: verifier: no trusted simulation keys configured")
	}
	v := &Verifier{keys: map[[32]byte]*ecdsa.PublicKey{}}
	for n, k := range keys {
		if k == nil || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("sim: verifier: trusted key %d is not ECDSA P-256", n)
		}
		id, err := KeyID(k)
		if err != nil {
			return nil, err
		}
		v.keys[id] = k
	}
	return v, nil
}

// Verify implements attest.Verifier. now is unused: simulated quotes do not
// expire, and Claims.ValidUntil stays zero.
func (v *Verifier) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim: verify: %w", err)
	}
	if len(v.keys) == 0 {
		return nil, errors.New("sim: verify: no trusted simulation keys configured")
	}
	if ev == nil {
		return nil, errors.New("sim: verify: no evidence")
	}
	q, err := ParseQuote(ev.Quote)
	if err != nil {
		return nil, err
	}
	logger(v.Logger).Warn(Warning, "op", "verify", "tee", string(q.TEE), "debug", q.Debug)
	if !ev.Simulated {
		return nil, errors.New("sim: verify: evidence carries a simulated quote but is not marked Simulated")
	}
	if ev.TEE != q.TEE {
		return nil, fmt.Errorf("sim: verify: evidence TEE %q but simulated quote imitates %q", ev.TEE, q.TEE)
	}
	if len(ev.Collateral) != 0 {
		return nil, fmt.Errorf("sim: verify: simulated evidence has %d bytes of collateral, want none", len(ev.Collateral))
	}
	pub, ok := v.keys[q.KeyID]
	if !ok {
		return nil, fmt.Errorf("sim: verify: quote signed by simulation key %x, which is not trusted", q.KeyID[:8])
	}
	d := q.Digest()
	r := new(big.Int).SetBytes(q.Signature[:32])
	s := new(big.Int).SetBytes(q.Signature[32:])
	if !ecdsa.Verify(pub, d[:], r, s) {
		return nil, fmt.Errorf("sim: verify: bad signature by simulation key %x", q.KeyID[:8])
	}
	return q.claims(), nil
}
