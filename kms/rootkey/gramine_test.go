package rootkey

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newGramineWrapper fakes /dev/attestation/keys in a temporary directory
// with fixed sealing keys, as Gramine would expose them inside SGX.
func newGramineWrapper(t *testing.T, policy string) Wrapper {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "_sgx_mrenclave"), bytes.Repeat([]byte{0xe1}, 16), 0o600)
	writeFile(t, filepath.Join(dir, "_sgx_mrsigner"), bytes.Repeat([]byte{0x51}, 16), 0o600)
	w, err := OpenConfig(Config{Spec: "gramine:" + policy, GramineKeysDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func TestGramineRoundTripAndPolicy(t *testing.T) {
	enc := newGramineWrapper(t, "")
	sig := newGramineWrapper(t, "mrsigner")
	if enc.Simulated() {
		t.Error("gramine holder says Simulated")
	}
	if !strings.Contains(enc.Describe(), "_sgx_mrenclave") || !strings.Contains(sig.Describe(), "_sgx_mrsigner") {
		t.Errorf("describe: %q / %q", enc.Describe(), sig.Describe())
	}
	if !strings.Contains(enc.Describe(), "non-default keys directory") {
		t.Errorf("test override not announced: %q", enc.Describe())
	}
	b, err := enc.Wrap([]byte("dek"), []byte("row"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := enc.Unwrap(b, []byte("row")); err != nil || string(got) != "dek" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	// The two sealing policies give different keys.
	if _, err := sig.Unwrap(b, []byte("row")); err == nil {
		t.Fatal("mrsigner holder unwrapped an mrenclave blob")
	}
	checkTamper(t, enc)
}

func TestGramineKeyIsDerivedNotRaw(t *testing.T) {
	// The wrapping key is HKDF(seal key, teeml label), not the sealing key
	// zero-padded or repeated: a holder built directly from those refuses.
	g := newGramineWrapper(t, "mrenclave")
	raw := bytes.Repeat([]byte{0xe1}, 32)
	direct, err := newSoftKey(KindGramine, raw, "raw", false)
	if err != nil {
		t.Fatal(err)
	}
	if g.(*softKey).id == direct.id {
		t.Fatal("gramine wrapping key equals the raw sealing key repeated")
	}
	want, err := deriveKey(bytes.Repeat([]byte{0xe1}, 16), "_sgx_mrenclave")
	if err != nil {
		t.Fatal(err)
	}
	derived, _ := newSoftKey(KindGramine, want, "derived", false)
	b, _ := g.Wrap([]byte("x"), nil)
	if got, err := derived.Unwrap(b, nil); err != nil || string(got) != "x" {
		t.Fatalf("HKDF-derived key does not unwrap: %v", err)
	}
}

func TestGramineMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenConfig(Config{Spec: "gramine:", GramineKeysDir: dir})
	if err == nil || !strings.Contains(err.Error(), "not present (not running inside a Gramine SGX enclave)") || strings.Contains(err.Error(), "\n") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key: %v", err)
	}
	writeFile(t, filepath.Join(dir, "_sgx_mrenclave"), make([]byte, 32), 0o600)
	if _, err := OpenConfig(Config{Spec: "gramine:", GramineKeysDir: dir}); err == nil || !strings.Contains(err.Error(), "32 bytes, want a 16-byte") {
		t.Fatalf("wrong size: %v", err)
	}
	// On this (non-enclave) machine the default path is absent too.
	if _, err := os.Stat(DefaultGramineKeysDir); err == nil {
		t.Skip("running inside Gramine; default-path check not applicable")
	}
	if _, err := Open("gramine:"); err == nil || !strings.Contains(err.Error(), DefaultGramineKeysDir) {
		t.Fatalf("default path: %v", err)
	}
}
