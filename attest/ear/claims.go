package ear

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/verifier"
)

// Options describe the result New writes.
type Options struct {
	VerifierID VerifierID
	// Now is iat (zero: time.Now()).
	Now time.Time
	// Validity sets exp = iat + Validity (zero: no exp).
	Validity time.Duration
	// Nonce is eat_nonce (optional).
	Nonce string
	// RawEvidence is ear.raw-evidence (optional).
	RawEvidence []byte
	// PolicySource is the policy file as given, whose SHA-256 names the
	// appraisal policy (ear.appraisal-policy-id); nil when none was applied.
	PolicySource []byte
}

// New turns a verification report (verifier.VerifyAndJudge) into an EAR
// claims set with one submod named after the TEE.
//
// The trustworthiness vector says what was checked: instance-identity and
// hardware 2 for evidence chained to the vendor root (97 for simulated
// evidence: no genuine hardware), hardware 32 for a TCB that is not
// UpToDate; executables 2 when the policy accepted the measurements, 33
// when it did not; configuration 2 when the policy accepted, 96 when it
// refused, 32 when no policy was applied; runtime-opaque 2 (memory
// encrypted), 96 for debug or simulated evidence. The status is the worst
// tier of the vector, and never better than warning without a policy.
func New(r *verifier.Report, o Options) (*Result, error) {
	if r == nil || r.Claims == nil {
		return nil, fmt.Errorf("ear: no verified claims")
	}
	c := r.Claims
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	a := &Appraisal{
		TEE: string(c.TEE), Simulated: c.Simulated, TCBStatus: string(c.TCBStatus),
		AdvisoryIDs: c.AdvisoryIDs, ReportData: hex.EncodeToString(c.ReportData),
		Measurements: measurements(c),
	}
	if !c.ValidUntil.IsZero() {
		a.ValidUntil = c.ValidUntil.Unix()
	}
	tv := &TrustVector{InstanceIdentity: TrustworthyInstance, Hardware: GenuineHardware, RuntimeOpaque: EncryptedMemory}
	if c.TCBStatus != attest.UpToDate && !c.Simulated {
		tv.Hardware = UnsafeHardware
	}
	if c.Debug {
		tv.RuntimeOpaque = VisibleMemory
	}
	if c.Simulated {
		tv.InstanceIdentity, tv.Hardware, tv.RuntimeOpaque = UntrustworthyInstance, UnrecognizedHardware, VisibleMemory
	}
	if r.Policy == nil {
		tv.Configuration = UnappraisedConfig
		a.Policy = &PolicyDecision{Summary: r.Summary}
	} else {
		d := r.Policy
		a.Policy = &PolicyDecision{Applied: true, Accepted: d.Accepted, Role: d.Role, Summary: d.String(), Warnings: d.Warnings}
		if d.Accepted {
			tv.Configuration, tv.Executables = ApprovedConfig, ApprovedRuntime
		} else {
			tv.Configuration, tv.Executables = UnsafeConfig, UnrecognizedRuntime
		}
		if len(o.PolicySource) > 0 {
			sum := sha256.Sum256(o.PolicySource)
			a.PolicyID = "teeml:policy:sha256:" + hex.EncodeToString(sum[:])
		}
	}
	a.TrustVector = tv
	a.Status = tv.Worst()
	if r.Policy == nil && a.Status.rank() < Warning.rank() {
		a.Status = Warning
	}
	if r.Policy != nil && !r.Policy.Accepted {
		a.Status = Contraindicated
	}
	res := &Result{
		Profile: Profile, IssuedAt: now.Unix(), Nonce: o.Nonce, VerifierID: o.VerifierID,
		RawEvidence: o.RawEvidence, Submods: map[string]*Appraisal{string(c.TEE): a},
	}
	if o.Validity > 0 {
		res.Expiry = now.Add(o.Validity).Unix()
	}
	if err := res.validate(); err != nil {
		return nil, fmt.Errorf("ear: %w", err)
	}
	return res, nil
}

func hexOf(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return hex.EncodeToString(b)
}

func measurements(c *attest.Claims) *Measurements {
	m := &Measurements{Debug: c.Debug, FMSPC: c.FMSPC}
	switch c.TEE {
	case attest.SGX:
		m.MREnclave, m.MRSigner, m.Attributes = hexOf(c.MREnclave), hexOf(c.MRSigner), hexOf(c.Attributes)
		m.ISVProdID, m.ISVSVN = c.ISVProdID, c.ISVSVN
	case attest.TDX:
		m.MRTD, m.MRConfigID, m.MROwner = hexOf(c.MRTD), hexOf(c.MRConfigID), hexOf(c.MROwner)
		m.TDAttributes, m.XFAM = hexOf(c.TDAttributes), hexOf(c.XFAM)
		m.MRServiceTD, m.TEETCBSVN2 = hexOf(c.MRServiceTD), hexOf(c.TEETCBSVN2)
		for _, r := range c.RTMR {
			m.RTMR = append(m.RTMR, hex.EncodeToString(r))
		}
	case attest.SNP:
		m.Measurement, m.HostData = hexOf(c.Measurement), hexOf(c.HostData)
		m.SNPPolicy, m.SNPCurrentTCB, m.SNPCommittedTCB = c.SNPPolicy, c.SNPCurrentTCB, c.SNPCommittedTCB
	}
	return m
}

// Claims rebuilds the attestation claims the verifier reported in this
// appraisal, for a relying party's own policy (attest/policy). They are
// what the trusted verifier says, not re-verified evidence.
func (a *Appraisal) Claims() (*attest.Claims, error) {
	fail := func(field string, err error) (*attest.Claims, error) {
		return nil, fmt.Errorf("ear: %w: teeml.%s: %v", ErrMalformed, field, err)
	}
	switch attest.TEE(a.TEE) {
	case attest.SGX, attest.TDX, attest.SNP:
	default:
		return nil, fmt.Errorf("ear: %w: teeml.tee %q is not sgx, tdx or sev-snp", ErrMalformed, a.TEE)
	}
	m := a.Measurements
	if m == nil {
		return nil, fmt.Errorf("ear: %w: teeml.measurements missing", ErrMalformed)
	}
	c := &attest.Claims{TEE: attest.TEE(a.TEE), Simulated: a.Simulated, TCBStatus: attest.TCBStatus(a.TCBStatus),
		AdvisoryIDs: a.AdvisoryIDs, Debug: m.Debug, FMSPC: m.FMSPC,
		ISVProdID: m.ISVProdID, ISVSVN: m.ISVSVN, SNPPolicy: m.SNPPolicy,
		SNPCurrentTCB: m.SNPCurrentTCB, SNPCommittedTCB: m.SNPCommittedTCB}
	if a.ValidUntil != 0 {
		c.ValidUntil = time.Unix(a.ValidUntil, 0)
	}
	fields := []struct {
		name string
		s    string
		dst  *[]byte
		size int
	}{
		{"report-data", a.ReportData, &c.ReportData, 64},
		{"measurements.mr-enclave", m.MREnclave, &c.MREnclave, 32},
		{"measurements.mr-signer", m.MRSigner, &c.MRSigner, 32},
		{"measurements.attributes", m.Attributes, &c.Attributes, 16},
		{"measurements.mr-td", m.MRTD, &c.MRTD, 48},
		{"measurements.mr-config-id", m.MRConfigID, &c.MRConfigID, 48},
		{"measurements.mr-owner", m.MROwner, &c.MROwner, 48},
		{"measurements.td-attributes", m.TDAttributes, &c.TDAttributes, 8},
		{"measurements.xfam", m.XFAM, &c.XFAM, 8},
		{"measurements.mr-service-td", m.MRServiceTD, &c.MRServiceTD, 48},
		{"measurements.tee-tcb-svn-2", m.TEETCBSVN2, &c.TEETCBSVN2, 16},
		{"measurements.measurement", m.Measurement, &c.Measurement, 48},
		{"measurements.host-data", m.HostData, &c.HostData, 32},
	}
	for _, f := range fields {
		if f.s == "" {
			continue
		}
		b, err := hex.DecodeString(f.s)
		if err != nil || len(b) != f.size {
			return fail(f.name, fmt.Errorf("want %d bytes of hex", f.size))
		}
		*f.dst = b
	}
	if len(m.RTMR) > 4 {
		return fail("measurements.rtmr", fmt.Errorf("%d registers, at most 4", len(m.RTMR)))
	}
	for i, s := range m.RTMR {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 48 {
			return fail(fmt.Sprintf("measurements.rtmr[%d]", i), fmt.Errorf("want 48 bytes of hex"))
		}
		c.RTMR[i] = b
	}
	return c, nil
}

// Only returns the token's single submod: teeml writes one per result, and
// a relying party judging measurements must not pick among several.
func (r *Result) Only() (string, *Appraisal, error) {
	if len(r.Submods) != 1 {
		return "", nil, fmt.Errorf("ear: %w: %d submods, want exactly one", ErrMalformed, len(r.Submods))
	}
	for n, a := range r.Submods {
		return n, a, nil
	}
	panic("unreachable")
}
