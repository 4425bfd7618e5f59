// Package dcap verifies Intel DCAP ECDSA quotes — SGX quotes (v3) and TDX
// quotes (v4, v5) — offline and in pure Go, against collateral (TCB Info,
// QE Identity, CRLs) anchored in the pinned Intel SGX Root CA.
//
// It is the "verify" stage of teeml's parse (attest/dcap/abi,
// attest/dcap/collateral) → verify → validate (attest/policy) flow.
// Verification follows Intel's Quote Verification Library:
//
//  1. PCK certificate chain from the quote (certification data type 5),
//     ending in the pinned root, valid at now;
//  2. Root CA CRL and PCK CRL: signatures, validity window, revocation;
//  3. QE report signature by the PCK key;
//  4. QE report data binds the attestation key and QE authentication data;
//  5. quote signature by the attestation key over header ‖ body;
//  6. TCB Info and QE Identity signatures and validity windows;
//  7. FMSPC and PCE-ID of the PCK certificate match TCB Info;
//  8. the QE report matches the QE Identity; QE TCB status;
//  9. platform TCB level (and for TDX the TDX module identity), statuses
//     converged as Intel's QVL does.
//
// Every signature that covers per-quote data (steps 3–5) is checked on
// every call. Results that depend only on bytes — parsed and signature-checked
// certificate chains, CRLs, TCB Info and QE Identity — are cached keyed by
// the SHA-256 of those bytes; validity windows and revocation are evaluated
// again at every call.
package dcap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/internal/rawsig"
	"github.com/teeml/teeml/attest/dcap/pckcert"
)

// Options configure a Verifier.
type Options struct {
	// Root is the trust anchor every chain must end in, compared byte for
	// byte. Nil means the pinned Intel SGX Root CA; tests may substitute
	// their own.
	Root *x509.Certificate
	// Source supplies collateral when Evidence.Collateral is empty (for
	// example a *collateral.Cache, or a PCS client).
	Source collateral.Source
	// CacheEntries bounds each of the verifier's caches of checked
	// collateral and PCK chains (default 64).
	CacheEntries int
}

// Verifier verifies DCAP quotes. It is safe for concurrent use.
type Verifier struct {
	tee  attest.TEE // "" accepts SGX and TDX
	root *x509.Certificate
	src  collateral.Source

	pcks    *lru[[32]byte, *trustedPCK]
	cols    *lru[[32]byte, *trustedCollateral]
	colJSON *lru[[32]byte, *trustedCollateral]
	chains  *lru[[32]byte, chainResult]
	crls    *lru[[32]byte, crlResult]
}

type chainResult struct {
	certs []*x509.Certificate
	err   error
}

type crlResult struct {
	crl *verifiedCRL
	err error
}

var _ attest.Verifier = (*Verifier)(nil)

// New returns a verifier for quotes of the given TEE (attest.SGX or
// attest.TDX; "" accepts both).
func New(tee attest.TEE, opts *Options) (*Verifier, error) {
	if tee != "" && tee != attest.SGX && tee != attest.TDX {
		return nil, fmt.Errorf("dcap: unsupported TEE %q", tee)
	}
	if opts == nil {
		opts = &Options{}
	}
	root := opts.Root
	if root == nil {
		var err error
		if root, err = IntelRootCA(); err != nil {
			return nil, err
		}
	}
	n := opts.CacheEntries
	if n <= 0 {
		n = 64
	}
	return &Verifier{
		tee: tee, root: root, src: opts.Source,
		pcks: newLRU[[32]byte, *trustedPCK](n),
		cols: newLRU[[32]byte, *trustedCollateral](n), colJSON: newLRU[[32]byte, *trustedCollateral](n),
		chains: newLRU[[32]byte, chainResult](n), crls: newLRU[[32]byte, crlResult](n),
	}, nil
}

// Result is the outcome of a successful verification. Quote and Claims
// belong to the caller; PCK, TCBInfo and QEIdentity are shared with the
// verifier's cache and must be treated as read-only.
type Result struct {
	Quote      *abi.Quote
	PCK        *pckcert.Extensions
	PCKCA      string // collateral.CAProcessor or collateral.CAPlatform
	TCBInfo    *collateral.TCBInfo
	QEIdentity *collateral.QEIdentity
	// PlatformStatus is the matched TCB Info level's status (for TDX
	// converged with the TDX module status), before QE convergence.
	PlatformStatus      attest.TCBStatus
	PlatformAdvisoryIDs []string
	// TDXModuleStatus is set when a TDX module identity applied.
	TDXModuleStatus      attest.TCBStatus
	TDXModuleAdvisoryIDs []string
	QEStatus             attest.TCBStatus
	QEAdvisoryIDs        []string
	// TCBStatus is the final status; AdvisoryIDs the union of the
	// platform, TDX module and QE advisories.
	TCBStatus   attest.TCBStatus
	AdvisoryIDs []string
	// ValidUntil is the earliest expiry among the certificates, CRLs, TCB
	// Info and QE Identity used.
	ValidUntil time.Time
	Claims     *attest.Claims
}

// pckCertificationData returns certification data of type 5 (the PCK
// chain) for the quote's certification data cd: cd itself, or for type 4
// (the PCK leaf alone) the leaf followed by the PCK CA and root of the
// collateral's PCK CRL issuer chain (the CA that issues the PCK
// certificates is the one that signs their CRL; the chain is then checked
// as any type 5 chain is, to the pinned root). Types 1 to 3 identify the
// platform (PPID, CPUSVN, PCESVN, PCEID) but carry no certificate: they are
// refused naming what is missing, as is type 4 without collateral.
func pckCertificationData(cd *abi.CertificationData, tc *trustedCollateral) (*abi.CertificationData, error) {
	switch cd.Type {
	case abi.CertDataPCKChain:
		return cd, nil
	case abi.CertDataPPIDCleartext, abi.CertDataPPIDRSA2048, abi.CertDataPPIDRSA3072:
		id, err := abi.ParsePCKCertID(cd)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: certification data %s: fetch the PCK certificate for this platform from Intel PCS (GET /sgx/certification/v4/pckcert) and have the quote generated with certification data type 5, or verify with a PCCS that does", ErrPCKCertMissing, id)
	case abi.CertDataPCKLeaf:
		der, err := abi.PCKLeafDER(cd)
		if err != nil {
			return nil, err
		}
		if tc == nil {
			return nil, fmt.Errorf("%w: certification data type 4 (PCK leaf certificate) needs the PCK CA from collateral (pck_crl_issuer_chain): give collateral", ErrPCKCertMissing)
		}
		if tc.pckCRLErr != nil {
			return nil, fmt.Errorf("certification data type 4 (PCK leaf certificate): the PCK CA comes from the collateral's PCK CRL issuer chain: %w", tc.pckCRLErr)
		}
		if len(tc.pckCRLChain) != 2 {
			return nil, fmt.Errorf("certification data type 4 (PCK leaf certificate): PCK CRL issuer chain has %d certificates, want 2 (PCK CA, root)", len(tc.pckCRLChain))
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certification data type 4 (PCK leaf certificate): %w", err)
		}
		var b strings.Builder
		for _, c := range []*x509.Certificate{leaf, tc.pckCRLChain[0], tc.pckCRLChain[1]} {
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		return &abi.CertificationData{Type: abi.CertDataPCKChain, Data: []byte(b.String())}, nil
	}
	return nil, fmt.Errorf("certification data type %d (%s) inside the QE report certification data: want 5 (PCK certificate chain) or 4 (PCK leaf certificate)", cd.Type, abi.CertDataName(cd.Type))
}

// trustedPCK is a PCK chain from a quote's certification data whose
// signatures have been checked (leaf ← intermediate ← pinned root).
type trustedPCK struct {
	certs   []*x509.Certificate // leaf, intermediate, root
	leafKey *ecdsa.PublicKey
	ext     *pckcert.Extensions
	ca      string
	err     error
}

func (v *Verifier) pckChain(cd *abi.CertificationData) *trustedPCK {
	key := sha256.Sum256(cd.Data)
	if t, ok := v.pcks.get(key); ok {
		return t
	}
	t := v.newTrustedPCK(cd)
	v.pcks.put(key, t)
	return t
}

func (v *Verifier) newTrustedPCK(cd *abi.CertificationData) *trustedPCK {
	fail := func(err error) *trustedPCK { return &trustedPCK{err: err} }
	blocks, err := abi.PCKChainPEM(cd)
	if err != nil {
		return fail(err)
	}
	if len(blocks) != 3 {
		return fail(fmt.Errorf("PCK chain has %d certificates, want 3 (PCK, CA, root)", len(blocks)))
	}
	certs := make([]*x509.Certificate, 3)
	for i, b := range blocks {
		if certs[i], err = x509.ParseCertificate(b.Bytes); err != nil {
			return fail(fmt.Errorf("certificate %d: %w", i, err))
		}
	}
	leaf, inter, root := certs[0], certs[1], certs[2]
	if err := v.checkRoot(root); err != nil {
		return fail(err)
	}
	if err := checkIssued(inter, root); err != nil {
		return fail(err)
	}
	if err := checkIssued(leaf, inter); err != nil {
		return fail(err)
	}
	if !strings.Contains(cn(leaf), "SGX PCK Certificate") {
		return fail(fmt.Errorf("leaf %q is not an SGX PCK Certificate", cn(leaf)))
	}
	ca, err := caType(inter)
	if err != nil {
		return fail(err)
	}
	key, err := checkLeaf(leaf)
	if err != nil {
		return fail(err)
	}
	ext, err := pckcert.ParseExtensions(leaf)
	if err != nil {
		return fail(err)
	}
	return &trustedPCK{certs: certs, leafKey: key, ext: ext, ca: ca}
}

// trustedCollateral holds the time-independent checks of one collateral
// bundle; each part keeps its own error so that failures are reported at
// their step.
type trustedCollateral struct {
	rootCRL    *verifiedCRL
	rootCRLErr error

	pckCRL      *verifiedCRL
	pckCRLChain []*x509.Certificate
	pckCRLErr   error

	tcbInfo       *collateral.TCBInfo
	tcbLevels     []collateral.TCBLevel // canonical order
	tcbChain      []*x509.Certificate
	tcbInfoErr    error
	qeIdentity    *collateral.QEIdentity
	qeChain       []*x509.Certificate
	qeIdentityErr error
}

func (v *Verifier) trustedCollateralFor(col *collateral.Collateral) *trustedCollateral {
	key := col.Digest()
	if t, ok := v.cols.get(key); ok {
		return t
	}
	t := v.newTrustedCollateral(col)
	v.cols.put(key, t)
	return t
}

func (v *Verifier) trustedCollateralJSON(data []byte) (*trustedCollateral, error) {
	key := sha256.Sum256(data)
	if t, ok := v.colJSON.get(key); ok {
		return t, nil
	}
	col, err := collateral.Parse(data)
	if err != nil {
		return nil, err
	}
	t := v.trustedCollateralFor(col)
	v.colJSON.put(key, t)
	return t, nil
}

// signerChain parses a two-certificate issuer chain (signer, pinned root)
// and checks its signatures. Results are cached by the chain's hash.
func (v *Verifier) signerChain(pemChain string) ([]*x509.Certificate, error) {
	key := sha256.Sum256([]byte(pemChain))
	if r, ok := v.chains.get(key); ok {
		return r.certs, r.err
	}
	certs, err := v.newSignerChain(pemChain)
	v.chains.put(key, chainResult{certs, err})
	return certs, err
}

// crl parses der and checks that issuer signed it. Results are cached by
// the hash of the CRL and the issuer.
func (v *Verifier) crl(der []byte, issuer *x509.Certificate) (*verifiedCRL, error) {
	h := sha256.New()
	h.Write(issuer.Raw)
	h.Write(der)
	var key [32]byte
	h.Sum(key[:0])
	if r, ok := v.crls.get(key); ok {
		return r.crl, r.err
	}
	c, err := newVerifiedCRL(der, issuer)
	v.crls.put(key, crlResult{c, err})
	return c, err
}

func (v *Verifier) newSignerChain(pemChain string) ([]*x509.Certificate, error) {
	certs, err := collateral.ParseCertChain(pemChain)
	if err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	if len(certs) != 2 {
		return nil, fmt.Errorf("issuer chain has %d certificates, want 2 (signer, root)", len(certs))
	}
	if err := v.checkRoot(certs[1]); err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	if err := checkIssued(certs[0], certs[1]); err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	return certs, nil
}

func (v *Verifier) newTrustedCollateral(col *collateral.Collateral) *trustedCollateral {
	t := &trustedCollateral{}
	t.rootCRL, t.rootCRLErr = v.crl(col.RootCACRL, v.root)

	// PCK CRL, signed by the PCK Processor/Platform CA of its issuer chain.
	func() {
		chain, err := v.signerChain(col.PCKCRLIssuerChain)
		if err != nil {
			t.pckCRLErr = err
			return
		}
		if _, err := caType(chain[0]); err != nil {
			t.pckCRLErr = fmt.Errorf("issuer chain: %w", err)
			return
		}
		if t.rootCRL != nil {
			if err := t.rootCRL.checkNotRevoked(chain[0]); err != nil {
				t.pckCRLErr = fmt.Errorf("issuer chain: %w", err)
				return
			}
		}
		t.pckCRLChain = chain
		t.pckCRL, t.pckCRLErr = v.crl(col.PCKCRL, chain[0])
	}()

	// TCB Info and QE Identity, signed by the TCB Signing certificate.
	signed := func(what, pemChain string, verify func(*ecdsa.PublicKey) error) ([]*x509.Certificate, error) {
		chain, err := v.signerChain(pemChain)
		if err != nil {
			return nil, err
		}
		if !strings.Contains(cn(chain[0]), "TCB Signing") {
			return nil, fmt.Errorf("signer %q is not an Intel SGX TCB Signing certificate", cn(chain[0]))
		}
		if t.rootCRL != nil {
			if err := t.rootCRL.checkNotRevoked(chain[0]); err != nil {
				return nil, err
			}
		}
		key, err := checkLeaf(chain[0])
		if err != nil {
			return nil, err
		}
		if err := verify(key); err != nil {
			return nil, fmt.Errorf("%s signature: %w", what, err)
		}
		return chain, nil
	}
	if t.tcbChain, t.tcbInfoErr = signed("tcb info", col.TCBInfoIssuerChain, col.VerifyTCBInfoSignature); t.tcbInfoErr == nil {
		if t.tcbInfo, t.tcbInfoErr = collateral.ParseTCBInfo(col.TCBInfo); t.tcbInfoErr == nil {
			t.tcbLevels = canonicalLevels(t.tcbInfo)
		}
	}
	if t.qeChain, t.qeIdentityErr = signed("qe identity", col.QEIdentityIssuerChain, col.VerifyQEIdentitySignature); t.qeIdentityErr == nil {
		t.qeIdentity, t.qeIdentityErr = collateral.ParseQEIdentity(col.QEIdentity)
	}
	return t
}

// Verify implements attest.Verifier. ev.Quote is the raw quote;
// ev.Collateral the collateral JSON (collateral.Parse) or, when empty, the
// collateral comes from Options.Source.
func (v *Verifier) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	if ev == nil {
		return nil, stepf(StepParseQuote, "no evidence")
	}
	if ev.Simulated {
		return nil, stepf(StepParseQuote, "simulated evidence is not a DCAP quote")
	}
	if v.tee != "" && ev.TEE != "" && ev.TEE != v.tee {
		return nil, stepf(StepQuoteHeader, "evidence TEE %q, verifier expects %q", ev.TEE, v.tee)
	}
	var tc *trustedCollateral
	if len(ev.Collateral) > 0 {
		var err error
		if tc, err = v.trustedCollateralJSON(ev.Collateral); err != nil {
			return nil, stepErr(StepCollateral, err)
		}
	}
	res, err := v.verify(ctx, ev.Quote, tc, now)
	if err != nil {
		return nil, err
	}
	if ev.TEE != "" && res.Claims.TEE != ev.TEE {
		return nil, stepf(StepQuoteHeader, "evidence claims TEE %q but the quote is %q", ev.TEE, res.Claims.TEE)
	}
	return res.Claims, nil
}

// VerifyQuote verifies a raw quote against col (nil: from Options.Source)
// at time now.
func (v *Verifier) VerifyQuote(ctx context.Context, quote []byte, col *collateral.Collateral, now time.Time) (*Result, error) {
	var tc *trustedCollateral
	if col != nil {
		tc = v.trustedCollateralFor(col)
	}
	return v.verify(ctx, quote, tc, now)
}

// VerifyQuote verifies quote against col at now with the pinned Intel SGX
// Root CA, accepting SGX and TDX quotes.
func VerifyQuote(quote []byte, col *collateral.Collateral, now time.Time) (*Result, error) {
	v, err := New("", nil)
	if err != nil {
		return nil, err
	}
	if col == nil {
		return nil, stepf(StepCollateral, "no collateral")
	}
	return v.VerifyQuote(context.Background(), quote, col, now)
}

func teeOf(h *abi.Header) attest.TEE {
	if h.TEEType == abi.TEETypeTDX {
		return attest.TDX
	}
	return attest.SGX
}

func (v *Verifier) verify(ctx context.Context, raw []byte, tc *trustedCollateral, now time.Time) (*Result, error) {
	q, tee, err := v.parseQuote(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	qeData := q.SignatureData.QEReportCertificationData

	// The PCK chain identifies the platform (FMSPC, CA) and therefore the
	// collateral when none was given.
	cd, err := pckCertificationData(qeData.CertificationData, tc)
	if err != nil {
		return nil, stepErr(StepPCKChain, err)
	}
	pck := v.pckChain(cd)
	if pck.err != nil {
		return nil, stepErr(StepPCKChain, pck.err)
	}
	if tc == nil {
		if tc, err = v.sourceCollateral(ctx, tee, pck); err != nil {
			return nil, err
		}
	}
	res := &Result{Quote: q, PCK: pck.ext, PCKCA: pck.ca}
	until := &res.ValidUntil

	// Steps 1 and 2: PCK chain validity at now; CRLs.
	if err := checkPCKRevocation(pck.certs, tc, now, until); err != nil {
		return nil, err
	}
	// Steps 3 to 5: QE report, its binding of the attestation key, quote.
	if err := checkQuoteSignatures(q, pck.leafKey); err != nil {
		return nil, err
	}
	// Step 6: TCB Info and QE Identity.
	ti, qi, err := checkTCBCollateral(tc, now, until)
	if err != nil {
		return nil, err
	}
	res.TCBInfo, res.QEIdentity = ti, qi
	// Step 7: the TCB Info is for this TEE and platform.
	if err := checkTCBInfoFor(ti, tee, pck.ext); err != nil {
		return nil, err
	}
	// Step 8: QE identity.
	qeLevel, err := matchQEIdentity(qi, tee, qeData.QEReport)
	if err != nil {
		return nil, err
	}
	res.QEStatus, res.QEAdvisoryIDs = attest.TCBStatus(qeLevel.TCBStatus), slices.Clone(qeLevel.AdvisoryIDs)
	// TDX module identity (TDX only); step 9: platform TCB level and
	// final status.
	if err := setTCBStatus(res, tc.tcbLevels, qeLevel); err != nil {
		return nil, err
	}
	res.Claims = claims(q, res)
	return res, nil
}

// parseQuote parses raw and checks its header: the TEE the verifier
// expects, Intel's QE vendor ID.
func (v *Verifier) parseQuote(ctx context.Context, raw []byte, now time.Time) (*abi.Quote, attest.TEE, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", stepErr(StepParseQuote, err)
	}
	if now.IsZero() {
		return nil, "", stepf(StepParseQuote, "verification time is zero")
	}
	q, err := abi.ParseQuote(raw)
	if err != nil {
		return nil, "", stepErr(StepParseQuote, err)
	}
	tee := teeOf(q.Header)
	if v.tee != "" && tee != v.tee {
		return nil, "", stepf(StepQuoteHeader, "quote is %s, verifier expects %s", tee, v.tee)
	}
	if q.Header.QEVendorID != abi.IntelQEVendorID {
		return nil, "", stepf(StepQuoteHeader, "QE vendor ID %x is not Intel's", q.Header.QEVendorID)
	}
	return q, tee, nil
}

// sourceCollateral fetches the collateral for pck's platform from
// Options.Source.
func (v *Verifier) sourceCollateral(ctx context.Context, tee attest.TEE, pck *trustedPCK) (*trustedCollateral, error) {
	if v.src == nil {
		return nil, stepf(StepCollateral, "no collateral in evidence and no collateral source configured")
	}
	key := collateral.Key{TEE: tee, FMSPC: pck.ext.FMSPCHex(), CA: pck.ca}
	col, err := v.src.Collateral(ctx, key)
	if err != nil {
		return nil, stepErr(StepCollateral, fmt.Errorf("collateral for %s: %w", key, err))
	}
	return v.trustedCollateralFor(col), nil
}

// checkPCKRevocation checks the PCK chain (leaf, intermediate, root) is
// valid at now (step 1) and that the root CA and PCK CRLs are current and
// revoke none of it (step 2), lowering until to the earliest expiry.
func checkPCKRevocation(certs []*x509.Certificate, tc *trustedCollateral, now time.Time, until *time.Time) error {
	if err := checkCertsTime(certs, now, until); err != nil {
		return stepErr(StepPCKChain, err)
	}
	leaf, inter, root := certs[0], certs[1], certs[2]

	if tc.rootCRLErr != nil {
		return stepErr(StepRootCACRL, tc.rootCRLErr)
	}
	if err := tc.rootCRL.checkTime("root ca crl", now, until); err != nil {
		return stepErr(StepRootCACRL, err)
	}
	if err := tc.rootCRL.checkNotRevoked(inter); err != nil {
		return stepErr(StepRootCACRL, err)
	}
	if _, ok := tc.rootCRL.revoked[serialKey(root)]; ok {
		return stepf(StepRootCACRL, "%w: root CA listed in its own CRL", ErrRevoked)
	}
	if tc.pckCRLErr != nil {
		return stepErr(StepPCKCRL, tc.pckCRLErr)
	}
	if err := checkCertsTime(tc.pckCRLChain, now, until); err != nil {
		return stepErr(StepPCKCRL, fmt.Errorf("issuer chain: %w", err))
	}
	if err := tc.pckCRL.checkTime("pck crl", now, until); err != nil {
		return stepErr(StepPCKCRL, err)
	}
	if err := tc.pckCRL.checkNotRevoked(leaf); err != nil {
		return stepErr(StepPCKCRL, err)
	}
	return nil
}

// checkQuoteSignatures checks the QE report is signed by the PCK key
// (step 3) and binds the attestation key and QE auth data (step 4), and
// that the attestation key signed the quote (step 5).
func checkQuoteSignatures(q *abi.Quote, pckKey *ecdsa.PublicKey) error {
	qeData := q.SignatureData.QEReportCertificationData
	if err := rawsig.Verify(pckKey, qeData.RawQEReport, qeData.QEReportSignature[:]); err != nil {
		return stepErr(StepQEReportSignature, err)
	}

	qeReport := qeData.QEReport
	h := sha256.New()
	h.Write(q.SignatureData.AttestationKey[:])
	h.Write(qeData.QEAuthData)
	if want := h.Sum(nil); !bytes.Equal(qeReport.ReportData[:32], want) {
		return stepf(StepQEReportData, "QE report data %x is not SHA-256(attestation key ‖ QE auth data) %x",
			qeReport.ReportData[:32], want)
	}
	if [32]byte(qeReport.ReportData[32:]) != ([32]byte{}) {
		return stepf(StepQEReportData, "QE report data bytes 32..63 are not zero")
	}

	attKey, err := rawsig.ParsePublicKey(q.SignatureData.AttestationKey[:])
	if err != nil {
		return stepf(StepQuoteSignature, "attestation key: %w", err)
	}
	if err := rawsig.Verify(attKey, q.SignedData(), q.SignatureData.Signature[:]); err != nil {
		return stepErr(StepQuoteSignature, err)
	}
	return nil
}

// checkTCBCollateral returns the TCB Info and QE Identity once their
// issuer chains and issue windows cover now (step 6), lowering until to
// their next updates.
func checkTCBCollateral(tc *trustedCollateral, now time.Time, until *time.Time) (*collateral.TCBInfo, *collateral.QEIdentity, error) {
	if tc.tcbInfoErr != nil {
		return nil, nil, stepErr(StepTCBInfo, tc.tcbInfoErr)
	}
	ti := tc.tcbInfo
	if err := checkCertsTime(tc.tcbChain, now, until); err != nil {
		return nil, nil, stepErr(StepTCBInfo, fmt.Errorf("issuer chain: %w", err))
	}
	if err := checkWindow("tcb info", ti.IssueDate, ti.NextUpdate, now); err != nil {
		return nil, nil, stepErr(StepTCBInfo, err)
	}
	minTime(until, ti.NextUpdate)
	if tc.qeIdentityErr != nil {
		return nil, nil, stepErr(StepQEIdentity, tc.qeIdentityErr)
	}
	qi := tc.qeIdentity
	if err := checkCertsTime(tc.qeChain, now, until); err != nil {
		return nil, nil, stepErr(StepQEIdentity, fmt.Errorf("issuer chain: %w", err))
	}
	if err := checkWindow("qe identity", qi.IssueDate, qi.NextUpdate, now); err != nil {
		return nil, nil, stepErr(StepQEIdentity, err)
	}
	minTime(until, qi.NextUpdate)
	return ti, qi, nil
}

// collateralIDs returns the TCB Info and QE Identity ids for tee's quotes.
func collateralIDs(tee attest.TEE) (tcbInfoID, qeIdentityID string) {
	if tee == attest.TDX {
		return collateral.TCBInfoIDTDX, collateral.QEIdentityIDTDQE
	}
	return collateral.TCBInfoIDSGX, collateral.QEIdentityIDQE
}

// checkTCBInfoFor checks the TCB Info is for tee and for the PCK
// certificate's platform (step 7).
func checkTCBInfoFor(ti *collateral.TCBInfo, tee attest.TEE, ext *pckcert.Extensions) error {
	wantTCBID, _ := collateralIDs(tee)
	if ti.ID != wantTCBID {
		return stepf(StepFMSPC, "TCB Info id %q does not match %s quote (want %q)", ti.ID, tee, wantTCBID)
	}
	if ti.FMSPC != ext.FMSPC {
		return stepf(StepFMSPC, "PCK certificate FMSPC %s does not match TCB Info fmspc %X", ext.FMSPCHex(), ti.FMSPC)
	}
	if ti.PCEID != ext.PCEID {
		return stepf(StepFMSPC, "PCK certificate PCE-ID %s does not match TCB Info pceId %X", ext.PCEIDHex(), ti.PCEID)
	}
	return nil
}

// matchQEIdentity checks the quoting enclave's report against the QE
// Identity and returns its TCB level (step 8).
func matchQEIdentity(qi *collateral.QEIdentity, tee attest.TEE, qeReport *abi.EnclaveReport) (*collateral.QETCBLevel, error) {
	_, wantQEID := collateralIDs(tee)
	if qi.ID != wantQEID {
		return nil, stepf(StepQEIdentityMatch, "QE Identity id %q does not match %s quote (want %q)", qi.ID, tee, wantQEID)
	}
	if qeReport.MRSigner != qi.MRSigner {
		return nil, stepf(StepQEIdentityMatch, "QE MRSIGNER %x does not match QE Identity mrsigner %x", qeReport.MRSigner, qi.MRSigner)
	}
	if qeReport.ISVProdID != qi.ISVProdID {
		return nil, stepf(StepQEIdentityMatch, "QE ISVPRODID %d does not match QE Identity isvprodid %d", qeReport.ISVProdID, qi.ISVProdID)
	}
	if qeReport.MiscSelect&qi.MiscSelectMask != qi.MiscSelect {
		return nil, stepf(StepQEIdentityMatch, "QE MISCSELECT %08x & mask %08x != %08x", qeReport.MiscSelect, qi.MiscSelectMask, qi.MiscSelect)
	}
	for i := range qeReport.Attributes {
		if qeReport.Attributes[i]&qi.AttributesMask[i] != qi.Attributes[i] {
			return nil, stepf(StepQEIdentityMatch, "QE ATTRIBUTES %x & mask %x != %x", qeReport.Attributes, qi.AttributesMask, qi.Attributes)
		}
	}
	qeLevel, err := matchQELevel(qi, qeReport.ISVSVN)
	if err != nil {
		return nil, stepErr(StepQEIdentityMatch, err)
	}
	if !knownPlatformStatus[qeLevel.TCBStatus] {
		return nil, stepf(StepQEIdentityMatch, "QE TCB level has unrecognised status %q", qeLevel.TCBStatus)
	}
	return qeLevel, nil
}

// setTCBStatus matches the TDX module identity (TDX only) and the
// platform TCB level (step 9) and sets res's statuses and advisories,
// converging them with the QE's level; a revoked result is an error.
func setTCBStatus(res *Result, levels []collateral.TCBLevel, qeLevel *collateral.QETCBLevel) error {
	q := res.Quote
	var module *statusResult
	if teeOf(q.Header) == attest.TDX {
		var err error
		if module, err = checkTDXModule(res.TCBInfo, q.Header.Version, q.TDReport); err != nil {
			return stepErr(StepTDXModule, err)
		}
		if module != nil {
			res.TDXModuleStatus, res.TDXModuleAdvisoryIDs = attest.TCBStatus(module.status), slices.Clone(module.advisories)
		}
	}

	level, err := matchPlatformLevel(levels, &res.PCK.TCB, q.TDReport)
	if err != nil {
		return stepErr(StepPlatformTCB, err)
	}
	if !knownPlatformStatus[level.TCBStatus] {
		return stepf(StepPlatformTCB, "TCB level has unrecognised status %q", level.TCBStatus)
	}
	platform := level.TCBStatus
	var moduleAdvisories []string
	if module != nil {
		platform = convergeOutOfDate(platform, module.status)
		moduleAdvisories = module.advisories
	}
	res.PlatformStatus, res.PlatformAdvisoryIDs = attest.TCBStatus(platform), slices.Clone(level.AdvisoryIDs)
	final := convergeOutOfDate(platform, qeStatus(qeLevel.TCBStatus))
	res.TCBStatus = attest.TCBStatus(final)
	res.AdvisoryIDs = mergeAdvisories(level.AdvisoryIDs, moduleAdvisories, qeLevel.AdvisoryIDs)
	if final == collateral.StatusRevoked {
		return stepf(StepTCBStatus, "%w (platform %s, QE %s)", ErrTCBRevoked, level.TCBStatus, qeLevel.TCBStatus)
	}
	return nil
}

func claims(q *abi.Quote, res *Result) *attest.Claims {
	c := &attest.Claims{
		TCBStatus:   res.TCBStatus,
		AdvisoryIDs: append([]string(nil), res.AdvisoryIDs...),
		FMSPC:       res.PCK.FMSPCHex(),
		ValidUntil:  res.ValidUntil,
	}
	if r := q.SGXReport; r != nil {
		c.TEE = attest.SGX
		c.MREnclave = clone(r.MREnclave[:])
		c.MRSigner = clone(r.MRSigner[:])
		c.ISVProdID = r.ISVProdID
		c.ISVSVN = r.ISVSVN
		c.Attributes = clone(r.Attributes[:])
		c.Debug = r.Debug()
		c.ReportData = clone(r.ReportData[:])
	}
	if r := q.TDReport; r != nil {
		c.TEE = attest.TDX
		c.MRTD = clone(r.MRTD[:])
		for i := range r.RTMR {
			c.RTMR[i] = clone(r.RTMR[i][:])
		}
		c.MRConfigID = clone(r.MRConfigID[:])
		c.MROwner = clone(r.MROwner[:])
		c.TDAttributes = clone(r.TDAttributes[:])
		c.XFAM = clone(r.XFAM[:])
		c.Debug = r.Debug()
		c.ReportData = clone(r.ReportData[:])
	}
	if r := q.TDReport15; r != nil {
		c.MRServiceTD = clone(r.MRServiceTD[:])
		c.TEETCBSVN2 = clone(r.TEETCBSVN2[:])
	}
	return c
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// IsStep reports whether err is a verification error of the given step.
func IsStep(err error, step string) bool {
	var ve *VerifyError
	return errors.As(err, &ve) && ve.Step == step
}
