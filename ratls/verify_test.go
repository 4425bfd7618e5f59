package ratls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
)

// fixture is a federation: simulated enclaves, a test PKI and verifiers.
type fixture struct {
	env   *simEnv
	pki   *testPKI
	ev    *countingVerifier
	pol   *policy.Policy
	now   time.Time
	idNB  time.Time
	idNA  time.Time
	idCrt map[string]*x509.Certificate
	idKey map[string]*ecdsa.PrivateKey
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	env := newSimEnv(t)
	now := time.Now()
	f := &fixture{
		env: env, pki: newTestPKI(t), pol: testPolicy(t, true), now: now,
		idNB: now.Add(-time.Hour), idNA: now.Add(12 * time.Hour),
		idCrt: map[string]*x509.Certificate{}, idKey: map[string]*ecdsa.PrivateKey{},
	}
	f.ev = &countingVerifier{Verifier: env.evidenceVerifier(t)}
	return f
}

// member issues (once) an identity certificate for name in role.
func (f *fixture) member(t testing.TB, name, role string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	if c, ok := f.idCrt[name]; ok {
		return c, f.idKey[name]
	}
	c, k := f.pki.identity(t, name, role, f.idNB, f.idNA)
	f.idCrt[name], f.idKey[name] = c, k
	return c, k
}

// cert makes an RA-TLS certificate of name (role) for an enclave.
func (f *fixture) cert(t testing.TB, name, role string, mr [32]byte, debug bool) tls.Certificate {
	t.Helper()
	idc, idk := f.member(t, name, role)
	return newCert(t, f.env.issuer(t, mr, debug), CertOptions{Parent: idc, ParentKey: idk})
}

func (f *fixture) verifier(t testing.TB, mutate ...func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{Evidence: f.ev, Policy: f.pol, Identity: f.pki, Logger: quiet()}
	for _, m := range mutate {
		m(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyPeerAccepted(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	c := f.cert(t, "col-1", "collaborator", mrGood, false)
	chain := chainOf(t, c)
	p, err := v.VerifyPeer(context.Background(), chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity == nil || p.Identity.Name != "col-1" || p.Identity.Role != "collaborator" || p.Name() != "col-1" || p.Role() != "collaborator" {
		t.Fatalf("identity %+v", p.Identity)
	}
	if !p.Simulated || !p.Claims.Simulated || !bytes.Equal(p.Claims.MREnclave, mrGood[:]) || !bytes.Equal(p.Claims.MRSigner, mrSign[:]) {
		t.Fatalf("claims %+v", p.Claims)
	}
	if !p.Decision.Accepted || p.Decision.Peer != "col-1" || p.Format != FormatTCG || p.LeafKeyHash != spkiHash(chain[0]) || p.Cached {
		t.Fatalf("peer %+v", p)
	}
	if n := f.ev.n.Load(); n != 1 {
		t.Fatalf("%d evidence verifications, want 1", n)
	}
	// Same certificate again: evidence from the cache, identity and policy
	// checked again.
	calls := f.pki.calls.Load()
	p2, err := v.VerifyPeer(context.Background(), chain, f.now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Cached || f.ev.n.Load() != 1 || f.pki.calls.Load() != calls+1 {
		t.Fatalf("second verification: cached=%v evidence=%d identity calls=%d", p2.Cached, f.ev.n.Load(), f.pki.calls.Load()-calls)
	}
	// Results do not alias the cache.
	p2.Claims.MREnclave[0] ^= 0xff
	p3, err := v.VerifyPeer(context.Background(), chain, f.now)
	if err != nil || p3.Claims.MREnclave[0] != mrGood[0] {
		t.Fatalf("cache aliased by a result: %v", err)
	}
}

func TestVerifyPeerAttestationOnly(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t, func(c *Config) { c.Identity, c.Role, c.PeerName = nil, "aggregator", "agg" })
	if v.PKI() {
		t.Fatal("PKI mode without identity verifier")
	}
	for _, set := range []ExtensionSet{BothExtensions, TCGOnly, LegacyOnly} {
		c := newCert(t, f.env.issuer(t, mrGood, false), CertOptions{Extensions: set})
		p, err := v.VerifyPeer(context.Background(), chainOf(t, c), f.now)
		if err != nil {
			t.Fatalf("%v: %v", set, err)
		}
		wantFormat := FormatTCG
		if set == LegacyOnly {
			wantFormat = FormatLegacy
		}
		if p.Identity != nil || p.Name() != "agg" || p.Role() != "aggregator" || p.Format != wantFormat {
			t.Fatalf("%v: peer %+v", set, p)
		}
	}
	// The dispatching production verifier works the same.
	v2 := f.verifier(t, func(c *Config) { c.Identity, c.Role, c.Evidence = nil, "aggregator", f.env.dispatchVerifier(t) })
	c := newCert(t, f.env.issuer(t, mrGood, false), CertOptions{})
	if _, err := v2.VerifyPeer(context.Background(), chainOf(t, c), f.now); err != nil {
		t.Fatal(err)
	}
	// A leaf signed by some other key is checked against that key even
	// without PKI.
	idc, idk := f.member(t, "col-9", "collaborator")
	signed := newCert(t, f.env.issuer(t, mrGood, false), CertOptions{Parent: idc, ParentKey: idk})
	if _, err := v.VerifyPeer(context.Background(), chainOf(t, signed), f.now); err != nil {
		t.Fatal(err)
	}
	other, _ := f.pki.identity(t, "col-9", "collaborator", f.idNB, f.idNA)
	_, err := v.VerifyPeer(context.Background(), []*x509.Certificate{signed.Leaf, other}, f.now)
	wantErr(t, err, CheckSignature, `peer "agg": leaf not signed by the next certificate's key`)
}

func TestNewVerifierConfig(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Policy: f.pol, Role: "aggregator"}, "no evidence verifier"},
		{Config{Evidence: f.ev, Role: "aggregator"}, "no policy"},
		{Config{Evidence: f.ev, Policy: f.pol}, "needs a Role"},
		{Config{Evidence: f.ev, Policy: f.pol, Role: "kms"}, `role "kms" not in policy`},
	} {
		if _, err := NewVerifier(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestVerifyPeerRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	good := f.cert(t, "col-1", "collaborator", mrGood, false)
	goodChain := chainOf(t, good)
	idc, idk := f.member(t, "col-1", "collaborator")

	// Key-binding attack: valid evidence (for another key) and a valid
	// identity, on a leaf with a new key.
	attackKey := mustKey(t)
	stolen := buildLeaf(t, leafSpec{key: attackKey, exts: evidenceExts(good.Leaf), parent: idc, parentKey: idk})
	stolenTCG := buildLeaf(t, leafSpec{key: attackKey, exts: evidenceExts(good.Leaf)[1:], parent: idc, parentKey: idk})
	goodKey, attackHash := spkiHash(good.Leaf), spkiHash(stolen.Leaf)

	// Identities that fail.
	revokedID, revokedKey := f.pki.identity(t, "col-3", "collaborator", f.idNB, f.idNA)
	f.pki.revoke(revokedID)
	expiredID, expiredKey := f.pki.identity(t, "col-4", "collaborator", f.now.Add(-48*time.Hour), f.now.Add(-time.Hour))
	strangerID, strangerKey := f.pki.identity(t, "col-5", "collaborator", f.idNB, f.idNA)
	f.pki.removeMember("col-5")
	withID := func(c *x509.Certificate, k *ecdsa.PrivateKey, mr [32]byte) []*x509.Certificate {
		// NewCertificate refuses expired parents: build the leaf by hand.
		t.Helper()
		tmp := newCert(t, f.env.issuer(t, mr, false), CertOptions{})
		leaf := buildLeaf(t, leafSpec{key: tmp.PrivateKey.(*ecdsa.PrivateKey), exts: evidenceExts(tmp.Leaf), parent: c, parentKey: k})
		return chainOf(t, leaf)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaLeaf := buildLeaf(t, leafSpec{key: rsaKey, exts: evidenceExts(good.Leaf), parent: idc, parentKey: idk})
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224Leaf := buildLeaf(t, leafSpec{key: p224, exts: evidenceExts(good.Leaf), parent: idc, parentKey: idk})

	// Tampered: the leaf's evidence was issued for its key, but the leaf
	// was signed by a key other than the identity certificate's.
	otherKey := mustKey(t)
	fakeParent := mustCreate(t, &x509.Certificate{SerialNumber: idc.SerialNumber, Subject: idc.Subject,
		NotBefore: idc.NotBefore, NotAfter: idc.NotAfter}, f.pki.ca, &otherKey.PublicKey, f.pki.caKey)
	tmp := newCert(t, f.env.issuer(t, mrGood, false), CertOptions{})
	forged := buildLeaf(t, leafSpec{key: tmp.PrivateKey.(*ecdsa.PrivateKey), exts: evidenceExts(tmp.Leaf), parent: fakeParent, parentKey: otherKey})
	forgedChain := []*x509.Certificate{forged.Leaf, idc}

	// Legacy report data with non-zero padding.
	legacyPad := func() []*x509.Certificate {
		k := mustKey(t)
		spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		rd := sha256.Sum256(spki)
		ev, err := f.env.issuer(t, mrGood, false).Issue(ctx, append(rd[:], 1))
		if err != nil {
			t.Fatal(err)
		}
		return chainOf(t, buildLeaf(t, leafSpec{key: k, exts: []pkix.Extension{{Id: OIDLegacyQuote, Value: ev.Quote}}, parent: idc, parentKey: idk}))
	}()

	noSim := f.verifier(t, func(c *Config) { c.Policy = testPolicy(t, false) })
	untrusted := newSimEnv(t)
	untrustedCert := newCert(t, untrusted.issuer(t, mrGood, false), CertOptions{Parent: idc, ParentKey: idk})

	v := f.verifier(t)
	cases := []struct {
		name  string
		v     *Verifier
		chain []*x509.Certificate
		now   time.Time
		check Check
		parts []string
	}{
		{"empty chain", v, nil, f.now, CheckChain, []string{"peer: no certificate presented"}},
		{"no extensions", v, chainOf(t, buildLeaf(t, leafSpec{parent: idc, parentKey: idk})), f.now, CheckParse,
			[]string{`peer "col-1" (unverified): certificate has neither extension`}},
		{"malformed extension", v, chainOf(t, buildLeaf(t, leafSpec{exts: []pkix.Extension{{Id: OIDTaggedEvidence, Value: []byte{1}}}, parent: idc, parentKey: idk})),
			f.now, CheckParse, []string{"extension 2.23.133.5.4.9 (TCG tagged evidence): not a CBOR tag"}},
		{"rsa leaf", v, chainOf(t, rsaLeaf), f.now, CheckParse, []string{"leaf key is RSA, want ECDSA P-256 or P-384"}},
		{"p224 leaf", v, chainOf(t, p224Leaf), f.now, CheckParse, []string{"leaf key curve P-224"}},
		{"key binding (legacy)", v, chainOf(t, stolen), f.now, CheckBinding, []string{fmt.Sprintf(
			`peer "col-1": evidence binds key %s, not the certificate's key %s (key-binding)`, short(goodKey[:]), short(attackHash[:]))}},
		{"key binding (tcg)", v, chainOf(t, stolenTCG), f.now, CheckBinding, []string{fmt.Sprintf(
			`peer "col-1": evidence binds key %s, not the certificate's key %s (key-binding)`, short(goodKey[:]), short(attackHash[:]))}},
		{"legacy padding", v, legacyPad, f.now, CheckBinding, []string{"report data bytes 32..63 are 01000000…, want zero"}},
		{"forged signature", v, forgedChain, f.now, CheckSignature, []string{"leaf not signed by the next certificate's key"}},
		{"issuer mismatch", v, []*x509.Certificate{good.Leaf, revokedID}, f.now, CheckSignature, []string{"leaf issuer is not the subject of the next certificate"}},
		{"expired leaf", v, goodChain, good.Leaf.NotAfter.Add(time.Second), CheckValidity, []string{"certificate expired at"}},
		{"leaf not yet valid", v, goodChain, good.Leaf.NotBefore.Add(-time.Second), CheckValidity, []string{"certificate not valid before"}},
		{"no identity certificate", v, chainOf(t, newCert(t, f.env.issuer(t, mrGood, false), CertOptions{})), f.now, CheckIdentity,
			[]string{"peer: no identity certificate: the RA-TLS certificate is self-signed but an identity is required"}},
		{"revoked", v, withID(revokedID, revokedKey, mrGood), f.now, CheckIdentity, []string{`peer "col-3" (unverified): certificate revoked (identity)`}},
		{"expired identity", v, withID(expiredID, expiredKey, mrGood), f.now, CheckIdentity, []string{`identity certificate "col-4": x509: certificate has expired`}},
		{"not a member", v, withID(strangerID, strangerKey, mrGood), f.now, CheckIdentity, []string{`"col-5" is not in the member list`}},
		{"untrusted simulation key", v, chainOf(t, untrustedCert), f.now, CheckEvidence, []string{`peer "col-1": sim: verify: quote signed by simulation key`}},
		{"wrong measurement", v, chainOf(t, f.cert(t, "col-2", "collaborator", mrOther, false)), f.now, CheckPolicy,
			[]string{`peer "col-2": role collaborator: mr_enclave 815f0001`, "not in accepted list"}},
		{"debug enclave", v, chainOf(t, f.cert(t, "col-6", "collaborator", mrGood, true)), f.now, CheckPolicy,
			[]string{`peer "col-6": role collaborator: debug enclave refused (allow_debug: false)`}},
		{"simulation not allowed", noSim, goodChain, f.now, CheckPolicy,
			[]string{`peer "col-1": role collaborator: simulated evidence refused (allow_simulation: false) (policy)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.ev.n.Load()
			_, err := tc.v.VerifyPeer(ctx, tc.chain, tc.now)
			wantErr(t, err, tc.check, tc.parts...)
			t.Log(err)
			if tc.check == CheckParse || tc.check == CheckBinding || tc.check == CheckSignature {
				if n := f.ev.n.Load() - before; n != 0 {
					t.Errorf("%d evidence verifications before the %s check refused", n, tc.check)
				}
			}
		})
	}
}

// The identity verifier's answers are trusted only when consistent.
func TestVerifyPeerIdentityVerifierContract(t *testing.T) {
	f := newFixture(t)
	c := f.cert(t, "col-1", "collaborator", mrGood, false)
	for _, tc := range []struct {
		id   IdentityVerifier
		want string
	}{
		{fixedIdentity{}, "identity verifier returned no identity"},
		{fixedIdentity{id: &Identity{Name: "x"}}, "identity has no name or role"},
		{fixedIdentity{id: &Identity{Name: "x", Role: "kms"}}, `role "kms" not in policy`},
		{fixedIdentity{err: errors.New("pki: chain\nto nowhere")}, "pki: chain to nowhere (identity)"},
		{fixedIdentity{err: errors.New(`peer "col-1": certificate revoked`)}, `peer "col-1" (unverified): certificate revoked (identity)`},
		{fixedIdentity{err: errors.New(`peer identity: presented 1 certificates`)}, `peer "col-1" (unverified): presented 1 certificates (identity)`},
		{fixedIdentity{err: errors.New(`peer "col-9": not a member`)}, `peer "col-1" (unverified): peer "col-9": not a member (identity)`},
	} {
		v := f.verifier(t, func(cfg *Config) { cfg.Identity = tc.id })
		_, err := v.VerifyPeer(context.Background(), chainOf(t, c), f.now)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want %q", tc.id, err, tc.want)
		}
	}
}

// The cache never skips identity or policy, and ends with the leaf, the
// TTL and the claims' validity.
func TestVerifyPeerCache(t *testing.T) {
	ctx := context.Background()
	t.Run("identity and policy rechecked", func(t *testing.T) {
		f := newFixture(t)
		v := f.verifier(t)
		c := f.cert(t, "col-1", "collaborator", mrGood, false)
		chain := chainOf(t, c)
		if _, err := v.VerifyPeer(ctx, chain, f.now); err != nil {
			t.Fatal(err)
		}
		f.pki.revoke(chain[1])
		_, err := v.VerifyPeer(ctx, chain, f.now)
		wantErr(t, err, CheckIdentity, "certificate revoked")

		f2 := newFixture(t)
		v2 := f2.verifier(t)
		chain2 := chainOf(t, f2.cert(t, "col-2", "collaborator", mrGood, false))
		if _, err := v2.VerifyPeer(ctx, chain2, f2.now); err != nil {
			t.Fatal(err)
		}
		f2.pol.Roles["collaborator"].SGX[0].MREnclave = mrOther[:]
		_, err = v2.VerifyPeer(ctx, chain2, f2.now)
		wantErr(t, err, CheckPolicy, "mr_enclave")
		if f2.ev.n.Load() != 1 {
			t.Errorf("%d evidence verifications, want 1 (second from cache)", f2.ev.n.Load())
		}
	})
	t.Run("ttl and expiry", func(t *testing.T) {
		f := newFixture(t)
		v := f.verifier(t, func(c *Config) { c.CacheTTL = time.Minute })
		chain := chainOf(t, f.cert(t, "col-1", "collaborator", mrGood, false))
		for _, d := range []time.Duration{0, 30 * time.Second, 61 * time.Second, 62 * time.Second} {
			if _, err := v.VerifyPeer(ctx, chain, f.now.Add(d)); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.ev.n.Load(); n != 2 {
			t.Fatalf("%d evidence verifications, want 2 (TTL of a minute)", n)
		}
		_, err := v.VerifyPeer(ctx, chain, chain[0].NotAfter.Add(time.Nanosecond))
		wantErr(t, err, CheckValidity, "expired")
	})
	t.Run("claims ValidUntil", func(t *testing.T) {
		f := newFixture(t)
		until := f.now.Add(10 * time.Second)
		f.ev.Verifier = validUntil{f.ev.Verifier, until}
		v := f.verifier(t)
		chain := chainOf(t, f.cert(t, "col-1", "collaborator", mrGood, false))
		for _, d := range []time.Duration{0, 5 * time.Second} {
			if _, err := v.VerifyPeer(ctx, chain, f.now.Add(d)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := v.VerifyPeer(ctx, chain, f.now.Add(11*time.Second))
		wantErr(t, err, CheckPolicy, "claims expired at")
		if n := f.ev.n.Load(); n != 2 {
			t.Fatalf("%d evidence verifications, want 2", n)
		}
	})
	t.Run("disabled and bounded", func(t *testing.T) {
		f := newFixture(t)
		off := f.verifier(t, func(c *Config) { c.CacheEntries = -1 })
		chain := chainOf(t, f.cert(t, "col-1", "collaborator", mrGood, false))
		for range 3 {
			p, err := off.VerifyPeer(ctx, chain, f.now)
			if err != nil || p.Cached {
				t.Fatal(err)
			}
		}
		if n := f.ev.n.Load(); n != 3 {
			t.Fatalf("%d evidence verifications with the cache off, want 3", n)
		}
		small := f.verifier(t, func(c *Config) { c.CacheEntries = 2 })
		for i := range 3 {
			ch := chainOf(t, f.cert(t, fmt.Sprintf("col-%d", 10+i), "collaborator", mrGood, false))
			if _, err := small.VerifyPeer(ctx, ch, f.now); err != nil {
				t.Fatal(err)
			}
		}
		if n := small.cache.len(); n != 2 {
			t.Fatalf("cache holds %d entries, want 2", n)
		}
	})
	t.Run("failures are not cached", func(t *testing.T) {
		f := newFixture(t)
		v := f.verifier(t, func(c *Config) { c.Policy = testPolicy(t, false) })
		chain := chainOf(t, f.cert(t, "col-1", "collaborator", mrGood, false))
		for range 2 {
			_, err := v.VerifyPeer(ctx, chain, f.now)
			wantErr(t, err, CheckPolicy, "simulated")
		}
		// The evidence itself was fine, so its verification is cached;
		// the refusal is re-decided by policy each time.
		if n := f.ev.n.Load(); n != 1 {
			t.Fatalf("%d evidence verifications, want 1", n)
		}
		bad := newFixture(t)
		bad.ev.Verifier = failing{}
		vb := bad.verifier(t)
		chainB := chainOf(t, bad.cert(t, "col-1", "collaborator", mrGood, false))
		for range 2 {
			_, err := vb.VerifyPeer(ctx, chainB, bad.now)
			wantErr(t, err, CheckEvidence, "evidence: broken")
		}
		if n := bad.ev.n.Load(); n != 2 {
			t.Fatalf("%d evidence verifications of failing evidence, want 2", n)
		}
	})
	t.Run("context", func(t *testing.T) {
		f := newFixture(t)
		v := f.verifier(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := v.VerifyPeer(cctx, chainOf(t, f.cert(t, "col-1", "collaborator", mrGood, false)), f.now)
		wantErr(t, err, CheckEvidence, "context canceled")
	})
}

type validUntil struct {
	attest.Verifier
	t time.Time
}

func (v validUntil) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	c, err := v.Verifier.Verify(ctx, ev, now)
	if c != nil {
		c.ValidUntil = v.t
	}
	return c, err
}

type failing struct{}

func (failing) Verify(context.Context, *attest.Evidence, time.Time) (*attest.Claims, error) {
	return nil, errors.New("evidence: broken")
}

func TestVerifyPeerConcurrent(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t, func(c *Config) { c.CacheEntries = 4 })
	var chains [][]*x509.Certificate
	for i := range 8 {
		chains = append(chains, chainOf(t, f.cert(t, fmt.Sprintf("col-%d", i), "collaborator", mrGood, false)))
	}
	errs := make(chan error, 64)
	for g := range 8 {
		go func() {
			for i := range 8 {
				ch := chains[(g+i)%len(chains)]
				p, err := v.VerifyPeer(context.Background(), ch, f.now)
				if err == nil && p.Identity.Name != ch[1].Subject.CommonName {
					err = fmt.Errorf("peer %q for certificate of %q", p.Identity.Name, ch[1].Subject.CommonName)
				}
				errs <- err
			}
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Peer: "col-2", Check: CheckPolicy, Msg: "x"}, `peer "col-2": x (policy)`},
		{Error{Claimed: "col-3", Check: CheckIdentity, Msg: "certificate revoked"}, `peer "col-3" (unverified): certificate revoked (identity)`},
		{Error{Check: CheckPolicy, Msg: "multi\nline"}, `peer: multi line (policy)`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	wrapped := fmt.Errorf("outer: %w", &Error{Check: CheckBinding})
	if CheckOf(wrapped) != CheckBinding || CheckOf(errors.New("x")) != "" {
		t.Error("CheckOf")
	}
}

// lyingVerifier returns claims whose report data is not the quote's.
type lyingVerifier struct{ attest.Verifier }

func (l lyingVerifier) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	c, err := l.Verifier.Verify(ctx, ev, now)
	if c != nil {
		c.ReportData = make([]byte, 64)
	}
	return c, err
}

// The binding checked on the unverified quote is checked again on the
// verified claims (policy.ReportData).
func TestVerifyPeerBindingOnVerifiedClaims(t *testing.T) {
	f := newFixture(t)
	f.ev.Verifier = lyingVerifier{f.ev.Verifier}
	v := f.verifier(t)
	_, err := v.VerifyPeer(context.Background(), chainOf(t, f.cert(t, "col-1", "collaborator", mrGood, false)), f.now)
	wantErr(t, err, CheckPolicy, `peer "col-1": role collaborator: report data 0000`, "does not match expected")
}
