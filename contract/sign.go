package contract

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/teeml/teeml/ratls"
)

// OIDContract marks a contract signature: a certificate issued by a
// member's identity key whose critical extension of this OID holds the
// 32-byte SHA-256 of the contract it approves. It lies in teeml's
// provisional arc (see pki.OIDEvidence). An RA-TLS certificate never
// carries it, and a signature certificate carries no TEE evidence, so
// neither can stand in for the other.
var OIDContract = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 3}

// MaxSignatures bounds a signatures file.
const (
	MaxSignatures     = 64
	maxSignaturesSize = 256 << 10
)

// Signature is one member's approval: the signature certificate and the
// identity certificate that issued it.
type Signature struct {
	Cert, Identity *x509.Certificate
}

// Sign returns member's signature of the contract raw (PEM: the signature
// certificate, then the identity certificate). It is valid as long as the
// identity certificate is.
func Sign(raw []byte, identity *x509.Certificate, key *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	if !identity.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		return nil, errors.New("contract sign: the key is not the identity certificate's")
	}
	sum, _ := hex.DecodeString(Hash(raw))
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("contract sign: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: identity.Subject.CommonName, OrganizationalUnit: []string{"contract-signature"}},
		NotBefore:       now.Add(-time.Minute),
		NotAfter:        identity.NotAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: OIDContract, Critical: true, Value: sum}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, identity, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("contract sign: %w", err)
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: identity.Raw})
	return b.Bytes(), nil
}

// ParseSignatures parses a signatures file: PEM certificates in pairs
// (signature certificate, identity certificate), as Sign writes them and
// as concatenating several members' signature files gives.
func ParseSignatures(b []byte) ([]Signature, error) {
	if len(b) > maxSignaturesSize {
		return nil, fmt.Errorf("contract signatures: %d bytes, at most %d", len(b), maxSignaturesSize)
	}
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("contract signatures: PEM block %q, want CERTIFICATE", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("contract signatures: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
		if len(certs) > 2*MaxSignatures {
			return nil, fmt.Errorf("contract signatures: more than %d signatures", MaxSignatures)
		}
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("contract signatures: trailing data that is not PEM")
	}
	if len(certs) == 0 {
		return nil, errors.New("contract signatures: no certificates")
	}
	if len(certs)%2 != 0 {
		return nil, fmt.Errorf("contract signatures: %d certificates, want pairs (signature, identity)", len(certs))
	}
	out := make([]Signature, 0, len(certs)/2)
	for i := 0; i < len(certs); i += 2 {
		out = append(out, Signature{Cert: certs[i], Identity: certs[i+1]})
	}
	return out, nil
}

// LoadSignatures reads and parses a signatures file.
func LoadSignatures(path string) ([]Signature, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("contract signatures: %w", err)
	}
	return ParseSignatures(b)
}

// signedHash returns the contract hash a signature certificate approves.
func signedHash(c *x509.Certificate) (string, error) {
	var found string
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDContract) {
			if found != "" {
				return "", errors.New("two contract extensions")
			}
			if len(e.Value) != 32 {
				return "", fmt.Errorf("contract extension of %d bytes, want 32", len(e.Value))
			}
			found = hex.EncodeToString(e.Value)
		}
	}
	if found == "" {
		return "", errors.New("not a contract signature (no contract extension)")
	}
	return found, nil
}

// SignatureError is a missing or invalid owner signature.
type SignatureError struct {
	Contract string
	Owner    string // "" when the signer is not known
	Reason   string
}

func (e *SignatureError) Error() string {
	if e.Owner == "" {
		return fmt.Sprintf("contract %s: signature: %s", e.Contract, e.Reason)
	}
	return fmt.Sprintf("contract %s: owner %s: %s", e.Contract, e.Owner, e.Reason)
}

// VerifySignatures checks that every owner of c signed exactly c's bytes
// with its current federation identity (checked by fed at now: chain to the
// federation root, not revoked, active in the member list). It returns the
// verified identities by owner.
func VerifySignatures(c *Contract, sigs []Signature, fed ratls.IdentityVerifier, now time.Time) (map[string]*ratls.Identity, error) {
	if fed == nil {
		return nil, &SignatureError{Contract: c.Name, Reason: "no federation to verify signatures against"}
	}
	got := map[string]*ratls.Identity{}
	for i, s := range sigs {
		name := s.Identity.Subject.CommonName
		id, err := fed.VerifyIdentity([]*x509.Certificate{s.Cert, s.Identity}, now)
		if err != nil {
			return nil, &SignatureError{Contract: c.Name, Owner: name, Reason: fmt.Sprintf("signature %d: %v", i+1, err)}
		}
		h, err := signedHash(s.Cert)
		if err != nil {
			return nil, &SignatureError{Contract: c.Name, Owner: id.Name, Reason: fmt.Sprintf("signature %d: %v", i+1, err)}
		}
		if h != c.SHA256 {
			return nil, &SignatureError{Contract: c.Name, Owner: id.Name, Reason: fmt.Sprintf("signed contract sha256 %s…, not this one (%s…): the contract changed after it was signed", h[:16], c.SHA256[:16])}
		}
		if _, ok := c.Owners[id.Name]; !ok {
			continue // another member's approval: allowed, not required
		}
		got[id.Name] = id
	}
	var missing []string
	for o := range c.Owners {
		if got[o] == nil {
			missing = append(missing, o)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &SignatureError{Contract: c.Name, Owner: missing[0], Reason: fmt.Sprintf("has not signed (unsigned owners: %s)", strings.Join(missing, ", "))}
	}
	return got, nil
}
