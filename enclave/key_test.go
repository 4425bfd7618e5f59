package enclave

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateSigningKey(t *testing.T) {
	k := generatedKey(t)
	if k.E != 3 || k.N.BitLen() != 3072 {
		t.Fatalf("got e=%d, %d bits; want e=3, 3072 bits", k.E, k.N.BitLen())
	}
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(k.Primes) != 2 {
		t.Fatalf("%d primes", len(k.Primes))
	}
	three := big.NewInt(3)
	for i, p := range k.Primes {
		if p.BitLen() != 1536 {
			t.Errorf("prime %d has %d bits", i, p.BitLen())
		}
		if new(big.Int).Mod(p, three).Int64() != 2 {
			t.Errorf("prime %d is not 2 mod 3, so gcd(3, p-1) != 1", i)
		}
	}
	// d·e ≡ 1 (mod p−1) and (mod q−1).
	for i, p := range k.Primes {
		pm1 := new(big.Int).Sub(p, big.NewInt(1))
		de := new(big.Int).Mul(k.D, three)
		if de.Mod(de, pm1).Cmp(big.NewInt(1)) != 0 {
			t.Errorf("d·e != 1 mod (prime %d − 1)", i)
		}
	}
	h := sha256.Sum256([]byte("x"))
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, h[:], sig); err != nil {
		t.Fatal(err)
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	k := testKey(t)
	data, err := MarshalKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN RSA PRIVATE KEY-----\n")) {
		t.Fatalf("PEM starts %q", data[:40])
	}
	k2, err := ParseSigningKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(k2) {
		t.Fatal("PKCS#1 round trip changed the key")
	}
	// PKCS#8, as OpenSSL 3 writes it.
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	k3, err := ParseSigningKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(k3) {
		t.Fatal("PKCS#8 round trip changed the key")
	}
}

func TestParseSigningKeyPEMErrors(t *testing.T) {
	for _, tc := range []struct {
		name, pem, want string
	}{
		{"empty", "", "no PEM block"},
		{"cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", `PEM block is "CERTIFICATE"`},
		{"encrypted pkcs8", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"},
		{"encrypted pkcs1", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n", "encrypted"},
		{"garbage pkcs1", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "parsing PKCS#1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSigningKeyPEM([]byte(tc.pem))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadSigningKeyRejects(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{testKeyE65537, "enclave key testdata/TEST-ONLY-e65537-key.pem: public exponent is 65537, SGX requires 3"},
		{testKey2048, "enclave key testdata/TEST-ONLY-2048-key.pem: modulus has 2048 bits, SGX requires 3072"},
		{"testdata/missing.pem", "enclave key testdata/missing.pem: no such file or directory"},
	} {
		_, err := LoadSigningKey(tc.path)
		if err == nil || err.Error() != tc.want {
			t.Errorf("LoadSigningKey(%s) = %v, want %q", tc.path, err, tc.want)
		}
	}
}

func TestWriteKeyPEM(t *testing.T) {
	k := testKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "enclave-key.pem")
	if err := WriteKeyPEM(path, k, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	k2, err := LoadSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(k2) {
		t.Fatal("written key differs")
	}
	before, _ := os.ReadFile(path)
	err = WriteKeyPEM(path, generatedKey(t), false)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second write without overwrite: %v", err)
	}
	if !errors.Is(fmt.Errorf("enclave keygen: %w", err), fs.ErrExist) {
		t.Fatalf("second write without overwrite: %v is not fs.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("refused write changed the file")
	}
	if err := WriteKeyPEM(path, generatedKey(t), true); err != nil {
		t.Fatal(err)
	}
	k3, err := LoadSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k3.Equal(generatedKey(t)) {
		t.Fatal("overwrite did not replace the key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries (temporary files left behind?)", len(entries))
	}
	if err := WriteKeyPEM(filepath.Join(dir, "no", "such", "dir.pem"), k, false); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	bad := *k
	bad.E = 65537
	if err := WriteKeyPEM(filepath.Join(dir, "bad.pem"), &bad, false); err == nil || !strings.Contains(err.Error(), "exponent") {
		t.Fatalf("writing an e=65537 key: %v", err)
	}
}

// TestMRSignerOpenSSL checks MRSigner against `openssl rsa -modulus` and a
// byte reversal and SHA-256 in Python, for the committed OpenSSL key (PKCS#8)
// and a key from GenerateSigningKey written by WriteKeyPEM (PKCS#1).
func TestMRSignerOpenSSL(t *testing.T) {
	needTools(t, "openssl", "/usr/bin/python3")
	gen := filepath.Join(t.TempDir(), "gen.pem")
	if err := WriteKeyPEM(gen, generatedKey(t), false); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{testKeyPath, gen} {
		key, err := LoadSigningKey(path)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "rsa", "-in", path, "-noout", "-modulus").Output()
		if err != nil {
			t.Fatalf("openssl rsa -modulus %s: %v", path, err)
		}
		py := exec.Command("/usr/bin/python3", "-c",
			"import sys, hashlib; h = sys.stdin.read().strip().split('=', 1)[1]; "+
				"n = bytes.fromhex(h.rjust(768, '0')); print(hashlib.sha256(n[::-1]).hexdigest())")
		py.Stdin = bytes.NewReader(out)
		want, err := py.Output()
		if err != nil {
			t.Fatalf("python3: %v", err)
		}
		got := MRSigner(&key.PublicKey)
		if hex.EncodeToString(got[:]) != strings.TrimSpace(string(want)) {
			t.Errorf("%s: MRSigner %x, openssl+python %s", path, got, want)
		}
	}
}

func TestCheckSigningKey(t *testing.T) {
	if err := CheckSigningKey(nil); err == nil {
		t.Fatal("nil key accepted")
	}
	k := testKey(t)
	if err := CheckSigningKey(&k.PublicKey); err != nil {
		t.Fatal(err)
	}
}
