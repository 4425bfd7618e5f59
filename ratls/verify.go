package ratls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
)

// Check names a verification step; every refusal names one.
type Check string

const (
	CheckChain     Check = "chain"       // no certificate presented
	CheckParse     Check = "parse"       // leaf and its evidence extensions
	CheckBinding   Check = "key-binding" // evidence report data binds the leaf's key
	CheckSignature Check = "signature"   // leaf signed by itself or its parent
	CheckValidity  Check = "validity"    // leaf NotBefore ≤ now ≤ NotAfter
	CheckIdentity  Check = "identity"    // IdentityVerifier (chain to federation root, revocation, membership)
	CheckEvidence  Check = "evidence"    // attest.Verifier
	CheckPolicy    Check = "policy"      // attest/policy decision for the role
	// CheckProofOfPossession is crypto/tls's CertificateVerify: the peer
	// holds the leaf's private key.
	CheckProofOfPossession Check = "proof-of-possession"
	// CheckHandshake is any other TLS handshake failure (including the
	// peer refusing our certificate).
	CheckHandshake Check = "handshake"
)

// Error is a refusal: one line naming the peer and the failed check, e.g.
//
//	peer "col-1": evidence binds key 3fa2c4d1…, not the certificate's key 91bc0e77… (key-binding)
//
// Peer is a verified name (from the IdentityVerifier) or the configured
// expected name; a name only claimed by the unverified certificate is
// shown as such.
type Error struct {
	Peer    string // verified or configured name; "" when unknown
	Claimed string // unverified name from the certificate, when Peer is ""
	Check   Check
	Msg     string
	Err     error // underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("peer")
	switch {
	case e.Peer != "":
		fmt.Fprintf(&b, " %q", e.Peer)
	case e.Claimed != "":
		fmt.Fprintf(&b, " %q (unverified)", e.Claimed)
	}
	fmt.Fprintf(&b, ": %s (%s)", oneLine(e.Msg), e.Check)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// CheckOf returns the check named by err (an *Error in its chain), or "".
func CheckOf(err error) Check {
	var e *Error
	if errors.As(err, &e) {
		return e.Check
	}
	return ""
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// short renders the first bytes of b as hex followed by an ellipsis.
func short(b []byte) string {
	if len(b) > 4 {
		return hex.EncodeToString(b[:4]) + "…"
	}
	return hex.EncodeToString(b)
}

// Peer is a verified peer.
type Peer struct {
	// Identity is the federation identity (nil in attestation-only mode).
	Identity *Identity
	// Claims are the verified evidence claims (a copy; the caller may keep
	// it).
	Claims *attest.Claims
	// Decision is the policy decision (accepted) for the peer's role.
	Decision policy.Decision
	// Simulated is true when the evidence was simulated (attest/sim).
	Simulated bool
	// LeafKeyHash is SHA-256 of the leaf's DER SubjectPublicKeyInfo.
	LeafKeyHash [32]byte
	// Format is the extension whose quote was verified.
	Format Format
	// Cached is true when the evidence verification result came from the
	// verifier's cache (identity and policy were still checked).
	Cached bool
}

// Name is the peer's verified name: the identity's, or the configured
// expected name in attestation-only mode ("" if none).
func (p *Peer) Name() string {
	if p.Identity != nil {
		return p.Identity.Name
	}
	return p.Decision.Peer
}

// Role is the role the peer was accepted for.
func (p *Peer) Role() string { return p.Decision.Role }

// Config configures a Verifier.
type Config struct {
	// Evidence verifies the quote (required), e.g. verifier.New(...).
	Evidence attest.Verifier
	// Policy decides on the claims (required).
	Policy *policy.Policy
	// Identity, when set, makes the identity check required (PKI mode): the
	// leaf must be signed by an identity certificate (chain[1]) that the
	// IdentityVerifier accepts, and the role comes from the identity.
	Identity IdentityVerifier
	// Role is the role peers are evaluated for in attestation-only mode
	// (required when Identity is nil, ignored otherwise).
	Role string
	// PeerName names peers in attestation-only mode (messages, Peer.Name).
	PeerName string
	// CacheEntries bounds the verified-evidence cache (default 1024;
	// negative disables it).
	CacheEntries int
	// CacheTTL bounds how long one verification result is reused (default
	// DefaultValidity); entries also end at the leaf's NotAfter and the
	// claims' ValidUntil.
	CacheTTL time.Duration
	// Logger receives policy warnings (default slog.Default()).
	Logger *slog.Logger
}

// Verifier verifies RA-TLS peers. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	cache *evidenceCache
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Evidence == nil {
		return nil, errors.New("ratls: verifier: no evidence verifier configured")
	}
	if cfg.Policy == nil {
		return nil, errors.New("ratls: verifier: no policy configured")
	}
	if cfg.Identity == nil && cfg.Role == "" {
		return nil, errors.New("ratls: verifier: attestation-only mode (no identity verifier) needs a Role")
	}
	if cfg.Identity == nil {
		if _, ok := cfg.Policy.Roles[cfg.Role]; !ok {
			return nil, fmt.Errorf("ratls: verifier: role %q not in policy", cfg.Role)
		}
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultValidity
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v := &Verifier{cfg: cfg}
	switch {
	case cfg.CacheEntries == 0:
		v.cache = newEvidenceCache(1024)
	case cfg.CacheEntries > 0:
		v.cache = newEvidenceCache(cfg.CacheEntries)
	}
	return v, nil
}

// PKI reports whether the verifier requires a federation identity.
func (v *Verifier) PKI() bool { return v.cfg.Identity != nil }

// verified is what a successful parse, binding, signature and evidence
// check of one leaf established; it is what the cache holds.
type verified struct {
	format     Format
	keyHash    [32]byte
	reportData []byte // expected 64-byte report data
	claims     *attest.Claims
	signer     [32]byte // SHA-256 of the DER of the certificate whose key signed the leaf
	expires    time.Time
}

// VerifyPeer verifies a peer's certificate chain (chain[0] the RA-TLS leaf,
// chain[1] the identity certificate in PKI mode) at time now:
//
//  1. parse the leaf's evidence extension(s);
//  2. key binding: the evidence's report data binds the leaf's public key
//     (checked before any evidence verification);
//  3. the leaf's signature (by itself, or by chain[1]'s key) and validity;
//  4. identity (PKI mode): the IdentityVerifier, at every call;
//  5. evidence: the attest.Verifier — or the cached result for this exact
//     leaf (SHA-256 of its DER), kept at most until the leaf expires, the
//     claims' ValidUntil, or CacheTTL;
//  6. policy for the role, at every call, including that the verified
//     claims' report data is the binding checked in step 2.
//
// It does not (cannot) check that the peer holds the leaf's private key:
// that is the TLS handshake's CertificateVerify, which the credentials in
// this package always leave to crypto/tls.
func (v *Verifier) VerifyPeer(ctx context.Context, chain []*x509.Certificate, now time.Time) (*Peer, error) {
	name := ""
	if v.cfg.Identity == nil {
		name = v.cfg.PeerName
	}
	if len(chain) == 0 || chain[0] == nil {
		return nil, &Error{Peer: name, Check: CheckChain, Msg: "no certificate presented"}
	}
	leaf := chain[0]
	var parent *x509.Certificate
	if len(chain) > 1 {
		parent = chain[1]
		if parent == nil {
			return nil, &Error{Peer: name, Check: CheckChain, Msg: "nil certificate in chain"}
		}
	}
	claimed := claimedName(chain)
	fail := func(check Check, err error, format string, args ...any) error {
		return &Error{Peer: name, Claimed: claimed, Check: check, Msg: fmt.Sprintf(format, args...), Err: err}
	}
	if now.IsZero() {
		return nil, fail(CheckValidity, nil, "verification time is zero")
	}

	leafHash := sha256.Sum256(leaf.Raw)
	signer := leafHash
	if parent != nil {
		signer = sha256.Sum256(parent.Raw)
	}
	ent := v.cache.get(leafHash, now)
	var quote []byte
	if ent == nil {
		ev, err := ParseEvidence(leaf)
		if err != nil {
			return nil, fail(CheckParse, err, "%s", strings.TrimPrefix(err.Error(), "ratls: "))
		}
		keyHash, err := leafKeyHash(leaf)
		if err != nil {
			return nil, fail(CheckParse, err, "%v", err)
		}
		rd, err := bind(ev, leaf.RawSubjectPublicKeyInfo, keyHash)
		if err != nil {
			// Name the peer if its identity holds, for the message only.
			if v.cfg.Identity != nil && parent != nil {
				if id, ierr := v.cfg.Identity.VerifyIdentity(chain, now); ierr == nil && id != nil {
					name, claimed = id.Name, ""
				}
			}
			return nil, fail(CheckBinding, err, "%v", err)
		}
		if err := checkSignature(leaf, parent); err != nil {
			return nil, fail(CheckSignature, err, "%v", err)
		}
		ent = &verified{format: ev.Format(), keyHash: keyHash, reportData: rd, signer: signer}
		quote = ev.Quote()
	} else if ent.signer != signer {
		// The same leaf under another parent: check that signature.
		if err := checkSignature(leaf, parent); err != nil {
			return nil, fail(CheckSignature, err, "%v", err)
		}
	}
	return v.finish(ctx, chain, now, name, claimed, leafHash, ent, quote)
}

// finish runs validity, identity, evidence (unless ent.claims is cached)
// and policy.
func (v *Verifier) finish(ctx context.Context, chain []*x509.Certificate, now time.Time, name, claimed string,
	leafHash [32]byte, ent *verified, quote []byte) (*Peer, error) {
	leaf := chain[0]
	fail := func(check Check, err error, format string, args ...any) error {
		return &Error{Peer: name, Claimed: claimed, Check: check, Msg: fmt.Sprintf(format, args...), Err: err}
	}
	if now.Before(leaf.NotBefore) {
		return nil, fail(CheckValidity, nil, "certificate not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return nil, fail(CheckValidity, nil, "certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}

	var id *Identity
	role := v.cfg.Role
	if v.cfg.Identity != nil {
		if len(chain) < 2 {
			return nil, fail(CheckIdentity, nil, "no identity certificate: the RA-TLS certificate is self-signed but an identity is required")
		}
		got, err := v.cfg.Identity.VerifyIdentity(chain, now)
		if err != nil {
			// Identity verifiers may name the peer themselves (pki:
			// `peer "col-3": certificate revoked`); name it once.
			msg := err.Error()
			if claimed != "" {
				msg = strings.TrimPrefix(msg, fmt.Sprintf("peer %q: ", claimed))
			}
			return nil, fail(CheckIdentity, err, "%s", strings.TrimPrefix(msg, "peer identity: "))
		}
		if got == nil {
			return nil, fail(CheckIdentity, nil, "identity verifier returned no identity")
		}
		if got.Name == "" || got.Role == "" {
			return nil, fail(CheckIdentity, nil, "identity has no name or role")
		}
		idc := *got
		id, name, claimed, role = &idc, got.Name, "", got.Role
	}

	cached := ent.claims != nil
	if !cached {
		kind, _, err := quoteReportData(quote) // parsed once already by bind
		if err != nil {
			return nil, fail(CheckParse, err, "%v", err)
		}
		claims, err := v.cfg.Evidence.Verify(ctx, &attest.Evidence{TEE: kind.TEE, Simulated: kind.Simulated, Quote: quote}, now)
		if err != nil {
			return nil, fail(CheckEvidence, err, "%v", err)
		}
		if claims == nil {
			return nil, fail(CheckEvidence, nil, "evidence verifier returned no claims")
		}
		ent.claims = cloneClaims(claims)
		ent.expires = leaf.NotAfter
		if !claims.ValidUntil.IsZero() && claims.ValidUntil.Before(ent.expires) {
			ent.expires = claims.ValidUntil
		}
		if ttl := now.Add(v.cfg.CacheTTL); ttl.Before(ent.expires) {
			ent.expires = ttl
		}
		v.cache.put(leafHash, ent)
	}

	d := v.cfg.Policy.Evaluate(role, ent.claims, policy.Peer(name), policy.ReportData(ent.reportData),
		policy.At(now), policy.Logger(v.cfg.Logger), policy.Context(ctx))
	if !d.Accepted {
		reasons := d.Reasons
		if len(reasons) == 0 {
			reasons = []string{"refused"}
		}
		return nil, fail(CheckPolicy, d.Err(), "role %s: %s", role, strings.Join(reasons, "; "))
	}
	return &Peer{
		Identity: id, Claims: cloneClaims(ent.claims), Decision: d, Simulated: ent.claims.Simulated,
		LeafKeyHash: ent.keyHash, Format: ent.format, Cached: cached,
	}, nil
}

// claimedName is the unverified name a chain claims: the identity
// certificate's common name (a self-signed leaf's name means nothing).
func claimedName(chain []*x509.Certificate) string {
	if len(chain) > 1 && chain[1] != nil {
		return chain[1].Subject.CommonName
	}
	return ""
}

// leafKeyHash checks the leaf key type (ECDSA P-256 or P-384, as Gramine
// accepts) and returns SHA-256 of its DER SubjectPublicKeyInfo.
func leafKeyHash(leaf *x509.Certificate) ([32]byte, error) {
	k, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return [32]byte{}, fmt.Errorf("leaf key is %s, want ECDSA P-256 or P-384", leaf.PublicKeyAlgorithm)
	}
	if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
		return [32]byte{}, fmt.Errorf("leaf key curve %s, want P-256 or P-384", k.Curve.Params().Name)
	}
	return sha256.Sum256(leaf.RawSubjectPublicKeyInfo), nil
}

// bind checks that the evidence binds spki (whose SHA-256 is keyHash) and
// returns the report data the verified quote must carry (for the TCG
// extension if present, else the legacy one). Every extension present is
// checked.
func bind(ev *Evidence, spki []byte, keyHash [32]byte) ([]byte, error) {
	var want []byte
	if ev.Legacy != nil {
		_, rd, err := quoteReportData(ev.Legacy)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", extName(FormatLegacy), err)
		}
		exp := make([]byte, 64)
		copy(exp, keyHash[:])
		if !bytes.Equal(rd[:32], exp[:32]) {
			return nil, fmt.Errorf("evidence binds key %s, not the certificate's key %s", short(rd[:32]), short(keyHash[:]))
		}
		if !bytes.Equal(rd, exp) {
			return nil, fmt.Errorf("%s: report data bytes 32..63 are %s, want zero", extName(FormatLegacy), short(rd[32:]))
		}
		want = exp
	}
	if te := ev.TCG; te != nil {
		_, rd, err := quoteReportData(te.Quote)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", extName(FormatTCG), err)
		}
		exp := make([]byte, 64)
		h := sha256.Sum256(te.Claims)
		copy(exp, h[:])
		if !bytes.Equal(rd, exp) {
			return nil, fmt.Errorf("%s: quote report data %s is not SHA-256 of the claims %s", extName(FormatTCG), short(rd), short(h[:]))
		}
		var got []byte
		switch te.PubKeyHashAlg {
		case HashSHA256:
			got = keyHash[:]
		case HashSHA384:
			s := sha512.Sum384(spki)
			got = s[:]
		case HashSHA512:
			s := sha512.Sum512(spki)
			got = s[:]
		}
		if !bytes.Equal(te.PubKeyHash, got) {
			return nil, fmt.Errorf("evidence binds key %s, not the certificate's key %s", short(te.PubKeyHash), short(got))
		}
		want = exp
	}
	return want, nil
}

// checkSignature checks the leaf's signature: by its own key when parent is
// nil (self-signed; issuer must equal subject), else by parent's key (the
// leaf's issuer must be the parent's subject). The parent need not be a CA:
// in teeml an identity certificate's key signs its holder's RA-TLS leaves;
// the IdentityVerifier judges the identity certificate itself.
func checkSignature(leaf, parent *x509.Certificate) error {
	if parent == nil {
		if !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
			return errors.New("single certificate is not self-issued (issuer differs from subject)")
		}
		if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
			return fmt.Errorf("bad self-signature: %w", err)
		}
		return nil
	}
	if !bytes.Equal(leaf.RawIssuer, parent.RawSubject) {
		return errors.New("leaf issuer is not the subject of the next certificate")
	}
	if err := parent.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		return fmt.Errorf("leaf not signed by the next certificate's key: %w", err)
	}
	return nil
}

func cloneClaims(c *attest.Claims) *attest.Claims {
	out := *c
	cl := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		return append([]byte(nil), b...)
	}
	out.MREnclave, out.MRSigner, out.Attributes = cl(c.MREnclave), cl(c.MRSigner), cl(c.Attributes)
	out.MRTD, out.MRConfigID, out.MROwner = cl(c.MRTD), cl(c.MRConfigID), cl(c.MROwner)
	out.TDAttributes, out.XFAM = cl(c.TDAttributes), cl(c.XFAM)
	for i := range c.RTMR {
		out.RTMR[i] = cl(c.RTMR[i])
	}
	out.Measurement, out.HostData, out.ReportData = cl(c.Measurement), cl(c.HostData), cl(c.ReportData)
	if c.AdvisoryIDs != nil {
		out.AdvisoryIDs = append([]string(nil), c.AdvisoryIDs...)
	}
	return &out
}
