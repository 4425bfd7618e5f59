package kms

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/kms/audit"
)

func FuzzParseWrapped(f *testing.F) {
	pk := bytes.Repeat([]byte{7}, 32)
	w, err := sealDataKey(pk, "model-key", 3, make([]byte, nonceSize), bytes.Repeat([]byte{1}, 32), []byte("ctx"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(w)
	f.Add([]byte("tkdk"))
	f.Add([]byte{})
	f.Add(append([]byte("tkdk\x01\x00"), make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseWrapped(b)
		if err != nil {
			if k != nil {
				t.Fatal("key returned with error")
			}
			return
		}
		if CheckKeyID(k.KeyID) != nil || k.Version == 0 {
			t.Fatalf("accepted %q version %d", k.KeyID, k.Version)
		}
		// Anything that parses must still fail authentication unless it is
		// the seed itself.
		if _, err := k.open(pk, []byte("ctx")); err == nil && !bytes.Equal(b, w) {
			t.Fatal("forged wrapped key authenticated")
		}
	})
}

func FuzzParseReleasePolicy(f *testing.F) {
	f.Add(releaseCol1())
	f.Add("members: [a]\nattestation: {sgx: [{mr_signer: " + strings.Repeat("ab", 32) + "}]}\n")
	f.Add("roles: [collaborator]\n")
	f.Add("")
	f.Add("members: &a [x]\nroles: *a\n")
	f.Fuzz(func(t *testing.T, src string) {
		rp, err := ParseReleasePolicy(src)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if len(rp.Members)+len(rp.Roles) == 0 || rp.Attestation == nil || len(rp.SHA256) != 64 {
			t.Fatalf("accepted an incomplete policy: %+v", rp)
		}
	})
}

func TestReleasePolicyErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"", "release policy: empty"},
		{"members: [col-1]\n", `missing key "attestation"`},
		{"attestation: {sgx: [{mr_signer: " + strings.Repeat("ab", 32) + "}]}\n", "none of members, roles and contracts given"},
		{"roles: [admin]\nattestation: {}\n", `unknown role "admin"`},
		{"members: [\"bad name\"]\nattestation: {}\n", "members"},
		{"members: [a]\nmembers: [b]\nattestation: {}\n", `duplicate key "members"`},
		{"members: [a]\nwho: [b]\nattestation: {}\n", `unknown key "who"`},
		{"members: [a]\nattestation: {sgx: [{mr_enclave: abcd}]}\n", "mr_enclave"},
		{"members: [a]\nattestation: {allow_everything: true}\n", "allow_everything"},
	} {
		_, err := ParseReleasePolicy(c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.src, err, c.want)
		}
	}
}

// FuzzReadAnchor: the audit anchor file is outside the store and so as
// untrusted as the store; whatever it holds, readAnchor never panics, and
// it accepts only heads authenticated under the MAC key.
func FuzzReadAnchor(f *testing.F) {
	key := bytes.Repeat([]byte{9}, 32)
	seeded := audit.Head{Seq: 42, Hash: bytes.Repeat([]byte{0xab}, audit.HashSize)}
	f.Add(encodeAnchor(key, seeded))
	f.Add(encodeAnchor(key, audit.Genesis()))
	f.Add([]byte(anchorMagic + " 1:00 00\n"))
	f.Add([]byte("hello\n"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "audit.anchor")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		h, ok, err := readAnchor(p, key)
		if err != nil {
			if ok || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ok with error, or a multi-line error: %q", err)
			}
			return
		}
		// Only the seeded heads carry a valid MAC; anything else accepted
		// would be a forgery.
		if !ok || !(h.String() == seeded.String() || h.String() == audit.Genesis().String()) {
			t.Fatalf("accepted %q as head %s", b, h)
		}
	})
}
