package ratls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/verifier"

	"github.com/teeml/teeml/internal/testlog"
)

// Measurements of the simulated enclaves in these tests.
var (
	mrGood  = [32]byte{0x11, 0x22, 0x33, 0x44, 1}
	mrOther = [32]byte{0x81, 0x5f, 0x00, 0x01, 2}
	mrSign  = [32]byte{0xaa, 0xbb, 0xcc, 0xdd, 3}
)

func quiet() *slog.Logger { return testlog.Discard() }

type logBuf = testlog.Buffer

// rawLogger logs each record as one unquoted line: message, then key=value
// attributes.
func rawLogger(w io.Writer) *slog.Logger { return slog.New(&rawHandler{w: w}) }

type rawHandler struct {
	w     io.Writer
	attrs []slog.Attr
}

func (h *rawHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *rawHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	write := func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true }
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	b.WriteString("\n")
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *rawHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &rawHandler{w: h.w, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *rawHandler) WithGroup(string) slog.Handler { return h }

// simEnv is a simulation key with issuers for several enclaves.
type simEnv struct {
	key *ecdsa.PrivateKey
}

func newSimEnv(t testing.TB) *simEnv {
	t.Helper()
	k, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &simEnv{key: k}
}

func (e *simEnv) issuer(t testing.TB, mr [32]byte, debug bool) *sim.Issuer {
	t.Helper()
	iss, err := sim.NewIssuer(e.key, sim.Identity{TEE: attest.SGX, MREnclave: mr, MRSigner: mrSign, Debug: debug})
	if err != nil {
		t.Fatal(err)
	}
	iss.Logger = quiet()
	return iss
}

// evidenceVerifier trusts the environment's simulation key; its
// simulation warnings are discarded.
func (e *simEnv) evidenceVerifier(t testing.TB) attest.Verifier {
	t.Helper()
	v, err := sim.NewVerifier(&e.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v.Logger = quiet()
	return v
}

// dispatchVerifier is the production dispatching verifier trusting the
// environment's simulation key (it logs simulation warnings).
func (e *simEnv) dispatchVerifier(t testing.TB) attest.Verifier {
	t.Helper()
	v, err := verifier.New(verifier.Config{SimulationKeys: []*ecdsa.PublicKey{&e.key.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// countingVerifier counts evidence verifications.
type countingVerifier struct {
	attest.Verifier
	n atomic.Int64
}

func (c *countingVerifier) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	c.n.Add(1)
	return c.Verifier.Verify(ctx, ev, now)
}

func testPolicy(t testing.TB, allowSim bool) *policy.Policy {
	t.Helper()
	y := fmt.Sprintf(`roles:
  aggregator:
    sgx:
      - mr_enclave: %[1]s
        mr_signer: %[2]s
    allow_simulation: %[3]v
  collaborator:
    sgx:
      - mr_enclave: %[1]s
        mr_signer: %[2]s
    allow_simulation: %[3]v
`, hex.EncodeToString(mrGood[:]), hex.EncodeToString(mrSign[:]), allowSim)
	p, err := policy.Parse([]byte(y), "test-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testPKI is a stand-in for package pki: a CA issuing identity
// certificates (CN = member name, OU = role) and an IdentityVerifier
// checking the identity certificate's chain to the CA, revocation and the
// member list.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool

	mu      sync.Mutex
	members map[string]string // name → role
	revoked map[string]bool   // serial hex
	calls   atomic.Int64
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	k := mustKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "teeml test federation CA"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	ca := mustCreate(t, tmpl, tmpl, &k.PublicKey, k)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: k, pool: pool, members: map[string]string{}, revoked: map[string]bool{}}
}

// identity issues an identity certificate for name/role valid in
// [notBefore, notAfter] and adds name to the member list.
func (p *testPKI) identity(t testing.TB, name, role string, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := mustKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, OrganizationalUnit: []string{role}},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	c := mustCreate(t, tmpl, p.ca, &k.PublicKey, p.caKey)
	p.mu.Lock()
	p.members[name] = role
	p.mu.Unlock()
	return c, k
}

func (p *testPKI) revoke(c *x509.Certificate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked[c.SerialNumber.Text(16)] = true
}

func (p *testPKI) removeMember(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.members, name)
}

func (p *testPKI) VerifyIdentity(chain []*x509.Certificate, now time.Time) (*Identity, error) {
	p.calls.Add(1)
	if len(chain) < 2 {
		return nil, errors.New("no identity certificate")
	}
	c := chain[1]
	inter := x509.NewCertPool()
	for _, ic := range chain[2:] {
		inter.AddCert(ic)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: p.pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("identity certificate %q: %w", c.Subject.CommonName, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	serial := c.SerialNumber.Text(16)
	if p.revoked[serial] {
		return nil, errors.New("certificate revoked")
	}
	name := c.Subject.CommonName
	role, ok := p.members[name]
	if !ok {
		return nil, fmt.Errorf("%q is not in the member list", name)
	}
	if len(c.Subject.OrganizationalUnit) != 1 || c.Subject.OrganizationalUnit[0] != role {
		return nil, fmt.Errorf("%q is a member as %s, not %v", name, role, c.Subject.OrganizationalUnit)
	}
	return &Identity{Name: name, Role: role, Serial: serial, NotAfter: c.NotAfter}, nil
}

// fixedIdentity is an IdentityVerifier returning a fixed answer.
type fixedIdentity struct {
	id  *Identity
	err error
}

func (f fixedIdentity) VerifyIdentity([]*x509.Certificate, time.Time) (*Identity, error) {
	return f.id, f.err
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCreate(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leafSpec builds RA-TLS leaves by hand, for certificates NewCertificate
// refuses to make (evidence for another key, odd validity…).
type leafSpec struct {
	key       crypto.Signer     // leaf key (default: new P-256)
	exts      []pkix.Extension  // evidence extensions (default: none)
	parent    *x509.Certificate // nil: self-signed
	parentKey crypto.Signer
	notBefore time.Time
	notAfter  time.Time
	subject   *pkix.Name
}

func buildLeaf(t testing.TB, s leafSpec) tls.Certificate {
	t.Helper()
	if s.key == nil {
		s.key = mustKey(t)
	}
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Minute)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(time.Hour)
	}
	subj := pkix.Name{CommonName: "hand-made RA-TLS"}
	if s.subject != nil {
		subj = *s.subject
	} else if s.parent != nil {
		subj = s.parent.Subject
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subj,
		NotBefore: s.notBefore, NotAfter: s.notAfter, ExtraExtensions: s.exts,
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	parent, signer := tmpl, s.key
	if s.parent != nil {
		parent, signer = s.parent, s.parentKey
	}
	c := mustCreate(t, tmpl, parent, s.key.Public(), signer)
	chain := [][]byte{c.Raw}
	if s.parent != nil {
		chain = append(chain, s.parent.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: s.key, Leaf: c}
}

// evidenceExts returns the evidence extensions of an RA-TLS certificate.
func evidenceExts(c *x509.Certificate) []pkix.Extension {
	var out []pkix.Extension
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDTaggedEvidence) || e.Id.Equal(OIDLegacyQuote) {
			out = append(out, e)
		}
	}
	return out
}

func chainOf(t testing.TB, c tls.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

func spkiHash(c *x509.Certificate) [32]byte { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

func newCert(t testing.TB, iss attest.Issuer, opts CertOptions) tls.Certificate {
	t.Helper()
	c, err := NewCertificate(context.Background(), iss, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantErr(t testing.TB, err error, check Check, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a %s refusal", check)
	}
	if got := CheckOf(err); got != check {
		t.Fatalf("check %q, want %q; error: %v", got, check, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.Contains(msg, "("+string(check)+")") {
		t.Errorf("error %q does not name the check %q", msg, check)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not contain %q", msg, p)
		}
	}
}
