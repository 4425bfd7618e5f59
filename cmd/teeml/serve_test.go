package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeQuickstart runs teeml serve quickstart (broker and server as
// their own processes) and then the CLI client commands against a server
// the test starts from the same workspace.
func TestServeQuickstart(t *testing.T) {
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "serve")
	out, errOut, code := run(t, bin, "serve", "quickstart", "--dir", dir, "--requests", "50", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("quickstart exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"SIMULATION", "sealed it under key \"models\"", "policy role serving accepted", "--pinnedpubkey 'sha256//",
		"refused before sending any input", "not in accepted list", "accuracy 0.9", "at concurrency 8: p50",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("quickstart output lacks %q", want)
		}
	}
	// The model is sealed on disk: no safetensors header in plaintext.
	b, err := os.ReadFile(filepath.Join(dir, "models", "digits.sealed"))
	if err != nil || strings.Contains(string(b), "teeml.kind") {
		t.Fatalf("sealed model: %v", err)
	}
	// verify-server refuses a stopped server with a one-line error.
	_, errOut, code = run(t, bin, "attest", "verify-server", "127.0.0.1:1", "--party", filepath.Join(dir, "party", "cli.yaml"),
		"--policy", filepath.Join(dir, "policies", "server.yaml"))
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") > 0 || !strings.Contains(errOut, "connect 127.0.0.1:1") {
		t.Fatalf("verify-server of nothing: exit %d %q", code, errOut)
	}
}
