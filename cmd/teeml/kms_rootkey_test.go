package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/internal/testsvc"
)

// execRootKey runs the rootkey command tree in-process (the lead attaches
// it under "teeml kms"; until then it is not reachable from the binary).
func execRootKey(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newKMSRootKeyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestKMSRootKeyInitAndCheckFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	out, err := execRootKey(t, "init", "--root-key", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SIMULATION") {
		t.Errorf("init output does not announce simulation: %q", out)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file: %v %v", st, err)
	}
	key, _ := os.ReadFile(path)
	if _, err := execRootKey(t, "init", "--root-key", "file:"+path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second init: %v", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, key) {
		t.Fatal("second init changed the key")
	}
	out, err = execRootKey(t, "check", "--root-key", "file:"+path)
	if err != nil || !strings.Contains(out, "root key OK") {
		t.Fatalf("check: %q %v", out, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := execRootKey(t, "check", "--root-key", "file:"+path); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("check of world-readable key: %v", err)
	}
}

func TestKMSRootKeyErrors(t *testing.T) {
	if _, err := execRootKey(t, "init", "--root-key", "gramine:"); err == nil || !strings.Contains(err.Error(), "nothing to initialise") {
		t.Errorf("init gramine: %v", err)
	}
	if _, err := execRootKey(t, "check", "--root-key", "file:"+filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("check missing file: %v", err)
	}
	if _, err := execRootKey(t, "init"); err == nil || !strings.Contains(err.Error(), "root-key") {
		t.Errorf("init without --root-key: %v", err)
	}
	if _, err := execRootKey(t, "check", "--root-key", "pkcs11:module=/x;token=t;label=l;pin-value=1"); err == nil || !strings.Contains(err.Error(), "pin-value is refused") {
		t.Errorf("pin on command line: %v", err)
	}
}

func TestKMSRootKeyInitAndCheckPKCS11(t *testing.T) {
	module, pin := testsvc.SoftHSMToken(t, "teeml")
	t.Setenv("TEEML_TEST_HSM_PIN", pin)
	spec := "pkcs11:module=" + module + ";token=teeml;label=root;pin-env=TEEML_TEST_HSM_PIN"
	out, err := execRootKey(t, "init", "--root-key", spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `pkcs11 token "teeml"`) || strings.Contains(out, "SIMULATION") {
		t.Errorf("init output: %q", out)
	}
	if _, err := execRootKey(t, "init", "--root-key", spec); err == nil || !strings.Contains(err.Error(), "already has a key") {
		t.Fatalf("second init: %v", err)
	}
	if out, err := execRootKey(t, "check", "--root-key", spec); err != nil || !strings.Contains(out, "root key OK") {
		t.Fatalf("check: %q %v", out, err)
	}
	t.Setenv("TEEML_TEST_HSM_PIN", "not-the-pin")
	if _, err := execRootKey(t, "check", "--root-key", spec); err == nil || !strings.Contains(err.Error(), "wrong PIN") {
		t.Fatalf("check with a wrong PIN: %v", err)
	}
}
