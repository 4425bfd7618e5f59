package enclave

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"

	"github.com/teeml/teeml/internal/explain"
)

// SGX signing-key parameters: SIGSTRUCT holds a 3072-bit modulus and a 32-bit
// exponent that EINIT requires to be 3.
const (
	KeyBits     = 3072
	KeyExponent = 3
	// KeySize is the size in bytes of the modulus, signature, Q1 and Q2
	// fields of SIGSTRUCT.
	KeySize = KeyBits / 8
)

// maxKeyAttempts bounds the prime-pair search; every rejection below has
// negligible probability, so hitting the bound means a broken random source.
const maxKeyAttempts = 100

// GenerateSigningKey returns a new RSA-3072 key with public exponent 3, the
// key shape SGX requires (what gramine-sgx-gen-private-key and
// `openssl genrsa -3 3072` make). crypto/rsa.GenerateKey only makes e=65537
// keys, so the primes are generated here: p, q are 1536-bit primes with
// p ≡ q ≡ 2 (mod 3) (so gcd(3, p-1) = gcd(3, q-1) = 1), n = p·q has exactly
// 3072 bits, |p−q| > 2^1436 (FIPS 186-4 B.3.1), and d = 3⁻¹ mod lcm(p−1, q−1).
//
// random is passed to crypto/rand.Prime; nil means crypto/rand.Reader. Since
// Go 1.26 crypto/rand.Prime ignores it and always uses a secure source unless
// GODEBUG=cryptocustomrand=1 is set.
func GenerateSigningKey(random io.Reader) (*rsa.PrivateKey, error) {
	if random == nil {
		random = rand.Reader
	}
	e := big.NewInt(KeyExponent)
	one := big.NewInt(1)
	minDiff := new(big.Int).Lsh(one, KeyBits/2-100)
	for range maxKeyAttempts {
		p, err := generatePrime(random)
		if err != nil {
			return nil, err
		}
		q, err := generatePrime(random)
		if err != nil {
			return nil, err
		}
		diff := new(big.Int).Sub(p, q)
		if diff.Abs(diff).Cmp(minDiff) <= 0 {
			continue
		}
		if p.Cmp(q) < 0 { // OpenSSL convention: p > q
			p, q = q, p
		}
		n := new(big.Int).Mul(p, q)
		if n.BitLen() != KeyBits {
			continue
		}
		pm1 := new(big.Int).Sub(p, one)
		qm1 := new(big.Int).Sub(q, one)
		g := new(big.Int).GCD(nil, nil, pm1, qm1)
		lcm := new(big.Int).Mul(pm1, qm1)
		lcm.Quo(lcm, g)
		d := new(big.Int).ModInverse(e, lcm)
		if d == nil || d.BitLen() <= KeyBits/2 {
			continue
		}
		key := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: n, E: KeyExponent},
			D:         d,
			Primes:    []*big.Int{p, q},
		}
		key.Precompute()
		if err := key.Validate(); err != nil {
			return nil, fmt.Errorf("enclave key: generated key failed validation: %w", err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("enclave key: no valid RSA-%d e=%d key after %d prime pairs: random source is broken", KeyBits, KeyExponent, maxKeyAttempts)
}

// generatePrime returns a KeyBits/2-bit prime p with p mod 3 == 2.
func generatePrime(random io.Reader) (*big.Int, error) {
	three := big.NewInt(3)
	m := new(big.Int)
	for range 1000 {
		p, err := rand.Prime(random, KeyBits/2)
		if err != nil {
			return nil, fmt.Errorf("enclave key: generating a %d-bit prime: %w", KeyBits/2, err)
		}
		if m.Mod(p, three).Int64() == 2 {
			return p, nil
		}
	}
	return nil, fmt.Errorf("enclave key: no %d-bit prime ≡ 2 (mod 3) after 1000 primes: random source is broken", KeyBits/2)
}

// CheckSigningKey reports whether pub can sign an SGX enclave: EINIT and
// gramine-sgx-sign accept only 3072-bit moduli with public exponent 3.
func CheckSigningKey(pub *rsa.PublicKey) error {
	if pub == nil || pub.N == nil {
		return errors.New("enclave key: no RSA public key")
	}
	if pub.N.BitLen() != KeyBits {
		return fmt.Errorf("enclave key: modulus has %d bits, SGX requires %d", pub.N.BitLen(), KeyBits)
	}
	if pub.E != KeyExponent {
		return fmt.Errorf("enclave key: public exponent is %d, SGX requires %d", pub.E, KeyExponent)
	}
	return nil
}

// MarshalKeyPEM encodes key as a PEM "RSA PRIVATE KEY" block (PKCS#1), the
// format gramine-sgx-gen-private-key writes (Python cryptography's
// TraditionalOpenSSL). OpenSSL 3's `openssl genrsa -3 3072` writes PKCS#8
// ("PRIVATE KEY") instead; Gramine and ParseSigningKeyPEM read both.
func MarshalKeyPEM(key *rsa.PrivateKey) ([]byte, error) {
	if key == nil {
		return nil, errors.New("enclave key: no RSA private key")
	}
	if err := CheckSigningKey(&key.PublicKey); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
}

// WriteKeyPEM writes key to path as MarshalKeyPEM encodes it, with mode 0600.
// The write is atomic: the PEM goes to a temporary file in the same
// directory, is fsynced, and is then moved into place, so path never holds
// half a key. Unless overwrite is set, an existing path is left untouched
// and an error returned (replacing a signing key changes MRSIGNER).
func WriteKeyPEM(path string, key *rsa.PrivateKey, overwrite bool) error {
	data, err := MarshalKeyPEM(key)
	if err != nil {
		return explain.Errorf(err, "enclave key %s: %s", path, trimPrefix(err))
	}
	if err := writeFileAtomic(path, data, 0o600, overwrite); err != nil {
		return fmt.Errorf("enclave key %s: %w", path, err)
	}
	return nil
}

// errExists refuses to replace an existing file; errors.Is(err,
// fs.ErrExist) holds for it, as for the *os.LinkError it stands for.
var errExists = explain.Errorf(fs.ErrExist, "file already exists (refusing to overwrite)")

// writeFileAtomic writes data to a temporary file next to path, fsyncs it,
// and renames it over path (or hard-links it to path when overwrite is false,
// which fails if path exists), then fsyncs the directory.
func writeFileAtomic(path string, data []byte, perm fs.FileMode, overwrite bool) (err error) {
	dir := filepath.Dir(path)
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return errExists
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", unwrapPath(err))
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		os.Remove(tmpName) // after a rename or link this is a no-op or drops the extra name
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("setting mode %o: %w", perm, unwrapPath(err))
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing: %w", unwrapPath(err))
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing: %w", unwrapPath(err))
	}
	if err := tmp.Close(); err != nil {
		tmp = nil
		return fmt.Errorf("closing: %w", unwrapPath(err))
	}
	tmp = nil
	if overwrite {
		if err := os.Rename(tmpName, path); err != nil {
			return fmt.Errorf("renaming into place: %w", unwrapPath(err))
		}
	} else {
		if err := os.Link(tmpName, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return errExists
			}
			return fmt.Errorf("linking into place: %w", unwrapPath(err))
		}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: make the new name durable
		d.Close()
	}
	return nil
}

// ParseSigningKeyPEM parses an unencrypted RSA private key in PEM form,
// either PKCS#1 ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY"), and checks it
// with CheckSigningKey and rsa.PrivateKey.Validate.
func ParseSigningKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("enclave key: no PEM block found")
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		if _, encrypted := block.Headers["DEK-Info"]; encrypted {
			return nil, errors.New("enclave key: PEM key is encrypted: decrypt it first (openssl rsa -in KEY -out PLAIN)")
		}
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("enclave key: parsing PKCS#1 RSA private key: %w", err)
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("enclave key: parsing PKCS#8 private key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("enclave key: PKCS#8 key is %T, SGX requires RSA", k)
		}
		key = rk
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("enclave key: PEM key is encrypted: decrypt it first (openssl pkey -in KEY -out PLAIN)")
	default:
		return nil, fmt.Errorf("enclave key: PEM block is %q, want \"RSA PRIVATE KEY\" or \"PRIVATE KEY\"", block.Type)
	}
	if err := CheckSigningKey(&key.PublicKey); err != nil {
		return nil, err
	}
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("enclave key: invalid RSA key: %w", err)
	}
	key.Precompute()
	return key, nil
}

// LoadSigningKey reads and parses the PEM signing key at path (see
// ParseSigningKeyPEM). Keys that are not RSA-3072 with e=3 are refused, as
// gramine-sgx-sign refuses them.
func LoadSigningKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enclave key %s: %w", path, unwrapPath(err))
	}
	key, err := ParseSigningKeyPEM(data)
	if err != nil {
		return nil, explain.Errorf(err, "enclave key %s: %s", path, trimPrefix(err))
	}
	return key, nil
}

// MRSigner returns SGX MRSIGNER for pub: SHA-256 of the modulus as SIGSTRUCT
// stores it, 384 bytes little-endian. A modulus longer than 384 bytes (never
// valid for SGX) is hashed over all its little-endian bytes.
func MRSigner(pub *rsa.PublicKey) [32]byte {
	return sha256.Sum256(modulusLE(pub.N))
}

// modulusLE returns n as at least KeySize little-endian bytes.
func modulusLE(n *big.Int) []byte {
	size := max(KeySize, (n.BitLen()+7)/8)
	b := n.FillBytes(make([]byte, size))
	reverse(b)
	return b
}

func reverse(b []byte) {
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
}

// unwrapPath drops the operation and path from an *fs.PathError, for
// messages that already name the file.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// trimPrefix drops a leading "enclave key: " from err's message, for
// messages that are re-prefixed with a file name.
func trimPrefix(err error) string {
	const p = "enclave key: "
	s := err.Error()
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
