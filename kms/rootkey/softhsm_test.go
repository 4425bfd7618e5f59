package rootkey

import (
	"fmt"
	"os"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/teeml/teeml/internal/testsvc"
)

const (
	testUserPIN = "1234-user"
	testSOPIN   = "5678-so"
	testPINEnv  = "TEEML_TEST_HSM_PIN"
)

// newSoftHSMToken makes a fresh SoftHSM2 token labelled "teeml" in a
// temporary token directory (never the system's) and returns a config for a
// key labelled "root" on it, with the user PIN in testPINEnv. The key itself
// is not created.
func newSoftHSMToken(t *testing.T) PKCS11Config {
	t.Helper()
	module := testsvc.SoftHSMModule(t)
	_, tokenDir := testsvc.SoftHSMConfig(t)
	t.Setenv(testPINEnv, testUserPIN)
	ctx, release, err := acquireModule(module)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	slots, err := ctx.GetSlotList(true)
	if err != nil || len(slots) == 0 {
		t.Fatalf("softhsm: no free slot: %v", err)
	}
	if err := ctx.InitToken(slots[0], testSOPIN, "teeml"); err != nil {
		t.Fatalf("softhsm: C_InitToken: %v", err)
	}
	// The token must live in this test's directory, proving SoftHSM read
	// this test's SOFTHSM2_CONF and not the system's or an earlier test's.
	if ents, err := os.ReadDir(tokenDir); err != nil || len(ents) != 1 {
		t.Fatalf("softhsm: %d entries in test token dir %s (%v), want 1", len(ents), tokenDir, err)
	}
	// SoftHSM renumbers the slot once its token is initialised.
	slot, _, err := findSlot(ctx, "teeml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.CloseSession(s)
	if err := ctx.Login(s, pkcs11.CKU_SO, testSOPIN); err != nil {
		t.Fatalf("softhsm: SO login: %v", err)
	}
	if err := ctx.InitPIN(s, testUserPIN); err != nil {
		t.Fatalf("softhsm: C_InitPIN: %v", err)
	}
	if err := ctx.Logout(s); err != nil {
		t.Fatal(err)
	}
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
