package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
)

func TestInitCAWorkspace(t *testing.T) {
	for _, curve := range []string{P256, P384} {
		t.Run(curve, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			ca, err := InitCA(dir, InitOptions{Federation: "acme", Curve: curve, Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(dir)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("workspace mode %v, %v; want 0700", fi.Mode(), err)
			}
			for _, k := range []string{RootKeyFile, SigningKeyFile} {
				fi, err := os.Stat(filepath.Join(dir, k))
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, %v; want 0600", k, fi.Mode(), err)
				}
			}
			entries, _ := os.ReadDir(filepath.Dir(dir))
			if len(entries) != 1 {
				t.Errorf("init left temporary files next to the workspace: %v", entries)
			}
			root, signing := ca.Root(), ca.SigningCA()
			if !root.IsCA || root.CheckSignatureFrom(root) != nil || root.Subject.Organization[0] != "acme" {
				t.Fatalf("root: %+v", root.Subject)
			}
			if root.PublicKey.(*ecdsa.PublicKey).Curve.Params().Name != curve {
				t.Errorf("root curve %s, want %s", root.PublicKey.(*ecdsa.PublicKey).Curve.Params().Name, curve)
			}
			if root.NotAfter.Sub(t0) < 9*365*24*time.Hour {
				t.Errorf("root valid until %s only", root.NotAfter)
			}
			if err := signing.CheckSignatureFrom(root); err != nil || !signing.IsCA || signing.KeyUsage&x509.KeyUsageCRLSign == 0 {
				t.Fatalf("signing CA: %v", err)
			}
			// Reopen: same certificates and settings.
			again, err := OpenCA(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !again.Root().Equal(root) || !again.SigningCA().Equal(signing) || again.Config() != ca.Config() {
				t.Fatalf("reopened CA differs: %+v vs %+v", again.Config(), ca.Config())
			}
			if c := again.Config(); c.IdentityValidity != DefaultIdentityValidity || c.CRLValidity != DefaultCRLValidity || c.Curve != curve {
				t.Errorf("config %+v", c)
			}
			crl, err := os.ReadFile(filepath.Join(dir, CRLFile))
			if err != nil {
				t.Fatal(err)
			}
			l, err := parseCRLPEM(crl)
			if err != nil || l.CheckSignatureFrom(signing) != nil || len(l.RevokedCertificateEntries) != 0 {
				t.Fatalf("initial CRL: %v", err)
			}
			// Never over an existing workspace.
			_, err = InitCA(dir, InitOptions{Now: t0})
			wantErr(t, err, dir, "not empty")
		})
	}
}

func TestInitCABadOptions(t *testing.T) {
	dir := t.TempDir()
	_, err := InitCA(filepath.Join(dir, "a"), InitOptions{Curve: "P-521"})
	wantErr(t, err, `unknown curve "P-521"`)
	_, err = InitCA(filepath.Join(dir, "b"), InitOptions{Federation: "bad name"})
	wantErr(t, err, "federation name")
	_, err = InitCA(filepath.Join(dir, "c"), InitOptions{CRLValidity: -time.Hour})
	wantErr(t, err, "CRL validity", "negative")
	// An empty existing directory is fine.
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := InitCA(empty, InitOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCARefusesReadableKey(t *testing.T) {
	e := newEnv(t)
	k := filepath.Join(e.ca.Dir(), SigningKeyFile)
	if err := os.Chmod(k, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenCA(e.ca.Dir())
	wantErr(t, err, SigningKeyFile, "permissions 0644", "want 0600")
	_, err = OpenCA(t.TempDir())
	wantErr(t, err, "not a CA workspace")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%v is not fs.ErrNotExist", err)
	}
}

func TestCertifyRevokeListRoundTrip(t *testing.T) {
	e := newEnv(t)
	col1, _ := e.certify("col-1", "collaborator")
	agg, _ := e.certify("agg", "aggregator")

	c := col1.Cert
	if c.Subject.CommonName != "col-1" || c.Subject.OrganizationalUnit[0] != "collaborator" || c.Subject.Organization[0] != "acme" {
		t.Fatalf("subject %s", c.Subject)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero ||
		c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign ||
		!reflect.DeepEqual(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("identity certificate profile: CA=%v pathlen=%d ku=%v eku=%v", c.IsCA, c.MaxPathLen, c.KeyUsage, c.ExtKeyUsage)
	}
	if got := c.NotAfter.Sub(t0); got != DefaultIdentityValidity {
		t.Errorf("validity %s, want %s", got, DefaultIdentityValidity)
	}
	for _, ext := range c.Extensions {
		if ext.Id.Equal(OIDEvidence) {
			t.Error("the CSR's evidence extension was copied into the certificate")
		}
	}
	m := col1.Member
	if m.Status != Active || m.Serial != formatSerial(c.SerialNumber) || !m.CertifiedAt.Equal(t0) ||
		m.Evidence.TEE != "sgx" || !m.Evidence.Simulated || m.Evidence.Measurement != hex32(mrEnclave) ||
		!strings.Contains(m.Evidence.Policy, "accepted") || !strings.Contains(m.Evidence.Policy, "SIMULATED") {
		t.Fatalf("member %+v", m)
	}
	if _, err := os.Stat(filepath.Join(e.ca.Dir(), IssuedDir, "col-1-"+m.Serial+".pem")); err != nil {
		t.Errorf("issued certificate copy: %v", err)
	}

	// A fresh process sees the same list.
	ca2, err := OpenCA(e.ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	list, err := ca2.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !reflect.DeepEqual(list[0], col1.Member) || !reflect.DeepEqual(list[1], agg.Member) {
		t.Fatalf("list:\n%+v\nwant\n%+v\n%+v", list, col1.Member, agg.Member)
	}

	later := t0.Add(time.Hour)
	rm, err := ca2.Revoke("col-1", "keyCompromise", later)
	if err != nil {
		t.Fatal(err)
	}
	if rm.Status != Revoked || !rm.RevokedAt.Equal(later) || rm.RevocationReason != "keyCompromise" {
		t.Fatalf("revoked member %+v", rm)
	}
	crlPEM, err := os.ReadFile(filepath.Join(e.ca.Dir(), CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := parseCRLPEM(crlPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(c.SerialNumber) != 0 ||
		crl.RevokedCertificateEntries[0].ReasonCode != 1 || crl.Number.Int64() != 2 || crl.CheckSignatureFrom(e.ca.SigningCA()) != nil {
		t.Fatalf("CRL after revoke: number %v entries %+v", crl.Number, crl.RevokedCertificateEntries)
	}
	if !crl.NextUpdate.Equal(later.Add(DefaultCRLValidity)) {
		t.Errorf("CRL nextUpdate %s", crl.NextUpdate)
	}
	_, err = ca2.Revoke("col-1", "", later)
	wantErr(t, err, `revoke "col-1"`, "already revoked")
	_, err = ca2.Revoke("col-77", "", later)
	wantErr(t, err, `revoke "col-77"`, "no such member")
	_, err = ca2.Revoke("col-1", "two\nlines", later)
	wantErr(t, err, "one line")

	// After revocation the name can be certified again (new key, new serial).
	again, _ := e.certify("col-1", "collaborator")
	list, _ = e.ca.List()
	if len(list) != 3 || list[0].Status != Revoked || list[2].Serial != again.Member.Serial || list[2].Status != Active {
		t.Fatalf("list after re-certify: %+v", list)
	}
}

func TestCertifyRefusesEvidenceBoundToAnotherKey(t *testing.T) {
	e := newEnv(t)
	// The evidence binds a different key: e.g. replayed from another CSR.
	other, err := GenerateKey(P256)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	h := KeyHash(spki)
	iss := fixedReportData{e.issuer(sgxID(mrEnclave)), h[:]}
	_, csr := e.csr("col-1", "collaborator", iss)
	_, err = e.ca.Certify(context.Background(), csr, e.pol, e.v, t0)
	wantErr(t, err, `certify "col-1"`, "not bound to the CSR key")
	if l, _ := e.ca.List(); len(l) != 0 {
		t.Fatalf("refused CSR was listed: %+v", l)
	}
}

// fixedReportData issues evidence for rd whatever it is asked to bind.
type fixedReportData struct {
	inner attest.Issuer
	rd    []byte
}

func (f fixedReportData) Issue(ctx context.Context, _ []byte) (*attest.Evidence, error) {
	return f.inner.Issue(ctx, f.rd)
}

func TestCertifyRefusesWrongMeasurement(t *testing.T) {
	e := newEnv(t)
	bad := mrEnclave
	bad[0] ^= 0xff
	_, csr := e.csr("col-1", "collaborator", e.issuer(sgxID(bad)))
	_, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, t0)
	wantErr(t, err, `certify "col-1" refused`, `policy: peer "col-1" role collaborator`, "mr_enclave "+hex32(bad)+" not in accepted list")
}

func TestCertifyRefusesDebugEnclave(t *testing.T) {
	e := newEnv(t)
	id := sgxID(mrEnclave)
	id.Debug = true
	_, csr := e.csr("col-1", "collaborator", e.issuer(id))
	_, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, t0)
	wantErr(t, err, "debug enclave refused")
}

func TestCertifySimulationOnlyWhenPolicyAllows(t *testing.T) {
	e := newEnv(t)
	strict, err := policy.Parse([]byte(policyYAML(false)), "strict.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, csr := e.csr("col-1", "collaborator", nil)
	_, err = e.ca.Certify(context.Background(), csr, strict, e.v, t0)
	wantErr(t, err, "simulated evidence refused (allow_simulation: false)")
	// Without a trusted simulation key the verifier refuses before any policy.
	noSim := newEnv(t)
	_, err = noSim.ca.Certify(context.Background(), csr, e.pol, noSim.v, t0)
	wantErr(t, err, "evidence:", "not trusted")
	// The allowing policy accepts it.
	if _, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, t0); err != nil {
		t.Fatal(err)
	}
}

func TestCertifyRoleNotInPolicy(t *testing.T) {
	e := newEnv(t)
	_, csr := e.csr("kms-1", "kms", nil)
	_, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, t0)
	wantErr(t, err, `role "kms" not in policy`)
}

func TestCertifyDuplicateName(t *testing.T) {
	e := newEnv(t)
	first, _ := e.certify("col-1", "collaborator")
	_, csr := e.csr("col-1", "aggregator", nil)
	_, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, t0)
	wantErr(t, err, `certify "col-1"`, "name already active", first.Member.Serial)
}

func TestCertifyNoPolicyMustBeExplicit(t *testing.T) {
	e := newEnv(t)
	_, csr := e.csr("col-1", "collaborator", nil)
	_, err := e.ca.Certify(context.Background(), csr, nil, e.v, t0)
	wantErr(t, err, "no attestation policy")
	is, err := e.ca.Certify(context.Background(), csr, nil, e.v, t0, WithoutPolicy(), Validity(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if is.Member.Evidence.Policy != NoPolicyStatement || is.Decision != nil || is.Cert.NotAfter.Sub(t0) != time.Hour {
		t.Fatalf("member %+v", is.Member)
	}
	// Key binding is checked even without a policy.
	other, _ := GenerateKey(P256)
	spki, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	h := KeyHash(spki)
	_, csr2 := e.csr("col-2", "collaborator", fixedReportData{e.issuer(sgxID(mrEnclave)), h[:]})
	_, err = e.ca.Certify(context.Background(), csr2, nil, e.v, t0, WithoutPolicy())
	wantErr(t, err, "not bound to the CSR key")
}

func TestCertifyValidityCappedBySigningCA(t *testing.T) {
	e := newEnv(t)
	is, _ := e.certify("col-1", "collaborator", Validity(100*365*24*time.Hour))
	if !is.Cert.NotAfter.Equal(e.ca.SigningCA().NotAfter) {
		t.Fatalf("NotAfter %s, signing CA %s", is.Cert.NotAfter, e.ca.SigningCA().NotAfter)
	}
	_, csr := e.csr("col-2", "collaborator", nil)
	_, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, e.ca.SigningCA().NotAfter.Add(time.Second))
	wantErr(t, err, "signing CA expired")
}

func TestCertifyConcurrentNamesAreUnique(t *testing.T) {
	e := newEnv(t)
	const n = 8
	csrs := make([][]byte, n)
	for i := range csrs {
		_, csrs[i] = e.csr("col-x", "collaborator", nil)
	}
	// Two CA handles on one workspace, as two processes would have.
	ca2, err := OpenCA(e.ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range csrs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ca := e.ca
			if i%2 == 1 {
				ca = ca2
			}
			if _, err := ca.Certify(context.Background(), csrs[i], e.pol, e.v, t0); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !strings.Contains(err.Error(), "already active") {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	l, _ := e.ca.List()
	if ok != 1 || len(l) != 1 {
		t.Fatalf("%d certified, %d listed; want exactly 1", ok, len(l))
	}
}

func TestCSRRoundTripAndRefusals(t *testing.T) {
	e := newEnv(t)
	key, pemCSR := e.csr("col-1", "collaborator", nil)
	c, err := ParseCSR(pemCSR)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if c.Name != "col-1" || c.Role != "collaborator" || !c.Key.Equal(&key.PublicKey) || c.KeyHash != KeyHash(spki) ||
		!c.Evidence.Simulated || c.Evidence.TEE != attest.SGX {
		t.Fatalf("csr %+v", c)
	}
	q, err := sim.ParseQuote(c.Evidence.Quote)
	if err != nil {
		t.Fatal(err)
	}
	h := KeyHash(spki)
	if string(q.ReportData[:32]) != string(h[:]) {
		t.Fatal("quote report data is not SHA-256 of the CSR key")
	}

	_, err = NewCSR(context.Background(), key, "col-1", "boss", e.issuer(sgxID(mrEnclave)))
	wantErr(t, err, `unknown role "boss"`)
	_, err = NewCSR(context.Background(), key, "col 1", "collaborator", e.issuer(sgxID(mrEnclave)))
	wantErr(t, err, `member name "col 1"`)
	p384, _ := GenerateKey(P384)
	if _, err := NewCSR(context.Background(), p384, "col-1", "collaborator", e.issuer(sgxID(mrEnclave))); err != nil {
		t.Fatalf("P-384 identity key: %v", err)
	}

	_, err = ParseCSR([]byte("hello"))
	wantErr(t, err, "no PEM block")
	// A flipped signature byte.
	bad := tamperCSR(t, pemCSR, func(der []byte) { der[len(der)-3] ^= 1 })
	_, err = ParseCSR(bad)
	wantErr(t, err, `csr "col-1"`, "bad signature")
	// Extra subject attributes are refused, unknown roles too, and a CSR
	// without evidence.
	for _, tc := range []struct {
		subject  string
		withEv   bool
		wantErrs []string
	}{
		{"O", true, []string{"want exactly CN=<name> and OU=<role>"}},
		{"role", true, []string{`unknown role "wizard"`}},
		{"noev", false, []string{"no TEE evidence"}},
	} {
		_, err := ParseCSR(handCSR(t, tc.subject, tc.withEv))
		wantErr(t, err, tc.wantErrs...)
	}
}

func TestCertifyCollateralOptionReachesVerifier(t *testing.T) {
	e := newEnv(t)
	_, csr := e.csr("col-1", "collaborator", nil)
	// Simulated evidence must have no collateral: the sim verifier refusing
	// shows the supplied collateral reached it.
	_, err := e.ca.Certify(context.Background(), csr, e.pol, e.v, t0, Collateral([]byte("{}")))
	wantErr(t, err, "evidence:", "2 bytes of collateral")
}

// failingVerifier refuses all evidence with err.
type failingVerifier struct{ err error }

func (f failingVerifier) Verify(context.Context, *attest.Evidence, time.Time) (*attest.Claims, error) {
	return nil, f.err
}

// TestCertifyWrapsVerifierError: a verifier's refusal reaches the caller
// wrapped (errors.Is), with the "evidence: " prefix added once.
func TestCertifyWrapsVerifierError(t *testing.T) {
	e := newEnv(t)
	_, csr := e.csr("col-1", "collaborator", nil)
	errExpired := errors.New("collateral expired")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dcap: verify: %w", errExpired), `pki: certify "col-1" (collaborator): evidence: dcap: verify: collateral expired`},
		{fmt.Errorf("evidence: %w", errExpired), `pki: certify "col-1" (collaborator): evidence: collateral expired`},
	} {
		_, err := e.ca.Certify(context.Background(), csr, e.pol, failingVerifier{tc.err}, t0)
		if err == nil || err.Error() != tc.want {
			t.Fatalf("got %v, want %s", err, tc.want)
		}
		if !errors.Is(err, errExpired) {
			t.Fatalf("%v does not wrap the verifier's error", err)
		}
	}
}
