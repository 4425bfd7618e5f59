package rootkey

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

func TestPKCS11RoundTrip(t *testing.T) {
	w, _ := newPKCS11Wrapper(t)
	if w.Simulated() {
		t.Error("pkcs11 holder says Simulated")
	}
	t.Log(w.Describe())
	for _, pt := range [][]byte{{}, []byte("k"), bytes.Repeat([]byte{0xa5}, 32), bytes.Repeat([]byte("x"), 4096)} {
		b, err := w.Wrap(pt, []byte("key/7"))
		if err != nil {
			t.Fatalf("wrap %d bytes: %v", len(pt), err)
		}
		if len(b) != len(pt)+Overhead {
			t.Fatalf("wrapped %d bytes into %d, want %d", len(pt), len(b), len(pt)+Overhead)
		}
		got, err := w.Unwrap(b, []byte("key/7"))
		if err != nil {
			t.Fatalf("unwrap %d bytes: %v", len(pt), err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip changed %d-byte plaintext", len(pt))
		}
	}
}

func TestPKCS11GCMInteroperatesWithGoGCM(t *testing.T) {
	// With an exportable test key (never accepted by Open) read the key
	// value back and check that the token computed standard AES-256-GCM
	// with our nonce and header||aad as additional data, in both directions.
	cfg := newSoftHSMToken(t)
	ctx, release, err := acquireModule(cfg.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	slot, _, err := findSlot(ctx, cfg.Token)
	if err != nil {
		t.Fatal(err)
	}
	s, err := login(ctx, slot, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.CloseSession(s)
	obj, err := generateTestKey(ctx, s, cfg.Label, false, true)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := ctx.GetAttributeValue(s, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		t.Fatal(err)
	}
	hw, err := openPKCS11Key(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close()
	sw, err := newSoftKey(KindPKCS11, attrs[0].Value, "software copy", true)
	if err != nil {
		t.Fatal(err)
	}
	sw.id = hw.id // same key, so the same header
	aad := []byte("row 42")
	b, err := hw.Wrap([]byte("dek from the token"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sw.Unwrap(b, aad); err != nil || string(got) != "dek from the token" {
		t.Fatalf("Go GCM on a token blob: %q %v", got, err)
	}
	// And by hand, from the documented layout: nonce at 10..22, GCM
	// additional data = 22-byte header || aad.
	block, _ := aes.NewCipher(attrs[0].Value)
	gcm, _ := cipher.NewGCM(block)
	if got, err := gcm.Open(nil, b[10:22], b[22:], append(bytes.Clone(b[:22]), aad...)); err != nil || string(got) != "dek from the token" {
		t.Fatalf("raw AES-GCM on a token blob: %q %v", got, err)
	}
	b, _ = sw.Wrap([]byte("dek from Go"), aad)
	if got, err := hw.Unwrap(b, aad); err != nil || string(got) != "dek from Go" {
		t.Fatalf("token GCM on a Go blob: %q %v", got, err)
	}
	a1, _ := hw.Wrap([]byte("same"), nil)
	a2, _ := hw.Wrap([]byte("same"), nil)
	if bytes.Equal(a1, a2) {
		t.Fatal("two wraps of the same plaintext are identical: nonce not fresh")
	}
}

func TestPKCS11Tamper(t *testing.T) {
	w, _ := newPKCS11Wrapper(t)
	checkTamper(t, w)
}

func TestPKCS11KeyNotExtractable(t *testing.T) {
	w, _ := newPKCS11Wrapper(t)
	k := w.(*pkcs11Key)
	err := k.withSession(func(s pkcs11.SessionHandle) error {
		_, err := k.ctx.GetAttributeValue(s, k.key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		return err
	})
	if err == nil {
		t.Fatal("C_GetAttributeValue(CKA_VALUE) on the root key succeeded; the key is readable")
	}
	if !isRV(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
		t.Fatalf("C_GetAttributeValue(CKA_VALUE): %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
}

func TestPKCS11WrongKey(t *testing.T) {
	w1, cfg := newPKCS11Wrapper(t)
	// A second key on the same token, with another label.
	cfg2 := cfg
	cfg2.Label = "other"
	if err := InitPKCS11(cfg2); err != nil {
		t.Fatal(err)
	}
	w2, err := Open(cfg2.uri())
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	b, err := w1.Wrap([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Unwrap(b, nil); err == nil || !strings.Contains(err.Error(), "wrong root key") || !errors.Is(fmt.Errorf("kms: %w", err), ErrWrongKey) {
		t.Fatalf("unwrap under another key: %v, want wrong root key", err)
	}
	// Even with w2's key ID forged into the header, GCM refuses it.
	forged := bytes.Clone(b)
	id := w2.(*pkcs11Key).id
	copy(forged[2:2+keyIDSize], id[:])
	if _, err := w2.Unwrap(forged, nil); err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("forged key id: %v, want authentication failure", err)
	}
}

func TestPKCS11InitRefusesExistingKey(t *testing.T) {
	_, cfg := newPKCS11Wrapper(t)
	if err := InitPKCS11(cfg); err == nil || !strings.Contains(err.Error(), "already has a key") || !errors.Is(fmt.Errorf("kms setup: %w", err), ErrKeyExists) {
		t.Fatalf("second init: %v", err)
	}
}

func TestPKCS11OpenErrors(t *testing.T) {
	cfg := newSoftHSMToken(t)
	// No key yet.
	if _, err := Open(cfg.uri()); err == nil || !strings.Contains(err.Error(), "no AES key labelled") {
		t.Fatalf("open without key: %v", err)
	}
	if err := InitPKCS11(cfg); err != nil {
		t.Fatal(err)
	}
	pin := os.Getenv(testPINEnv)
	t.Setenv(testPINEnv, "wrong")
	if _, err := Open(cfg.uri()); err == nil || !strings.Contains(err.Error(), "wrong PIN") || !errors.Is(fmt.Errorf("kms: %w", err), ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
	t.Setenv(testPINEnv, "")
	if _, err := Open(cfg.uri()); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("unset PIN: %v", err)
	}
	t.Setenv(testPINEnv, pin)
	bad := cfg
	bad.Token = "nosuch"
	if _, err := Open(bad.uri()); err == nil || !strings.Contains(err.Error(), `no token labelled "nosuch"`) {
		t.Fatalf("missing token: %v", err)
	}
	bad = cfg
	bad.Module = t.TempDir() + "/nosuch.so"
	if _, err := Open(bad.uri()); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing module: %v", err)
	}
}

func TestPKCS11RefusesExportableKeys(t *testing.T) {
	cfg := newSoftHSMToken(t)
	// An AES key that could be exported must not serve as a root key.
	ctx, release, err := acquireModule(cfg.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	slot, _, err := findSlot(ctx, cfg.Token)
	if err != nil {
		t.Fatal(err)
	}
	s, err := login(ctx, slot, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.CloseSession(s)
	if _, err := generateTestKey(ctx, s, cfg.Label, true, true); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg.uri()); err == nil || !strings.Contains(err.Error(), "is CKA_EXTRACTABLE") {
		t.Fatalf("open of extractable key: %v", err)
	}
	if _, err := generateTestKey(ctx, s, "plain", false, false); err != nil {
		t.Fatal(err)
	}
	plain := cfg
	plain.Label = "plain"
	if _, err := Open(plain.uri()); err == nil || !strings.Contains(err.Error(), "not CKA_SENSITIVE") {
		t.Fatalf("open of non-sensitive key: %v", err)
	}
}

func TestPKCS11PINFile(t *testing.T) {
	_, cfg := newPKCS11Wrapper(t)
	pinFile := t.TempDir() + "/pin"
	writeFile(t, pinFile, []byte(os.Getenv(testPINEnv)+"\n"), 0o600)
	uri := "pkcs11:token=teeml;object=root;type=secret-key?module-path=" + cfg.Module + "&pin-source=file:" + pinFile
	w, err := Open(uri)
	if err != nil {
		t.Fatalf("RFC 7512 URI with pin-source: %v", err)
	}
	w.Close()
	chmod(t, pinFile, 0o644)
	if _, err := Open(uri); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("world-readable PIN file: %v", err)
	}
}

func TestPKCS11ClosedAndDoubleClose(t *testing.T) {
	cfg := newSoftHSMToken(t)
	if err := InitPKCS11(cfg); err != nil {
		t.Fatal(err)
	}
	w, err := Open(cfg.uri())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := w.Wrap([]byte("x"), nil); err == nil {
		t.Fatal("wrap after close succeeded")
	}
	// The module was finalised; a new holder initialises it again.
	w2, err := Open(cfg.uri())
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	w2.Close()
}

func TestPKCS11Concurrent(t *testing.T) {
	w, _ := newPKCS11Wrapper(t)
	checkConcurrent(t, w)
}

// generateTestKey makes an AES-256 key labelled label on the token, with
// CKA_SENSITIVE and CKA_EXTRACTABLE as given.
func generateTestKey(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, label string, sensitive, extractable bool) (pkcs11.ObjectHandle, error) {
	return ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, sensitive),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, extractable),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	})
}

func TestPKCS11ReplacesBrokenSession(t *testing.T) {
	cfg := newSoftHSMToken(t)
	if err := InitPKCS11(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Sessions = 2
	k, err := openPKCS11(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	// Close one pooled session behind the holder's back, as a token reset
	// would; the login survives in the other session.
	if err := k.ctx.CloseSession(k.all[1]); err != nil {
		t.Fatal(err)
	}
	failures := 0
	for i := 0; i < 6; i++ {
		b, err := k.Wrap([]byte("x"), nil)
		if err != nil {
			failures++
			continue
		}
		if _, err := k.Unwrap(b, nil); err != nil {
			failures++
		}
	}
	// The broken session fails exactly one operation, then is replaced.
	if failures != 1 {
		t.Fatalf("%d of 12 operations failed, want exactly 1 (the broken session's first use)", failures)
	}
	// Every session in the pool works now.
	for i := 0; i < 4; i++ {
		if _, err := k.Wrap([]byte("y"), nil); err != nil {
			t.Fatalf("after replacement, wrap %d: %v", i, err)
		}
	}
}
