package rootkey

import (
	"fmt"
	"testing"

	"github.com/teeml/teeml/internal/testsvc"
)

const testPINEnv = "TEEML_TEST_HSM_PIN"

// newSoftHSMToken makes a fresh SoftHSM2 token labelled "teeml" in a
// temporary token directory (never the system's) and returns a config for a
// key labelled "root" on it, with the user PIN in testPINEnv. The key itself
// is not created.
func newSoftHSMToken(t testing.TB) PKCS11Config {
	t.Helper()
	module, pin := testsvc.SoftHSMToken(t, "teeml")
	t.Setenv(testPINEnv, pin)
	return PKCS11Config{Module: module, Token: "teeml", Label: "root", PINEnv: testPINEnv}
}

func (c PKCS11Config) uri() string {
	return fmt.Sprintf("pkcs11:module=%s;token=%s;label=%s;pin-env=%s", c.Module, c.Token, c.Label, c.PINEnv)
}

// newPKCS11Wrapper makes a token with an initialised root key and opens it.
func newPKCS11Wrapper(t *testing.T) (Wrapper, PKCS11Config) {
	t.Helper()
	cfg := newSoftHSMToken(t)
	if err := InitPKCS11(cfg); err != nil {
		t.Fatal(err)
	}
	w, err := Open(cfg.uri())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w, cfg
}
