package pemcerts

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func testCert(t testing.TB, cn string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Unix(1<<32, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func enc(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestDER(t *testing.T) {
	a, b := testCert(t, "a"), testCert(t, "b")
	pa, pb := enc("CERTIFICATE", a), enc("CERTIFICATE", b)
	ok := map[string]struct {
		in   string
		want [][]byte
	}{
		"plain":          {pa + pb, [][]byte{a, b}},
		"text around":    {"Subject: a\n" + pa + "\nissuer b, see https://example/\n" + pb + "end of bundle\n", [][]byte{a, b}},
		"CRLF":           {strings.ReplaceAll("note\n"+pa+pb, "\n", "\r\n"), [][]byte{a, b}},
		"no final EOL":   {"x\n" + strings.TrimSuffix(pa, "\n"), [][]byte{a}},
		"dashes in text": {"---- not a boundary ----\n" + pa, [][]byte{a}},
	}
	for name, tc := range ok {
		got, err := DER([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d certificates, want %d", name, len(got), len(tc.want))
			continue
		}
		for i := range got {
			if !bytes.Equal(got[i], tc.want[i]) {
				t.Errorf("%s: certificate %d differs", name, i)
			}
		}
	}

	broken := strings.Replace(pb, "\n", "\n*", 2) // a non-base64 byte inside block 2
	bad := map[string]struct{ in, want string }{
		"empty":             {"", "no PEM certificate found"},
		"only text":         {"Certificate:\n    Data:\n", "no PEM certificate found"},
		"malformed second":  {"intro\n" + pa + broken, "PEM block 2 (line 10): malformed: not valid PEM"},
		"no END line":       {pa + strings.SplitAfter(pb, "\n")[0] + "AAAA\n", "PEM block 2 (line 9): malformed: no END line"},
		"truncated then ok": {strings.Join(strings.SplitAfter(pa, "\n")[:3], "") + pb, "PEM block 1 (line 1): malformed: another BEGIN line"},
		"END outside block": {"text\n-----END CERTIFICATE-----\n" + pa, "line 2: PEM END boundary outside a block"},
		"private key":       {pa + enc("PRIVATE KEY", []byte{1, 2}), `PEM block 2 (line 9): type "PRIVATE KEY"`},
		"headers":           {"-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\n" + strings.SplitN(pa, "\n", 2)[1], "PEM block 1 (line 1): 1 PEM headers, want none"},
		"empty certificate": {"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "empty certificate"},
		"mismatched END":    {strings.Replace(pa, "END CERTIFICATE", "END X509 CRL", 1), "PEM block 1 (line 1): malformed"},
	}
	for name, tc := range bad {
		got, err := DER([]byte(tc.in))
		if err == nil {
			t.Errorf("%s: accepted %d certificates", name, len(got))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want one line with %q", name, err, tc.want)
		}
	}
	if _, err := DER(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("empty input: %v, want ErrNoCertificate", err)
	}
}

// FuzzDER checks that whatever DER accepts survives a round trip: the
// blocks it returns, re-encoded as a plain bundle, decode to the same bytes,
// and that it never accepts input without a CERTIFICATE block.
func FuzzDER(f *testing.F) {
	a, b := enc("CERTIFICATE", testCert(f, "a")), enc("CERTIFICATE", testCert(f, "b"))
	f.Add([]byte(a + b))
	f.Add([]byte("Certificate:\n    Data:\n" + a + "note\n" + b + "end\n"))
	f.Add([]byte(strings.ReplaceAll(a, "\n", "\r\n")))
	f.Add([]byte(strings.Replace(a, "\n", "\n*", 2)))
	f.Add([]byte("-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		ders, err := DER(in)
		if err != nil {
			return
		}
		if len(ders) == 0 || !bytes.Contains(in, []byte("-----BEGIN CERTIFICATE-----")) {
			t.Fatalf("accepted %d certificates from input without a CERTIFICATE block", len(ders))
		}
		var plain []byte
		for _, d := range ders {
			if len(d) == 0 {
				t.Fatal("empty certificate accepted")
			}
			plain = append(plain, enc("CERTIFICATE", d)...)
		}
		again, err := DER(plain)
		if err != nil {
			t.Fatalf("re-encoded bundle refused: %v", err)
		}
		if len(again) != len(ders) {
			t.Fatalf("round trip: %d certificates, want %d", len(again), len(ders))
		}
		for i := range ders {
			if !bytes.Equal(again[i], ders[i]) {
				t.Fatalf("round trip changes certificate %d", i)
			}
		}
	})
}
