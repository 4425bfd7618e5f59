package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest"
)

func TestNewCSRWrapsEvidenceInTCGCMW(t *testing.T) {
	csr, err := seedCSR()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csr)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var found int
	for _, e := range req.Extensions {
		if e.Id.Equal(OIDEvidenceV1) {
			t.Fatal("a new CSR still uses the provisional arc")
		}
		if e.Id.Equal(OIDEvidence) {
			found++
			typ, der, err := parseCMW(e.Value)
			if err != nil || typ != CMWType {
				t.Fatalf("CMW: %q %v", typ, err)
			}
			if ev, err := parseEvidence(der); err != nil || !ev.Simulated || ev.TEE != attest.SGX {
				t.Fatalf("wrapped evidence: %+v %v", ev, err)
			}
		}
	}
	if found != 1 || OIDEvidence.String() != "2.23.133.5.4.9" {
		t.Fatalf("%d evidence extensions under %s", found, OIDEvidence)
	}
	if _, err := ParseCSR(csr); err != nil {
		t.Fatal(err)
	}
}

// csrWith signs a CSR for col-1 carrying exts.
func csrWith(t *testing.T, exts ...pkix.Extension) []byte {
	t.Helper()
	key, err := GenerateKey(P256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "col-1", OrganizationalUnit: []string{"collaborator"}},
		ExtraExtensions: exts}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestCSREvidenceOIDsOldAndNew(t *testing.T) {
	der, err := marshalEvidence(&attest.Evidence{TEE: attest.TDX, Quote: []byte("quote"), Collateral: []byte("col")})
	if err != nil {
		t.Fatal(err)
	}
	// A CSR of an older teeml (bare DER under 1.3.6.1.4.1.99999.1.1) still parses.
	c, err := ParseCSR(csrWith(t, pkix.Extension{Id: OIDEvidenceV1, Value: der}))
	if err != nil || c.Evidence.TEE != attest.TDX || string(c.Evidence.Quote) != "quote" {
		t.Fatalf("v1 CSR: %+v %v", c, err)
	}
	c, err = ParseCSR(csrWith(t, pkix.Extension{Id: OIDEvidence, Value: marshalCMW(CMWType, der)}))
	if err != nil || string(c.Evidence.Collateral) != "col" {
		t.Fatalf("CMW CSR: %+v %v", c, err)
	}
	for _, tc := range []struct {
		name string
		exts []pkix.Extension
		want string
	}{
		{"both", []pkix.Extension{{Id: OIDEvidence, Value: marshalCMW(CMWType, der)}, {Id: OIDEvidenceV1, Value: der}}, "appears twice"},
		{"bare DER under the TCG OID", []pkix.Extension{{Id: OIDEvidence, Value: der}}, "want 0x82"},
		{"other CMW type", []pkix.Extension{{Id: OIDEvidence, Value: marshalCMW("application/eat+cwt", der)}}, `CMW type "application/eat+cwt"`},
		{"CMW of junk", []pkix.Extension{{Id: OIDEvidence, Value: marshalCMW(CMWType, []byte("junk"))}}, "evidence extension"},
	} {
		_, err := ParseCSR(csrWith(t, tc.exts...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestParseCMWStrict(t *testing.T) {
	long := bytes.Repeat([]byte{7}, 300)
	good := marshalCMW(CMWType, long)
	if typ, v, err := parseCMW(good); err != nil || typ != CMWType || !bytes.Equal(v, long) {
		t.Fatalf("round trip: %q %v", typ, err)
	}
	// 300 bytes: byte string head 0x59 0x01 0x2c.
	if !bytes.Contains(good, []byte{0x59, 0x01, 0x2c}) {
		t.Fatalf("length not in the 2-byte form: % x", good[:40])
	}
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"JSON", []byte(`["application/x","AAA"]`), "JSON record form"},
		{"tag", []byte{0xd9, 0x01, 0x00, 0x41, 0x00}, "tag form"},
		{"indicator", []byte{0x83, 0x61, 'a', 0x41, 0, 0}, "indicator"},
		{"map", []byte{0xa1}, "want 0x82"},
		{"type not text", []byte{0x82, 0x41, 'a', 0x41, 0}, "major type 2, want a text string"},
		{"value not bytes", []byte{0x82, 0x61, 'a', 0x61, 'b'}, "want a byte string"},
		{"not shortest", []byte{0x82, 0x78, 0x01, 'a', 0x41, 0}, "shortest form"},
		{"indefinite", []byte{0x82, 0x61, 'a', 0x5f, 0x41, 0, 0xff}, "indefinite"},
		{"truncated", []byte{0x82, 0x61, 'a', 0x45, 0}, "only 1 left"},
		{"trailing", append(marshalCMW("a", []byte{1}), 0), "1 bytes after"},
		{"no value", []byte{0x82, 0x61, 'a'}, "value missing"},
	} {
		if _, _, err := parseCMW(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
