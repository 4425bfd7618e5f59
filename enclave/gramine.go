package enclave

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// GramineSignCommand is the Gramine signer SignWithGramine runs.
const GramineSignCommand = "gramine-sgx-sign"

// ErrGramineNotFound is returned by SignWithGramine when gramine-sgx-sign is
// not in PATH.
var ErrGramineNotFound = errors.New("enclave sign: gramine-sgx-sign not found in PATH: install Gramine (https://gramine.readthedocs.io) to sign enclaves")

// SigPath returns the .sig path gramine-sgx-sign uses by default for a
// manifest: the manifest path without a ".manifest" suffix, plus ".sig".
func SigPath(manifestPath string) string {
	return strings.TrimSuffix(manifestPath, ".manifest") + ".sig"
}

// SignWithGramine runs gramine-sgx-sign (found in PATH, killed when ctx is
// done) to expand and measure the manifest at manifestPath, write the
// SGX manifest to outputPath (conventionally NAME.manifest.sgx) and sign the
// enclave with the key at keyPath. The SIGSTRUCT goes to
// SigPath(manifestPath); SignWithGramine reads it back, checks it with
// Verify and that it was signed by keyPath, and returns it.
//
// The key is checked with LoadSigningKey first, so a wrong key is reported
// here rather than as a Python traceback. When gramine-sgx-sign fails, the
// error carries the last line it printed.
func SignWithGramine(ctx context.Context, manifestPath, keyPath, outputPath string) (*Sigstruct, error) {
	bin, err := exec.LookPath(GramineSignCommand)
	if err != nil {
		return nil, ErrGramineNotFound
	}
	if filepath.Clean(outputPath) == filepath.Clean(manifestPath) {
		return nil, fmt.Errorf("enclave sign: output %s would overwrite the input manifest", outputPath)
	}
	key, err := LoadSigningKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("enclave sign: %w", err)
	}
	if _, err := os.Stat(manifestPath); err != nil {
		return nil, fmt.Errorf("enclave sign: manifest %s: %w", manifestPath, unwrapPath(err))
	}
	sigPath := SigPath(manifestPath)
	cmd := exec.CommandContext(ctx, bin,
		"--manifest", manifestPath,
		"--output", outputPath,
		"--sigfile", sigPath,
		"--key", keyPath)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// If gramine-sgx-sign leaves children holding the output pipe after
	// being killed, stop waiting for them after a while.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("enclave sign: %s %s: %w", GramineSignCommand, manifestPath, ctxErr)
		}
		return nil, fmt.Errorf("enclave sign: %s %s failed (%w): %s", GramineSignCommand, manifestPath, err, lastLine(out.String()))
	}
	data, err := os.ReadFile(sigPath)
	if err != nil {
		return nil, fmt.Errorf("enclave sign: reading %s written by %s: %w", sigPath, GramineSignCommand, unwrapPath(err))
	}
	sig, err := ParseSigstruct(data)
	if err != nil {
		return nil, fmt.Errorf("enclave sign: %s: %w", sigPath, err)
	}
	if err := sig.Verify(); err != nil {
		return nil, fmt.Errorf("enclave sign: %s: %w", sigPath, err)
	}
	if sig.MRSigner() != MRSigner(&key.PublicKey) {
		return nil, fmt.Errorf("enclave sign: %s: not signed by the key in %s", sigPath, keyPath)
	}
	return sig, nil
}

// lastLine returns the last non-empty line of s, or "no output".
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return "no output"
}
