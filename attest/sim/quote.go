// Package sim is teeml's simulated TEE: an Issuer holding a software ECDSA
// P-256 key that makes quotes imitating SGX, TDX or SEV-SNP evidence, and a
// Verifier that checks them against an explicit set of trusted simulation
// keys.
//
// Simulated evidence gives no hardware protection at all: anyone with the
// simulation key can forge any measurement. It exists so that federated
// training can be developed and tested on machines without a TEE. It is
// always visible:
//
//   - the quote starts with the magic "TEEML-SIMULATED-QUOTE-v1", so no real
//     quote parser accepts it and no human mistakes it for one;
//   - Evidence.Simulated and Claims.Simulated are true, Claims.TCBStatus is
//     attest.TCBUnknown;
//   - every Issue and Verify logs "SIMULATED attestation: no hardware
//     protection" at WARN level;
//   - attest/policy refuses simulated claims unless a role says
//     allow_simulation: true.
//
// # Quote format (version 1)
//
// All integers are little endian; the quote is exactly QuoteSize bytes.
//
//	offset size  field
//	     0   24  magic "TEEML-SIMULATED-QUOTE-v1"
//	    24    1  TEE kind imitated: 1 sgx, 2 tdx, 3 sev-snp
//	    25    3  reserved, zero
//	    28    2  isv_prod_id (SGX)
//	    30    2  isv_svn (SGX)
//	    32   32  mr_enclave (SGX)
//	    64   32  mr_signer (SGX)
//	    96   16  attributes (SGX: flags LE uint64 ‖ xfrm; flags bit 1 = DEBUG)
//	   112   48  mrtd (TDX)
//	   160  192  rtmr0..rtmr3 (TDX), 48 bytes each
//	   352   48  mr_config_id (TDX)
//	   400   48  mr_owner (TDX)
//	   448    8  td_attributes (TDX; bit 0 = DEBUG)
//	   456    8  xfam (TDX)
//	   464   48  measurement (SEV-SNP)
//	   512    8  guest policy (SEV-SNP; bit 19 = DEBUG)
//	   520   32  host_data (SEV-SNP)
//	   552   64  report_data
//	   616   32  key id: SHA-256 of the signing key's PKIX DER encoding
//	   648   64  ECDSA P-256 signature r ‖ s (32 bytes each, big endian)
//	             over SHA-256 of bytes 0..647
//
// Fields that do not belong to the imitated TEE must be zero.
package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/teeml/teeml/attest"
)

// Magic starts every simulated quote.
const Magic = "TEEML-SIMULATED-QUOTE-v1"

// Layout of a version 1 simulated quote.
const (
	offKind        = 24
	offReserved    = 25
	offISVProdID   = 28
	offISVSVN      = 30
	offMREnclave   = 32
	offMRSigner    = 64
	offAttributes  = 96
	offMRTD        = 112
	offRTMR        = 160
	offMRConfigID  = 352
	offMROwner     = 400
	offTDAttrs     = 448
	offXFAM        = 456
	offMeasurement = 464
	offSNPPolicy   = 512
	offHostData    = 520
	offReportData  = 552
	offKeyID       = 616
	offSignature   = 648
	// SignedSize is the length of the signed part of a quote.
	SignedSize = offSignature
	// QuoteSize is the exact length of a simulated quote.
	QuoteSize = offSignature + 64
)

// Debug bits, in the same places as on real hardware.
const (
	sgxFlagDebug   = 1 << 1  // SGX ATTRIBUTES.FLAGS bit 1
	tdxAttrDebug   = 1 << 0  // TDX TD_ATTRIBUTES bit 0
	snpPolicyDebug = 1 << 19 // SEV-SNP guest policy bit 19
)

var kinds = map[byte]attest.TEE{1: attest.SGX, 2: attest.TDX, 3: attest.SNP}

func kindByte(t attest.TEE) (byte, bool) {
	for k, v := range kinds {
		if v == t {
			return k, true
		}
	}
	return 0, false
}

// Identity is what a simulated quote claims about the code it imitates. Only
// the fields of the imitated TEE are used; the others must stay zero.
type Identity struct {
	TEE attest.TEE // attest.SGX, attest.TDX or attest.SNP

	// Debug sets the imitated TEE's debug bit (SGX attributes flags bit 1, TDX
	// TD attributes bit 0, SNP policy bit 19) on top of the fields below.
	Debug bool

	// SGX
	MREnclave  [32]byte
	MRSigner   [32]byte
	ISVProdID  uint16
	ISVSVN     uint16
	Attributes [16]byte

	// TDX
	MRTD         [48]byte
	RTMR         [4][48]byte
	MRConfigID   [48]byte
	MROwner      [48]byte
	TDAttributes [8]byte
	XFAM         [8]byte

	// SEV-SNP
	Measurement [48]byte
	SNPPolicy   uint64
	HostData    [32]byte
}

// Quote is a parsed simulated quote.
type Quote struct {
	Identity
	ReportData [64]byte
	KeyID      [32]byte
	Signature  [64]byte
}

// debug reports whether the imitated TEE's debug bit is set in the fields.
func (id *Identity) debug() bool {
	switch id.TEE {
	case attest.SGX:
		return id.Attributes[0]&sgxFlagDebug != 0
	case attest.TDX:
		return id.TDAttributes[0]&tdxAttrDebug != 0
	case attest.SNP:
		return id.SNPPolicy&snpPolicyDebug != 0
	}
	return false
}

// normalized returns a copy with Debug folded into the TEE's debug bit and
// the fields of other TEEs checked to be zero.
func (id Identity) normalized() (Identity, error) {
	if _, ok := kindByte(id.TEE); !ok {
		return id, fmt.Errorf("sim: identity TEE %q is not sgx, tdx or sev-snp", id.TEE)
	}
	if id.Debug {
		switch id.TEE {
		case attest.SGX:
			id.Attributes[0] |= sgxFlagDebug
		case attest.TDX:
			id.TDAttributes[0] |= tdxAttrDebug
		case attest.SNP:
			id.SNPPolicy |= snpPolicyDebug
		}
	}
	id.Debug = id.debug()
	// Round-trip through the encoding to check foreign fields are zero.
	var q Quote
	q.Identity = id
	if _, err := ParseQuote(q.marshal()); err != nil {
		return id, err
	}
	return id, nil
}

// marshal encodes q; the signature bytes are copied as they are.
func (q *Quote) marshal() []byte {
	b := make([]byte, QuoteSize)
	copy(b, Magic)
	b[offKind], _ = kindByte(q.TEE)
	binary.LittleEndian.PutUint16(b[offISVProdID:], q.ISVProdID)
	binary.LittleEndian.PutUint16(b[offISVSVN:], q.ISVSVN)
	copy(b[offMREnclave:], q.MREnclave[:])
	copy(b[offMRSigner:], q.MRSigner[:])
	copy(b[offAttributes:], q.Attributes[:])
	copy(b[offMRTD:], q.MRTD[:])
	for i := range q.RTMR {
		copy(b[offRTMR+48*i:], q.RTMR[i][:])
	}
	copy(b[offMRConfigID:], q.MRConfigID[:])
	copy(b[offMROwner:], q.MROwner[:])
	copy(b[offTDAttrs:], q.TDAttributes[:])
	copy(b[offXFAM:], q.XFAM[:])
	copy(b[offMeasurement:], q.Measurement[:])
	binary.LittleEndian.PutUint64(b[offSNPPolicy:], q.SNPPolicy)
	copy(b[offHostData:], q.HostData[:])
	copy(b[offReportData:], q.ReportData[:])
	copy(b[offKeyID:], q.KeyID[:])
	copy(b[offSignature:], q.Signature[:])
	return b
}

// Marshal returns the QuoteSize-byte encoding of q.
func (q *Quote) Marshal() []byte { return q.marshal() }

// Digest is the SHA-256 of the signed part of q, what the signature covers.
func (q *Quote) Digest() [32]byte {
	return sha256.Sum256(q.marshal()[:SignedSize])
}

// IsSimulated reports whether b starts with the simulated-quote magic.
func IsSimulated(b []byte) bool { return bytes.HasPrefix(b, []byte(Magic)) }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ParseQuote decodes a simulated quote without checking its signature. It
// refuses anything but exactly QuoteSize bytes with the magic, a known TEE
// kind, zero reserved bytes and zero fields for TEEs other than the imitated
// one.
func ParseQuote(b []byte) (*Quote, error) {
	if len(b) != QuoteSize {
		if IsSimulated(b) {
			return nil, fmt.Errorf("sim: simulated quote is %d bytes, want %d", len(b), QuoteSize)
		}
		return nil, fmt.Errorf("sim: quote is %d bytes without the %q magic: not a simulated quote", len(b), Magic)
	}
	if !IsSimulated(b) {
		return nil, fmt.Errorf("sim: quote lacks the %q magic: not a simulated quote", Magic)
	}
	tee, ok := kinds[b[offKind]]
	if !ok {
		return nil, fmt.Errorf("sim: simulated quote has unknown TEE kind %d", b[offKind])
	}
	if !allZero(b[offReserved:offISVProdID]) {
		return nil, fmt.Errorf("sim: simulated quote reserved bytes %x are not zero", b[offReserved:offISVProdID])
	}
	// Fields owned by each TEE: [start, end) ranges.
	owned := map[attest.TEE][][2]int{
		attest.SGX: {{offISVProdID, offMRTD}},
		attest.TDX: {{offMRTD, offMeasurement}},
		attest.SNP: {{offMeasurement, offReportData}},
	}
	for t, ranges := range owned {
		if t == tee {
			continue
		}
		for _, r := range ranges {
			if !allZero(b[r[0]:r[1]]) {
				return nil, fmt.Errorf("sim: simulated %s quote has non-zero %s fields at offset %d", tee, t, r[0])
			}
		}
	}
	q := &Quote{}
	q.TEE = tee
	q.ISVProdID = binary.LittleEndian.Uint16(b[offISVProdID:])
	q.ISVSVN = binary.LittleEndian.Uint16(b[offISVSVN:])
	copy(q.MREnclave[:], b[offMREnclave:])
	copy(q.MRSigner[:], b[offMRSigner:])
	copy(q.Attributes[:], b[offAttributes:])
	copy(q.MRTD[:], b[offMRTD:])
	for i := range q.RTMR {
		copy(q.RTMR[i][:], b[offRTMR+48*i:])
	}
	copy(q.MRConfigID[:], b[offMRConfigID:])
	copy(q.MROwner[:], b[offMROwner:])
	copy(q.TDAttributes[:], b[offTDAttrs:])
	copy(q.XFAM[:], b[offXFAM:])
	copy(q.Measurement[:], b[offMeasurement:])
	q.SNPPolicy = binary.LittleEndian.Uint64(b[offSNPPolicy:])
	copy(q.HostData[:], b[offHostData:])
	copy(q.ReportData[:], b[offReportData:])
	copy(q.KeyID[:], b[offKeyID:])
	copy(q.Signature[:], b[offSignature:])
	q.Debug = q.debug()
	return q, nil
}

// claims turns a verified quote into attest.Claims.
func (q *Quote) claims() *attest.Claims {
	c := &attest.Claims{
		TEE:        q.TEE,
		Simulated:  true,
		Debug:      q.Debug,
		ReportData: bytes.Clone(q.ReportData[:]),
		TCBStatus:  attest.TCBUnknown,
	}
	switch q.TEE {
	case attest.SGX:
		c.MREnclave = bytes.Clone(q.MREnclave[:])
		c.MRSigner = bytes.Clone(q.MRSigner[:])
		c.ISVProdID = q.ISVProdID
		c.ISVSVN = q.ISVSVN
		c.Attributes = bytes.Clone(q.Attributes[:])
	case attest.TDX:
		c.MRTD = bytes.Clone(q.MRTD[:])
		for i := range q.RTMR {
			c.RTMR[i] = bytes.Clone(q.RTMR[i][:])
		}
		c.MRConfigID = bytes.Clone(q.MRConfigID[:])
		c.MROwner = bytes.Clone(q.MROwner[:])
		c.TDAttributes = bytes.Clone(q.TDAttributes[:])
		c.XFAM = bytes.Clone(q.XFAM[:])
	case attest.SNP:
		c.Measurement = bytes.Clone(q.Measurement[:])
		c.SNPPolicy = q.SNPPolicy
		c.HostData = bytes.Clone(q.HostData[:])
	}
	return c
}
