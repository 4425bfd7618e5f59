package pki

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"testing"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/sim"
)

func tamperCSR(t *testing.T, pemCSR []byte, f func(der []byte)) []byte {
	t.Helper()
	b, _ := pem.Decode(pemCSR)
	der := append([]byte(nil), b.Bytes...)
	f(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// handCSR builds CSRs NewCSR would never make.
func handCSR(t *testing.T, kind string, withEvidence bool) []byte {
	t.Helper()
	key, err := GenerateKey(P256)
	if err != nil {
		t.Fatal(err)
	}
	subj := pkix.Name{CommonName: "col-1", OrganizationalUnit: []string{"collaborator"}}
	switch kind {
	case "O":
		subj.Organization = []string{"evil"}
	case "role":
		subj.OrganizationalUnit = []string{"wizard"}
	}
	tmpl := &x509.CertificateRequest{Subject: subj}
	if withEvidence {
		ext, err := marshalEvidence(&attest.Evidence{TEE: attest.SGX, Quote: []byte("q")})
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDEvidence, Value: marshalCMW(CMWType, ext)}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestEvidenceExtensionRefusals(t *testing.T) {
	good, err := marshalEvidence(&attest.Evidence{TEE: attest.TDX, Quote: []byte{1}, Collateral: []byte{2}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := parseEvidence(good)
	if err != nil || ev.TEE != attest.TDX || string(ev.Quote) != "\x01" || string(ev.Collateral) != "\x02" {
		t.Fatalf("round trip: %+v %v", ev, err)
	}
	for name, tc := range map[string]struct {
		ev   evidenceExt
		want string
	}{
		"version": {evidenceExt{Version: 2, TEE: "sgx", Quote: []byte{1}}, "version 2"},
		"tee":     {evidenceExt{Version: 1, TEE: "trustzone", Quote: []byte{1}}, `unknown TEE "trustzone"`},
		"empty":   {evidenceExt{Version: 1, TEE: "sgx"}, "empty quote"},
	} {
		t.Run(name, func(t *testing.T) {
			der, err := asn1.Marshal(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parseEvidence(der)
			wantErr(t, err, tc.want)
		})
	}
	_, err = parseEvidence(append(good, 0))
	wantErr(t, err, "after the value")
	_, err = marshalEvidence(nil)
	wantErr(t, err, "no evidence")
}

// seedCSR makes a valid CSR with simulated evidence (no testing.T: fuzz
// corpus set-up).
func seedCSR() ([]byte, error) {
	simKey, err := sim.GenerateKey()
	if err != nil {
		return nil, err
	}
	iss, err := sim.NewIssuer(simKey, sgxID(mrEnclave))
	if err != nil {
		return nil, err
	}
	key, err := GenerateKey(P256)
	if err != nil {
		return nil, err
	}
	return NewCSR(context.Background(), key, "col-1", "collaborator", iss)
}

// FuzzParseCSR feeds arbitrary PEM and DER to the CSR parser and the
// evidence extension decoder. Whatever they accept must satisfy NewCSR's
// invariants; accepted evidence must survive re-encoding.
func FuzzParseCSR(f *testing.F) {
	csr, err := seedCSR()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(csr)
	block, _ := pem.Decode(csr)
	f.Add(block.Bytes)
	c, err := parseCSRDER(block.Bytes)
	if err != nil {
		f.Fatal(err)
	}
	ext, _ := marshalEvidence(c.Evidence)
	f.Add(ext)
	f.Add(marshalCMW(CMWType, ext))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) (*CSR, error){ParseCSR, parseCSRDER} {
			c, err := parse(data)
			if err != nil {
				if c != nil {
					t.Fatal("CSR returned with an error")
				}
				continue
			}
			if CheckName(c.Name) != nil || CheckRole(c.Role) != nil || c.Evidence == nil || len(c.Evidence.Quote) == 0 ||
				c.KeyHash != KeyHash(c.SPKI) || c.Request.CheckSignature() != nil {
				t.Fatalf("accepted CSR breaks invariants: %+v", c)
			}
		}
		if typ, v, err := parseCMW(data); err == nil {
			if again := marshalCMW(typ, v); !bytes.Equal(again, data) {
				t.Fatalf("accepted CMW is not canonical: % x re-encodes as % x", data, again)
			}
		}
		if ev, err := parseEvidence(data); err == nil {
			if len(ev.Quote) == 0 || (ev.TEE != attest.SGX && ev.TEE != attest.TDX && ev.TEE != attest.SNP) {
				t.Fatalf("accepted evidence %+v", ev)
			}
			again, err := marshalEvidence(ev)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseEvidence(again); err != nil {
				t.Fatalf("re-encoded evidence refused: %v", err)
			}
		}
	})
}
