package ratls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/verifier"
)

// gramineName is "CN=RATLS,O=GramineDevelopers,C=US" as mbedTLS encodes it
// (tools/sgx/ra-tls/ra_tls_attest.c CERT_SUBJECT_NAME_VALUES; mbedTLS
// x509_create.c default string types: CN and O UTF8String, C
// PrintableString), RDNs in the order of the string.
func gramineName(t testing.TB) []byte {
	t.Helper()
	atv := func(oid asn1.ObjectIdentifier, tag int, s string) []pkix.AttributeTypeAndValue {
		return []pkix.AttributeTypeAndValue{{Type: oid, Value: asn1.RawValue{Tag: tag, Bytes: []byte(s)}}}
	}
	der, err := asn1.Marshal(pkix.RDNSequence{
		atv(asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.TagUTF8String, "RATLS"),
		atv(asn1.ObjectIdentifier{2, 5, 4, 10}, asn1.TagUTF8String, "GramineDevelopers"),
		atv(asn1.ObjectIdentifier{2, 5, 4, 6}, asn1.TagPrintableString, "US"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// gramineCert builds a certificate the way Gramine's ra_tls_attest.c does:
// a fresh ECDSA P-384 key; self-signed with ECDSA-SHA256; serial 1; subject
// and issuer CN=RATLS,O=GramineDevelopers,C=US; validity 2001-01-01 00:00:00
// to 2030-12-31 23:59:59 (its defaults); basic constraints CA=false; subject
// and authority key identifiers; then the legacy extension (raw quote,
// report data SHA-256(SPKI)) and the TCG tagged-evidence extension, both
// non-critical. quote returns the quote for given report data.
func gramineCert(t testing.TB, quote func(rd []byte) []byte) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		t.Fatal(err)
	}
	skid := sha1.Sum(info.PublicKey.Bytes) // mbedTLS: SHA-1 of the public key bits
	legacyRD := sha256.Sum256(spki)
	claims := MarshalClaims(spki)
	tcgRD := sha256.Sum256(claims)
	tagged, err := MarshalTaggedEvidence(quote(tcgRD[:]), claims)
	if err != nil {
		t.Fatal(err)
	}
	name := gramineName(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		RawSubject:            name,
		RawIssuer:             name,
		NotBefore:             time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC),
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid[:],
		AuthorityKeyId:        skid[:],
		ExtraExtensions: []pkix.Extension{
			{Id: OIDLegacyQuote, Value: quote(legacyRD[:])},
			{Id: OIDTaggedEvidence, Value: tagged},
		},
	}
	c := mustCreate(t, tmpl, tmpl, &key.PublicKey, key)
	return c, key
}

func TestGramineCertificateSimulated(t *testing.T) {
	env := newSimEnv(t)
	iss := env.issuer(t, mrGood, false)
	cert, _ := gramineCert(t, func(rd []byte) []byte {
		ev, err := iss.Issue(context.Background(), rd)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Quote
	})
	if cert.Subject.String() != "CN=RATLS,O=GramineDevelopers,C=US" || cert.Issuer.String() != cert.Subject.String() ||
		!bytes.Contains(cert.RawSubject, []byte{0x0c, 0x05, 'R', 'A', 'T', 'L', 'S'}) || cert.SerialNumber.Int64() != 1 {
		t.Fatalf("not Gramine's names: %v / %v", cert.Subject, cert.Issuer)
	}
	ev, err := ParseEvidence(cert)
	if err != nil {
		t.Fatal(err)
	}
	if ev.TCG == nil || ev.Legacy == nil || ev.TCG.PubKeyHashAlg != HashSHA256 {
		t.Fatalf("evidence %+v", ev)
	}
	pol := testPolicy(t, true)
	pol.Roles["gramine"] = pol.Roles["aggregator"]
	v, err := NewVerifier(Config{Evidence: env.dispatchVerifier(t), Policy: pol, Role: "gramine", PeerName: "gramine-server", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := v.VerifyPeer(context.Background(), []*x509.Certificate{cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Simulated || !bytes.Equal(p.Claims.MREnclave, mrGood[:]) || p.Format != FormatTCG || p.Name() != "gramine-server" {
		t.Fatalf("peer %+v", p)
	}
	// Without permission to simulate, the same certificate is refused.
	strict := testPolicy(t, false)
	strict.Roles["gramine"] = strict.Roles["aggregator"]
	vs, err := NewVerifier(Config{Evidence: env.dispatchVerifier(t), Policy: strict, Role: "gramine", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = vs.VerifyPeer(context.Background(), []*x509.Certificate{cert}, now)
	wantErr(t, err, CheckPolicy, "peer: role gramine: simulated evidence refused")
}

// staticSource serves one collateral bundle for the key it belongs to.
type staticSource struct {
	col   *collateral.Collateral
	fmspc string
	calls int
}

func (s *staticSource) Collateral(_ context.Context, k collateral.Key) (*collateral.Collateral, error) {
	s.calls++
	if k.TEE != attest.SGX || !strings.EqualFold(k.FMSPC, s.fmspc) {
		return nil, fmt.Errorf("no collateral for %s", k)
	}
	return s.col, nil
}

// realDCAP returns the shared real SGX quote, a DCAP-capable dispatching
// verifier with its collateral as Options.Source (RA-TLS certificates do
// not carry collateral), and the source.
func realDCAP(t testing.TB) ([]byte, attest.Verifier, *staticSource) {
	t.Helper()
	quote := dcaptest.Read(t, "sgx-dcap/quote.bin")
	col, err := collateral.Parse(dcaptest.Read(t, "sgx-dcap/collateral.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := dcap.VerifyQuote(quote, col, dcaptest.VerifyTime)
	if err != nil {
		t.Fatal(err)
	}
	src := &staticSource{col: col, fmspc: res.Claims.FMSPC}
	return quote, dcapVerifier(t, src), src
}

// dcapVerifier is a new dispatching verifier taking collateral from src.
func dcapVerifier(t testing.TB, src collateral.Source) attest.Verifier {
	t.Helper()
	v, err := verifier.New(verifier.Config{DCAP: &dcap.Options{Source: src}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A Gramine certificate embedding the real SGX quote parses; it is refused
// only on the key binding (the quote's report data is "Hello, world!", not
// a hash of this certificate's key), before evidence verification; the
// evidence itself verifies.
func TestGramineCertificateRealQuote(t *testing.T) {
	quote, ev, src := realDCAP(t)
	cert, _ := gramineCert(t, func([]byte) []byte { return quote })
	parsed, err := ParseEvidence(cert)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.Legacy, quote) || !bytes.Equal(parsed.TCG.Quote, quote) {
		t.Fatal("quote not carried intact")
	}
	_, rd, err := quoteReportData(quote)
	if err != nil || !bytes.HasPrefix(rd, []byte("Hello, world!")) {
		t.Fatalf("report data %q: %v", rd, err)
	}

	counting := &countingVerifier{Verifier: ev}
	// Accept exactly this enclave, so that only the binding can fail.
	claims, err := ev.Verify(context.Background(), &attest.Evidence{Quote: quote}, dcaptest.VerifyTime)
	if err != nil {
		t.Fatal("the real quote does not verify with collateral from the source:", err)
	}
	if src.calls == 0 {
		t.Fatal("collateral did not come from the verifier's Source")
	}
	pol := &policy.Policy{Roles: map[string]*policy.Role{"gramine": {
		SGX:         []policy.SGXEntry{{MREnclave: claims.MREnclave, MRSigner: claims.MRSigner}},
		AllowDebug:  true,
		TCBStatuses: []attest.TCBStatus{claims.TCBStatus}, AdvisoryIDs: claims.AdvisoryIDs,
	}}}
	if d := pol.Evaluate("gramine", claims, policy.Logger(quiet())); !d.Accepted {
		t.Fatalf("policy does not accept the evidence itself: %v", d)
	}
	v, err := NewVerifier(Config{Evidence: counting, Policy: pol, Role: "gramine", PeerName: "gramine-server", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	keyHash := spkiHash(cert)
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		// Both extensions: the legacy binding is checked first.
		{"both", cert, fmt.Sprintf(`peer "gramine-server": evidence binds key 48656c6c…, not the certificate's key %s (key-binding)`, short(keyHash[:]))},
		{"tcg only", onlyExt(t, cert, OIDTaggedEvidence), "extension 2.23.133.5.4.9 (TCG tagged evidence): quote report data 48656c6c… is not SHA-256 of the claims"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.VerifyPeer(context.Background(), []*x509.Certificate{tc.cert}, dcaptest.VerifyTime)
			wantErr(t, err, CheckBinding, tc.want)
			if n := counting.n.Load(); n != 0 {
				t.Fatalf("%d evidence verifications before the key-binding refusal", n)
			}
		})
	}
}

// onlyExt re-signs cert (same key) keeping only the evidence extension oid.
func onlyExt(t testing.TB, cert *x509.Certificate, oid asn1.ObjectIdentifier) *x509.Certificate {
	t.Helper()
	var exts []pkix.Extension
	for _, e := range cert.Extensions {
		if e.Id.Equal(oid) {
			exts = append(exts, e)
		}
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), RawSubject: cert.RawSubject, NotBefore: cert.NotBefore,
		NotAfter: cert.NotAfter, ExtraExtensions: exts, SignatureAlgorithm: x509.ECDSAWithSHA256}
	// A new P-384 key: the binding fails either way, the message is what
	// is checked.
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return mustCreate(t, tmpl, tmpl, &k.PublicKey, crypto.Signer(k))
}
