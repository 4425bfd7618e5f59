package enclave

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSignWithGramineNotFound(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := SignWithGramine(context.Background(), "x.manifest", testKeyPath, "x.manifest.sgx")
	want := "enclave sign: gramine-sgx-sign not found in PATH: install Gramine (https://gramine.readthedocs.io) to sign enclaves"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if err != ErrGramineNotFound {
		t.Fatal("not ErrGramineNotFound")
	}
}

// fakeGramine installs a gramine-sgx-sign shell script in PATH that records
// its arguments, copies the manifest to --output, and copies $FAKE_SIG to
// --sigfile.
func fakeGramine(t *testing.T, body string) (argsFile string) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	bin := t.TempDir()
	argsFile = filepath.Join(bin, "args")
	script := `#!/bin/sh
printf '%s\n' "$@" > "` + argsFile + `"
` + body
	if err := os.WriteFile(filepath.Join(bin, "gramine-sgx-sign"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return argsFile
}

const fakeSignBody = `
while [ $# -gt 0 ]; do
	case "$1" in
	--manifest) m="$2"; shift 2;;
	--output) o="$2"; shift 2;;
	--sigfile) s="$2"; shift 2;;
	--key) k="$2"; shift 2;;
	*) echo "unknown argument $1" >&2; exit 2;;
	esac
done
echo "Measurement: ..."
cp "$m" "$o" && cp "$FAKE_SIG" "$s"
`

func TestSignWithGramineFake(t *testing.T) {
	argsFile := fakeGramine(t, fakeSignBody)
	dir := t.TempDir()
	manifest := writeFile(t, filepath.Join(dir, "app.manifest"), "libos.entrypoint = \"/app\"\n")
	output := filepath.Join(dir, "app.manifest.sgx")
	t.Setenv("FAKE_SIG", testVectorPath)

	sig, err := SignWithGramine(context.Background(), manifest, testKeyPath, output)
	if err != nil {
		t.Fatal(err)
	}
	if sig.ISVProdID != 0x1234 {
		t.Errorf("returned SIGSTRUCT has ISVPRODID %#x", sig.ISVProdID)
	}
	if _, err := os.Stat(filepath.Join(dir, "app.sig")); err != nil {
		t.Errorf("sig file: %v", err)
	}
	if _, err := os.Stat(output); err != nil {
		t.Errorf("output manifest: %v", err)
	}
	args, _ := os.ReadFile(argsFile)
	want := strings.Join([]string{"--manifest", manifest, "--output", output, "--sigfile", filepath.Join(dir, "app.sig"), "--key", testKeyPath}, "\n") + "\n"
	if string(args) != want {
		t.Errorf("arguments:\n%s\nwant\n%s", args, want)
	}
	if strings.Contains(string(args), "insecure") {
		t.Error("insecure option passed")
	}

	// A .sig that is not signed by the given key is refused.
	other := filepath.Join(t.TempDir(), "other.sig")
	s := NewSigstruct(SigstructParams{})
	if err := s.Sign(generatedKey(t)); err != nil {
		t.Fatal(err)
	}
	b, _ := s.Marshal()
	os.WriteFile(other, b, 0o644)
	t.Setenv("FAKE_SIG", other)
	if _, err := SignWithGramine(context.Background(), manifest, testKeyPath, output); err == nil || !strings.Contains(err.Error(), "not signed by the key in "+testKeyPath) {
		t.Fatalf("foreign signature: %v", err)
	}

	// A corrupt .sig is refused.
	b[1807] ^= 1
	os.WriteFile(other, b, 0o644)
	if _, err := SignWithGramine(context.Background(), manifest, testKeyPath, output); err == nil || !strings.Contains(err.Error(), "q2") {
		t.Fatalf("corrupt signature: %v", err)
	}
}

func TestSignWithGramineFailures(t *testing.T) {
	dir := t.TempDir()
	manifest := writeFile(t, filepath.Join(dir, "app.manifest"), "x")
	output := filepath.Join(dir, "app.manifest.sgx")

	fakeGramine(t, "echo 'Traceback (most recent call last):' >&2\necho 'ManifestError: Missing trusted file: /x' >&2\nexit 1\n")
	_, err := SignWithGramine(context.Background(), manifest, testKeyPath, output)
	if err == nil || !strings.HasSuffix(err.Error(), "failed (exit status 1): ManifestError: Missing trusted file: /x") {
		t.Fatalf("failing signer: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("multi-line error %q", err)
	}

	// Bad key: refused before gramine-sgx-sign runs.
	if _, err := SignWithGramine(context.Background(), manifest, testKeyE65537, output); err == nil || !strings.Contains(err.Error(), "public exponent is 65537") {
		t.Fatalf("e=65537 key: %v", err)
	}
	// Output over the input.
	if _, err := SignWithGramine(context.Background(), manifest, testKeyPath, manifest); err == nil || !strings.Contains(err.Error(), "would overwrite the input manifest") {
		t.Fatalf("output = manifest: %v", err)
	}
	// Missing manifest.
	if _, err := SignWithGramine(context.Background(), filepath.Join(dir, "nope.manifest"), testKeyPath, output); err == nil || !strings.Contains(err.Error(), "no such file") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing manifest: %v", err)
	}

	// Context deadline: the signer is killed.
	fakeGramine(t, "exec sleep 30\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = SignWithGramine(ctx, manifest, testKeyPath, output)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("signer was not killed")
	}

	// Exits 0 without writing the .sig.
	fakeGramine(t, "exit 0\n")
	if _, err := SignWithGramine(context.Background(), manifest, testKeyPath, output); err == nil || !strings.Contains(err.Error(), "app.sig written by gramine-sgx-sign: no such file") {
		t.Fatalf("missing .sig: %v", err)
	}
}

func TestSigPath(t *testing.T) {
	for in, want := range map[string]string{
		"app.manifest":     "app.sig",
		"dir/x.manifest":   "dir/x.sig",
		"app.toml":         "app.toml.sig",
		"a.manifest.extra": "a.manifest.extra.sig",
	} {
		if got := SigPath(in); got != want {
			t.Errorf("SigPath(%q) = %q, want %q", in, got, want)
		}
	}
}
