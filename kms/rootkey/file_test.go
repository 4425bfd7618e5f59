package rootkey

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newFileWrapper(t *testing.T) (Wrapper, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "root.key")
	if err := Init("file:" + path); err != nil {
		t.Fatal(err)
	}
	w, err := Open("file:" + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

func TestFileCreateAndRoundTrip(t *testing.T) {
	w, path := newFileWrapper(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file mode %v size %d, want 0600 and 32", st.Mode().Perm(), st.Size())
	}
	if !w.Simulated() || !strings.Contains(w.Describe(), "SIMULATION") {
		t.Fatalf("file holder must announce simulation: Simulated=%v Describe=%q", w.Simulated(), w.Describe())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after create, want only the key (temporary file left?)", len(entries))
	}
	for _, pt := range [][]byte{{}, []byte("k"), bytes.Repeat([]byte{7}, 1<<16)} {
		b, err := w.Wrap(pt, []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != FormatV1 || Kind(b[1]) != KindFile || len(b) != len(pt)+Overhead {
			t.Fatalf("blob header %x len %d", b[:2], len(b))
		}
		got, err := w.Unwrap(b, []byte("aad"))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip of %d bytes: %v", len(pt), err)
		}
	}
	// A reopened holder on the same file reads old blobs.
	b, _ := w.Wrap([]byte("persist"), nil)
	w2, err := Open("file:" + path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w2.Unwrap(b, nil); err != nil || string(got) != "persist" {
		t.Fatalf("reopened: %q %v", got, err)
	}
}

func TestFileCreateNeverReplaces(t *testing.T) {
	_, path := newFileWrapper(t)
	before, _ := os.ReadFile(path)
	err := CreateFile(path)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create: %v", err)
	}
	if wrapped := fmt.Errorf("kms setup: %w", err); !errors.Is(wrapped, ErrKeyExists) {
		t.Fatalf("second create: %v is not ErrKeyExists", wrapped)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("second create changed the key")
	}
}

func TestFileOpenNeverCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.key")
	if _, err := Open("file:" + path); err == nil || !strings.Contains(err.Error(), "does not exist") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open of missing file: %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("Open created the key file")
	}
}

func TestFileRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{1}, 32)
	cases := []struct {
		name string
		data []byte
		perm os.FileMode
		want string
	}{
		{"group-readable", key, 0o640, "mode 0640"},
		{"world-readable", key, 0o604, "mode 0604"},
		{"short", key[:31], 0o600, "31 bytes, want exactly 32"},
		{"long", append(bytes.Clone(key), 0), 0o600, "33 bytes, want exactly 32"},
		{"empty", nil, 0o600, "0 bytes"},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		writeFile(t, p, c.data, c.perm)
		if _, err := Open("file:" + p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	good := filepath.Join(dir, "good")
	writeFile(t, good, key, 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("file:" + link); err == nil {
		t.Error("symbolic link accepted as key file")
	}
	if _, err := Open("file:" + dir); err == nil {
		t.Error("directory accepted as key file")
	}
	if _, err := Open("file:" + good); err != nil {
		t.Errorf("good file refused: %v", err)
	}
}

func TestFileTamper(t *testing.T) {
	w, _ := newFileWrapper(t)
	checkTamper(t, w)
}

func TestFileWrongKey(t *testing.T) {
	w1, _ := newFileWrapper(t)
	w2, _ := newFileWrapper(t)
	b, _ := w1.Wrap([]byte("secret"), nil)
	_, err := w2.Unwrap(b, nil)
	if err == nil || !strings.Contains(err.Error(), "wrong root key") {
		t.Fatalf("other key: %v", err)
	}
	if wrapped := fmt.Errorf("kms: %w", err); !errors.Is(wrapped, ErrWrongKey) || errors.Is(wrapped, ErrAuthentication) {
		t.Fatalf("other key: errors.Is(%v): want ErrWrongKey and not ErrAuthentication", wrapped)
	}
	forged := bytes.Clone(b)
	id := w2.(*softKey).id
	copy(forged[2:2+keyIDSize], id[:])
	if _, err := w2.Unwrap(forged, nil); err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("forged key id: %v", err)
	}
}

func TestFileConcurrent(t *testing.T) {
	w, _ := newFileWrapper(t)
	checkConcurrent(t, w)
}

func TestKindMismatch(t *testing.T) {
	w, _ := newFileWrapper(t)
	g := newGramineWrapper(t, "mrenclave")
	b, _ := g.Wrap([]byte("x"), nil)
	_, err := w.Unwrap(b, nil)
	if err == nil || !strings.Contains(err.Error(), "wrapped by a gramine root key") {
		t.Fatalf("gramine blob under file key: %v", err)
	}
	if wrapped := fmt.Errorf("kms: %w", err); !errors.Is(wrapped, ErrWrongKey) {
		t.Fatalf("gramine blob under file key: %v is not ErrWrongKey", wrapped)
	}
}

func TestSpecErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                 "has no kind",
		"/etc/key":                         "has no kind",
		"vault:x":                          `unknown root key kind "vault"`,
		"file:":                            "empty path",
		"gramine:mrfoo":                    "unknown sealing policy",
		"pkcs11:token=t":                   "no module",
		"pkcs11:module=/m;token=t;label=l": "no PIN source",
		"pkcs11:module=/m;token=t;label=l;pin-value=1234":             "pin-value is refused",
		"pkcs11:module=/m;token=t;label=l;pin-env=P;pin-file=/f":      "both pin-env and pin-file",
		"pkcs11:module=/m;token=t;label=l;pin-env=P;colour=red":       `unknown attribute "colour"`,
		"pkcs11:module=/m;token=t;token=u;label=l;pin-env=P":          "given twice",
		"pkcs11:module=/m;token=t;label=l;pin-env=P;sessions=0":       "sessions=0",
		"pkcs11:module=/m;token=t;label=l;pin-env=P;type=private-key": "secret-key",
	} {
		if _, err := Open(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): %v, want %q", spec, err, want)
		}
	}
	if err := Init("gramine:"); err == nil || !strings.Contains(err.Error(), "nothing to initialise") {
		t.Errorf("Init(gramine:): %v", err)
	}
}

func TestParsePKCS11URIForms(t *testing.T) {
	want := PKCS11Config{Module: "/usr/lib/softhsm/libsofthsm2.so", Token: "teeml kms", Label: "root", PINEnv: "PIN"}
	for _, uri := range []string{
		"pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=teeml%20kms;label=root;pin-env=PIN",
		"pkcs11:token=teeml%20kms;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-env=PIN",
	} {
		got, err := ParsePKCS11URI(uri)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", uri, got, err, want)
		}
	}
	got, err := ParsePKCS11URI("pkcs11:token=t;object=o?module-path=/m&pin-source=file:/etc/pin")
	if err != nil || got.PINFile != "/etc/pin" {
		t.Errorf("pin-source: %+v %v", got, err)
	}
}

func TestRewrapMovesBlobToAnotherHolder(t *testing.T) {
	from, _ := newFileWrapper(t)
	to := newGramineWrapper(t, "mrsigner")
	b, _ := from.Wrap([]byte("dek"), []byte("row 1"))
	nb, err := Rewrap(from, to, b, []byte("row 1"))
	if err != nil {
		t.Fatal(err)
	}
	if Kind(nb[1]) != KindGramine {
		t.Fatalf("rewrapped blob kind %d", nb[1])
	}
	if got, err := to.Unwrap(nb, []byte("row 1")); err != nil || string(got) != "dek" {
		t.Fatalf("unwrap after rewrap: %q %v", got, err)
	}
	if _, err := Rewrap(from, to, b, []byte("row 2")); err == nil {
		t.Fatal("rewrap with a wrong aad succeeded")
	}
}
