package enclave

import (
	"crypto/rsa"
	"os/exec"
	"sync"
	"testing"

	"github.com/teeml/teeml/internal/testenv"
)

// The committed test keys under testdata were made with OpenSSL 3
// (`openssl genrsa -3 3072` etc., PKCS#8). They are TEST keys: never sign a
// real enclave with them.
const (
	testKeyPath      = "testdata/TEST-ONLY-signing-key.pem"
	testKeyE65537    = "testdata/TEST-ONLY-e65537-key.pem"
	testKey2048      = "testdata/TEST-ONLY-2048-key.pem"
	testVectorPath   = "testdata/test-vector.sig"
	testVectorScript = "testdata/sigstruct_vector.py"
)

func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := LoadSigningKey(testKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	genKeyOnce sync.Once
	genKey     *rsa.PrivateKey
	genKeyErr  error
)

// generatedKey returns a key made by GenerateSigningKey, once per test binary
// (generation takes about a second).
func generatedKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	genKeyOnce.Do(func() { genKey, genKeyErr = GenerateSigningKey(nil) })
	if genKeyErr != nil {
		t.Fatal(genKeyErr)
	}
	return genKey
}

// needTools skips the test when a cross-check tool is missing, unless CI=true,
// where a missing tool fails the test.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.MustRun(t, "%s (needed for this cross-check) not available: %v", tool, err)
		}
	}
}
