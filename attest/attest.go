// Package attest defines teeml's evidence model, following go-sev-guest's
// one-way flow: parse (bytes ↔ structs, per platform package) → verify
// (signatures, certificate chains, collateral) → validate (policy, package
// attest/policy). Platform packages (attest/sgx, attest/tdx, attest/snp,
// attest/sim) implement Issuer and Verifier; everything above them sees only
// Claims.
package attest

import (
	"context"
	"encoding/hex"
	"time"
)

// TEE names a kind of trusted execution environment.
type TEE string

const (
	SGX TEE = "sgx"
	TDX TEE = "tdx"
	SNP TEE = "sev-snp"
)

// TCBStatus is the platform TCB status as Intel's TCB Info names it (for
// SEV-SNP the verifier reports UpToDate when the reported TCB meets the
// VCEK's).
type TCBStatus string

const (
	UpToDate                          TCBStatus = "UpToDate"
	SWHardeningNeeded                 TCBStatus = "SWHardeningNeeded"
	ConfigurationNeeded               TCBStatus = "ConfigurationNeeded"
	ConfigurationAndSWHardeningNeeded TCBStatus = "ConfigurationAndSWHardeningNeeded"
	OutOfDate                         TCBStatus = "OutOfDate"
	OutOfDateConfigurationNeeded      TCBStatus = "OutOfDateConfigurationNeeded"
	Revoked                           TCBStatus = "Revoked"
	// TCBUnknown is used when no TCB evaluation applies (simulation).
	TCBUnknown TCBStatus = "Unknown"
)

// Evidence is what an Issuer produces and a Verifier consumes: the raw
// platform evidence (an SGX/TDX quote, an SNP attestation report, a
// simulated quote) and the collateral needed to check it offline.
type Evidence struct {
	TEE TEE
	// Simulated is true for evidence made by attest/sim. It is carried
	// through to Claims and every output; default policy refuses it.
	Simulated bool
	Quote     []byte
	// Collateral is the platform-specific collateral (for DCAP the JSON format
	// of shared/testdata/attestation/README.md; for SNP the VCEK chain). It may
	// be empty when the verifier has a collateral cache.
	Collateral []byte
}

// Claims is the result of a successful cryptographic verification. A Claims
// value is only ever produced by a Verifier after every signature and chain
// check passed; policy decisions (attest/policy) are made on Claims alone.
type Claims struct {
	TEE       TEE
	Simulated bool

	// SGX enclave identity.
	MREnclave  []byte // 32 bytes
	MRSigner   []byte // 32 bytes
	ISVProdID  uint16
	ISVSVN     uint16
	Attributes []byte // 16 bytes: flags (LE uint64) ‖ xfrm
	Debug      bool   // SGX attributes DEBUG bit, TDX TD attributes DEBUG bit, SNP policy DEBUG bit

	// TDX trust domain identity.
	MRTD         []byte    // 48 bytes
	RTMR         [4][]byte // 48 bytes each
	MRConfigID   []byte
	MROwner      []byte
	TDAttributes []byte // 8 bytes
	XFAM         []byte
	// MRServiceTD and TEETCBSVN2 are the TDX 1.5 TD report's MRSERVICETD
	// (48 bytes: the measurement of the service TDs bound to this TD, e.g.
	// a migration TD; zero when none) and TEE_TCB_SVN_2 (16 bytes); nil for
	// TDX 1.0 reports (quote v4, or v5 with body type 2).
	MRServiceTD []byte
	TEETCBSVN2  []byte

	// SEV-SNP guest identity.
	Measurement []byte // 48 bytes
	SNPPolicy   uint64
	HostData    []byte // 32 bytes
	// SNPCurrentTCB and SNPCommittedTCB are the report's CURRENT_TCB and
	// COMMITTED_TCB (TCB_VERSION, little-endian as AMD packs it). The
	// verifier accepts COMMITTED_TCB below CURRENT_TCB (a firmware or
	// microcode update not yet committed, so it can still be rolled back)
	// as a fact; attest/policy decides
	// (snp_allow_committed_tcb_below_current).
	SNPCurrentTCB   uint64
	SNPCommittedTCB uint64

	// ReportData is the 64 bytes the attested code bound into the evidence.
	ReportData []byte

	TCBStatus   TCBStatus
	AdvisoryIDs []string
	FMSPC       string // hex, upper case, for DCAP

	// ValidUntil is the earliest expiry among certificates, CRLs and
	// collateral used to reach this result.
	ValidUntil time.Time
}

// Hex is a helper for printing measurements.
func Hex(b []byte) string { return hex.EncodeToString(b) }

// Issuer produces evidence binding reportData (at most 64 bytes, zero padded)
// from the platform it runs on.
type Issuer interface {
	Issue(ctx context.Context, reportData []byte) (*Evidence, error)
}

// Verifier checks evidence cryptographically at time now and returns its
// claims. It applies no policy beyond what the platform's security model
// requires (valid signatures, chains, unrevoked certificates, unexpired
// collateral).
type Verifier interface {
	Verify(ctx context.Context, ev *Evidence, now time.Time) (*Claims, error)
}
