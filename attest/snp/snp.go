// Package snp verifies AMD SEV-SNP attestation reports offline with
// github.com/google/go-sev-guest (its abi, verify and validate packages).
//
// # Evidence
//
// Evidence.TEE is attest.SNP. Evidence.Quote is the raw 1184-byte
// ATTESTATION_REPORT exactly as the AMD secure processor returns it (the
// configfs-tsm outblob, or the report part of SNP_GET_REPORT); the
// go-sev-guest Attestation proto is not accepted, so the bytes checked are
// the bytes signed.
//
// Evidence.Collateral holds the report's endorsement key certificate, the
// VCEK (or VLEK), in one of three forms:
//
//   - the GUID certificate table of the SNP extended report (the
//     configfs-tsm auxblob, SNP_GET_EXT_REPORT's certificate pages);
//   - PEM CERTIFICATE blocks: the VCEK/VLEK, optionally with ASK and ARK
//     (as the AMD KDS serves them);
//   - a single DER certificate (the VCEK as the KDS serves it).
//
// ASK and ARK certificates in the collateral are never trusted: the chain is
// verified against Verifier.TrustedRoots, by default the AMD root and
// intermediate certificates embedded in go-sev-guest.
//
// # What Verify checks
//
// At the caller's time now, with no network access (certificate fetching is
// disabled and any attempt to fetch fails):
//
//  1. The report is 1184 bytes and well formed (go-sev-guest
//     abi.ReportToProto: reserved fields zero, known signature algorithm).
//  2. The VCEK/VLEK certificate has AMD's KDS shape (version 3, RSASSA-PSS
//     SHA-384 signature, ECDSA P-384 key, KDS subject and extensions) and
//     chains to the trusted ASK/ASVK and ARK of its product line, all valid
//     at now.
//  3. The report's ECDSA P-384 SHA-384 signature verifies with that key.
//  4. The TCB is consistent (validate.SnpAttestation): REPORTED_TCB equals
//     the TCB the VCEK was issued for, the VCEK's TCB is not above
//     CURRENT_TCB, COMMITTED_TCB is not above CURRENT_TCB in any component
//     (below is a fact in the claims, judged by attest/policy's
//     snp_allow_committed_tcb_below_current), and the committed firmware
//     build and API version equal the current ones (no provisional
//     firmware); the guest policy parses (reserved bit 16 set, reserved high
//     bits zero); CHIP_ID, unless masked to zero, equals the VCEK's HWID.
//
// Only then does it return claims, with TCBStatus attest.UpToDate, meaning
// "the report's TCB is the one AMD certified for this chip". It does not
// compare that TCB against AMD's latest firmware (there is no SNP
// equivalent of Intel's TCB Info); pin minimum TCBs in policy when needed.
//
// Guest policy bits (debug, SMT, migration agent) and the report's fields
// are not judged here: Claims.Debug carries policy bit 19 for attest/policy
// to refuse.
//
// Not checked: AMD's CRL (the ASK's revocation, which needs the network),
// VMPL (not in attest.Claims; a report from any VMPL verifies), ID block /
// author keys, guest SVN and family/image IDs.
package snp

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/google/uuid"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/internal/pemcerts"
)

// ReportSize is the size of a raw SEV-SNP attestation report.
const ReportSize = abi.ReportSize

// Verifier verifies SEV-SNP evidence. The zero Verifier trusts the AMD roots
// embedded in go-sev-guest.
type Verifier struct {
	// TrustedRoots replaces the embedded AMD roots, keyed by product line
	// ("Milan", "Genoa", "Turin"). For tests with a private chain, or to pin
	// a subset of products.
	TrustedRoots map[string][]*trust.AMDRootCerts
}

var _ attest.Verifier = (*Verifier)(nil)

// noNetwork is the HTTPS getter handed to go-sev-guest: verification is
// offline, so any fetch is an error.
type noNetwork struct{}

func (noNetwork) Get(url string) ([]byte, error) {
	return nil, fmt.Errorf("snp: offline verification refused to fetch %s", url)
}

func (noNetwork) GetContext(_ context.Context, url string) ([]byte, error) {
	return noNetwork{}.Get(url)
}

// Verify implements attest.Verifier (see the package documentation for what
// is checked).
func (v *Verifier) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	if ev == nil {
		return nil, errors.New("snp: no evidence")
	}
	if ev.Simulated {
		return nil, errors.New("snp: evidence is simulated; the SEV-SNP verifier checks hardware reports only")
	}
	if ev.TEE != attest.SNP {
		return nil, fmt.Errorf("snp: evidence TEE is %q, want %q", ev.TEE, attest.SNP)
	}
	if now.IsZero() {
		return nil, errors.New("snp: verification time not set")
	}
	if len(ev.Quote) != ReportSize {
		return nil, fmt.Errorf("snp: attestation report is %d bytes, want %d", len(ev.Quote), ReportSize)
	}
	report, err := abi.ReportToProto(ev.Quote)
	if err != nil {
		return nil, fmt.Errorf("snp: attestation report: %w", err)
	}
	chain, err := ParseCollateral(ev.Collateral)
	if err != nil {
		return nil, err
	}
	att := &spb.Attestation{Report: report, CertificateChain: chain}
	info, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("snp: attestation report signer info: %w", err)
	}
	var ek []byte
	switch info.SigningKey {
	case abi.VcekReportSigner:
		ek = chain.GetVcekCert()
	case abi.VlekReportSigner:
		ek = chain.GetVlekCert()
	default:
		return nil, fmt.Errorf("snp: attestation report signed by %v, want VCEK or VLEK", info.SigningKey)
	}
	if len(ek) == 0 {
		return nil, fmt.Errorf("snp: collateral lacks the %v certificate that signed the report", info.SigningKey)
	}

	opts := &verify.Options{
		DisableCertFetching: true,
		Getter:              noNetwork{},
		Now:                 now,
		TrustedRoots:        v.TrustedRoots,
	}
	if err := verify.SnpAttestationContext(ctx, att, opts); err != nil {
		return nil, fmt.Errorf("snp: verification: %s", oneLine(err))
	}
	vopts := &validate.Options{
		// Accept every guest policy capability: judging them (debug above
		// all) is attest/policy's job, on the claims.
		GuestPolicy: abi.SnpPolicy{SMT: true, MigrateMA: true, Debug: true, CXLAllowed: true},
		// COMMITTED_TCB may be below CURRENT_TCB (never above, in any
		// component): that is a fact for attest/policy to judge
		// (Claims.SNPCommittedTCB). This also relaxes go-sev-guest's build
		// and API version checks to "committed <= current"; the equality
		// teeml requires of those is checked below.
		PermitProvisionalFirmware: true,
	}
	if err := validate.SnpAttestation(att, vopts); err != nil {
		return nil, fmt.Errorf("snp: validation: %s", oneLine(err))
	}
	if report.GetCommittedBuild() != report.GetCurrentBuild() {
		return nil, fmt.Errorf("snp: validation: committed build number %d does not match the current build number %d (provisional firmware)",
			report.GetCommittedBuild(), report.GetCurrentBuild())
	}
	if report.GetCommittedMajor() != report.GetCurrentMajor() || report.GetCommittedMinor() != report.GetCurrentMinor() {
		return nil, fmt.Errorf("snp: validation: committed API version %d.%d does not match the current API version %d.%d (provisional firmware)",
			report.GetCommittedMajor(), report.GetCommittedMinor(), report.GetCurrentMajor(), report.GetCurrentMinor())
	}
	validUntil, err := v.validUntil(ek, info.SigningKey, now)
	if err != nil {
		return nil, err
	}
	pol, err := abi.ParseSnpPolicy(report.GetPolicy())
	if err != nil { // validate already parsed it; kept for the record
		return nil, fmt.Errorf("snp: guest policy: %w", err)
	}
	return &attest.Claims{
		TEE:         attest.SNP,
		Measurement: bytes.Clone(report.GetMeasurement()),
		SNPPolicy:   report.GetPolicy(),
		HostData:    bytes.Clone(report.GetHostData()),
		ReportData:  bytes.Clone(report.GetReportData()),
		Debug:       pol.Debug,

		SNPCurrentTCB:   report.GetCurrentTcb(),
		SNPCommittedTCB: report.GetCommittedTcb(),
		TCBStatus:       attest.UpToDate,
		ValidUntil:      validUntil,
	}, nil
}

// validUntil is the earliest NotAfter along the endorsement key's chain to
// the trusted roots.
func (v *Verifier) validUntil(ekDER []byte, key abi.ReportSigner, now time.Time) (time.Time, error) {
	ek, err := x509.ParseCertificate(ekDER)
	if err != nil {
		return time.Time{}, fmt.Errorf("snp: %v certificate: %w", key, err)
	}
	roots := v.TrustedRoots
	if roots == nil {
		roots = map[string][]*trust.AMDRootCerts{}
		for line, r := range trust.DefaultRootCerts {
			roots[line] = []*trust.AMDRootCerts{r}
		}
	}
	var best time.Time
	for _, rs := range roots {
		for _, r := range rs {
			o := r.X509Options(now, key)
			if o == nil {
				continue
			}
			chains, err := ek.Verify(*o)
			if err != nil {
				continue
			}
			for _, ch := range chains {
				end := ch[0].NotAfter
				for _, c := range ch[1:] {
					if c.NotAfter.Before(end) {
						end = c.NotAfter
					}
				}
				if end.After(best) {
					best = end
				}
			}
		}
	}
	if best.IsZero() {
		return time.Time{}, fmt.Errorf("snp: %v certificate does not chain to a trusted root", key)
	}
	return best, nil
}

// oneLine flattens a go-sev-guest error to one line of at most 300 bytes
// (some embed whole hex dumps of report fields).
func oneLine(err error) string {
	s := string(bytes.Join(bytes.Fields([]byte(err.Error())), []byte(" ")))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ParseCollateral decodes SEV-SNP collateral (see the package documentation
// for the accepted forms) into a go-sev-guest certificate chain. It refuses
// empty input, unknown PEM blocks, trailing data, duplicate certificates of
// one kind, and collateral without a VCEK or VLEK.
func ParseCollateral(b []byte) (*spb.CertificateChain, error) {
	if len(b) == 0 {
		return nil, errors.New("snp: no collateral: the VCEK certificate is required (offline verification)")
	}
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	switch {
	case isPEMText(b):
		if err := parsePEM(b, chain); err != nil {
			return nil, err
		}
	case isDERCert(b):
		if err := addCert(chain, b); err != nil {
			return nil, err
		}
	default:
		if err := parseCertTable(b, chain); err != nil {
			return nil, err
		}
	}
	if len(chain.VcekCert) == 0 && len(chain.VlekCert) == 0 {
		return nil, errors.New("snp: collateral has neither a VCEK nor a VLEK certificate")
	}
	return chain, nil
}

// isPEMText reports whether b is text (UTF-8 without NUL, unlike a binary
// certificate table) holding a PEM BEGIN line, possibly after explanatory
// text.
func isPEMText(b []byte) bool {
	if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	return bytes.HasPrefix(b, []byte("-----BEGIN")) || bytes.Contains(b, []byte("\n-----BEGIN"))
}

func isDERCert(b []byte) bool {
	c, err := x509.ParseCertificate(b)
	return err == nil && c != nil
}

// parsePEM files every certificate of a PEM bundle; explanatory text
// around the blocks is allowed (RFC 7468 section 2, as in AMD's published
// ASK/ARK files), malformed or non-certificate blocks are not.
func parsePEM(b []byte, chain *spb.CertificateChain) error {
	ders, err := pemcerts.DER(b)
	if err != nil {
		return fmt.Errorf("snp: collateral: %w", err)
	}
	for _, der := range ders {
		if err := addCert(chain, der); err != nil {
			return err
		}
	}
	return nil
}

// addCert files a DER certificate by its subject common name, as AMD's KDS
// names them: SEV-VCEK, SEV-VLEK, ARK-<product> (self-signed root), and
// SEV-<product> / SEV-VLEK-<product> (intermediates).
func addCert(chain *spb.CertificateChain, der []byte) error {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("snp: collateral certificate: %w", err)
	}
	set := func(dst *[]byte, what string) error {
		if len(*dst) != 0 {
			return fmt.Errorf("snp: collateral has two %s certificates", what)
		}
		*dst = bytes.Clone(der)
		return nil
	}
	cn := c.Subject.CommonName
	switch {
	case cn == "SEV-VCEK":
		return set(&chain.VcekCert, "VCEK")
	case cn == "SEV-VLEK":
		return set(&chain.VlekCert, "VLEK")
	case bytes.Equal(c.RawSubject, c.RawIssuer):
		return set(&chain.ArkCert, "ARK")
	case c.IsCA:
		return set(&chain.AskCert, "ASK")
	}
	return fmt.Errorf("snp: collateral certificate %q is not a VCEK, VLEK, ASK or ARK", cn)
}

var (
	vcekGUID = uuid.MustParse(abi.VcekGUID)
	vlekGUID = uuid.MustParse(abi.VlekGUID)
	askGUID  = uuid.MustParse(abi.AskGUID)
	arkGUID  = uuid.MustParse(abi.ArkGUID)
)

func parseCertTable(b []byte, chain *spb.CertificateChain) error {
	var t abi.CertTable
	if err := t.Unmarshal(b); err != nil {
		return fmt.Errorf("snp: collateral is neither PEM, a DER certificate nor an SNP certificate table: %s", oneLine(err))
	}
	seen := map[uuid.UUID]bool{}
	for _, e := range t.Entries {
		if seen[e.GUID] {
			return fmt.Errorf("snp: collateral certificate table has GUID %s twice", e.GUID)
		}
		seen[e.GUID] = true
		switch e.GUID {
		case vcekGUID:
			chain.VcekCert = e.RawCert
		case vlekGUID:
			chain.VlekCert = e.RawCert
		case askGUID:
			chain.AskCert = e.RawCert
		case arkGUID:
			chain.ArkCert = e.RawCert
		default:
			chain.Extras[e.GUID.String()] = e.RawCert
		}
	}
	return nil
}
