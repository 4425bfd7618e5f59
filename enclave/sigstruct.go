package enclave

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
)

// SigstructSize is the size of an SGX SIGSTRUCT (a Gramine .sig file).
const SigstructSize = 1808

// Byte offsets of the SIGSTRUCT fields (Intel SDM Vol. 3D, "Enclave Signature
// Structure"; Gramine's sgx_sigstruct_t in pal/src/host/linux-sgx/sgx_arch.h).
const (
	offHeader            = 0    // 16 bytes
	offVendor            = 16   // uint32
	offDate              = 20   // uint32, BCD 0xYYYYMMDD
	offHeader2           = 24   // 16 bytes
	offSWDefined         = 40   // uint32
	offReserved1         = 44   // 84 bytes
	offModulus           = 128  // 384 bytes, little-endian
	offExponent          = 512  // uint32
	offSignature         = 516  // 384 bytes, little-endian
	offMiscSelect        = 900  // uint32
	offMiscMask          = 904  // uint32
	offCETAttributes     = 908  // uint8
	offCETAttributesMask = 909  // uint8
	offReserved2         = 910  // 2 bytes
	offISVFamilyID       = 912  // 16 bytes
	offAttributes        = 928  // 16 bytes: flags uint64, xfrm uint64
	offAttributeMask     = 944  // 16 bytes
	offEnclaveHash       = 960  // 32 bytes: MRENCLAVE
	offReserved3         = 992  // 16 bytes
	offISVExtProdID      = 1008 // 16 bytes
	offISVProdID         = 1024 // uint16
	offISVSVN            = 1026 // uint16
	offReserved4         = 1028 // 12 bytes
	offQ1                = 1040 // 384 bytes, little-endian
	offQ2                = 1424 // 384 bytes, little-endian

	// The signed data is bytes [0,128) ‖ [900,1028): header..reserved1 and
	// miscselect..isvsvn.
	signedPart1End   = 128
	signedPart2Start = offMiscSelect
	signedPart2End   = offReserved4
)

// The constant SIGSTRUCT headers (Intel SDM; Gramine sigstruct.py defaults).
var (
	sigstructHeader  = [16]byte{0x06, 0x00, 0x00, 0x00, 0xe1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00}
	sigstructHeader2 = [16]byte{0x01, 0x01, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}
)

// SGX ATTRIBUTES.FLAGS bits.
const (
	FlagInitialized  uint64 = 0x01
	FlagDebug        uint64 = 0x02
	FlagMode64Bit    uint64 = 0x04
	FlagProvisionKey uint64 = 0x10
	FlagEINITToken   uint64 = 0x20
)

// Defaults gramine-sgx-sign puts into a SIGSTRUCT.
const (
	// XFRMLegacy is ATTRIBUTES.XFRM with x87 and SSE, which SGX requires.
	XFRMLegacy uint64 = 0x03
	// DefaultFlagsMask makes EINIT check every flag (DEBUG included).
	DefaultFlagsMask uint64 = 0xffffffffffffffff
	// DefaultXFRMMask makes EINIT check every XFRM bit except AVX,
	// AVX-512 and AMX.
	DefaultXFRMMask uint64 = 0xfffffffffff9ff1b
	// DefaultMiscMask makes EINIT check every MISCSELECT bit.
	DefaultMiscMask uint32 = 0xffffffff
)

// Attributes is the SGX ATTRIBUTES field: FLAGS then XFRM, both little-endian.
type Attributes struct {
	Flags uint64
	XFRM  uint64
}

// Bytes returns the 16-byte encoding of a, as SIGSTRUCT and SGX quotes hold it.
func (a Attributes) Bytes() []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:], a.Flags)
	binary.LittleEndian.PutUint64(b[8:], a.XFRM)
	return b
}

// Date is the SIGSTRUCT DATE field. SIGSTRUCT stores it as binary-coded
// decimal 0xYYYYMMDD; like gramine-sgx-sign, any digits are accepted
// (0000-00-00 included), not only valid calendar dates.
type Date struct {
	Year, Month, Day int
}

// String formats d as YYYY-MM-DD.
func (d Date) String() string {
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day)
}

// bcd encodes d as 0xYYYYMMDD.
func (d Date) bcd() (uint32, error) {
	if d.Year < 0 || d.Year > 9999 || d.Month < 0 || d.Month > 99 || d.Day < 0 || d.Day > 99 {
		return 0, fmt.Errorf("sigstruct: date %s does not fit BCD yyyymmdd", d)
	}
	enc := func(v, digits int) uint32 {
		var r uint32
		for i := range digits {
			r |= uint32(v%10) << (4 * i)
			v /= 10
		}
		return r
	}
	return enc(d.Year, 4)<<16 | enc(d.Month, 2)<<8 | enc(d.Day, 2), nil
}

// dateFromBCD decodes 0xYYYYMMDD; every nibble must be a decimal digit.
func dateFromBCD(v uint32) (Date, error) {
	dec := func(x uint32, digits int) (int, bool) {
		r, mul := 0, 1
		for range digits {
			n := int(x & 0xf)
			if n > 9 {
				return 0, false
			}
			r += n * mul
			mul *= 10
			x >>= 4
		}
		return r, true
	}
	y, ok1 := dec(v>>16, 4)
	m, ok2 := dec(v>>8&0xff, 2)
	d, ok3 := dec(v&0xff, 2)
	if !ok1 || !ok2 || !ok3 {
		return Date{}, fmt.Errorf("sigstruct: date 0x%08x is not binary-coded decimal yyyymmdd", v)
	}
	return Date{Year: y, Month: m, Day: d}, nil
}

// Sigstruct is an SGX SIGSTRUCT. Every byte of the 1808-byte structure is
// represented, so ParseSigstruct followed by Marshal reproduces the input.
// The two constant headers are checked by ParseSigstruct and written by
// Marshal. Modulus, Signature, Q1 and Q2 are little-endian, as stored.
type Sigstruct struct {
	Vendor            uint32 // 0x8086 for Intel enclaves, 0 otherwise
	Date              Date
	SWDefined         uint32
	Reserved1         [84]byte
	Modulus           [KeySize]byte
	Exponent          uint32
	Signature         [KeySize]byte
	MiscSelect        uint32
	MiscMask          uint32
	CETAttributes     uint8
	CETAttributesMask uint8
	Reserved2         [2]byte
	ISVFamilyID       [16]byte
	Attributes        Attributes
	AttributeMask     Attributes
	EnclaveHash       [32]byte // MRENCLAVE
	Reserved3         [16]byte
	ISVExtProdID      [16]byte
	ISVProdID         uint16
	ISVSVN            uint16
	Reserved4         [12]byte
	Q1                [KeySize]byte
	Q2                [KeySize]byte
}

// SigstructParams are the enclave-specific inputs of NewSigstruct.
type SigstructParams struct {
	MREnclave [32]byte
	ISVProdID uint16
	ISVSVN    uint16
	Debug     bool
	Date      Date
}

// NewSigstruct returns an unsigned SIGSTRUCT with the values gramine-sgx-sign
// uses on x86-64 when the manifest sets no sgx.cpu_features, sgx.use_exinfo
// or sealing masks: FLAGS = MODE64BIT (| DEBUG), XFRM = x87|SSE, MISCSELECT
// = 0, and the default masks. Call Sign to fill the key and signature fields.
func NewSigstruct(p SigstructParams) *Sigstruct {
	flags := FlagMode64Bit
	if p.Debug {
		flags |= FlagDebug
	}
	return &Sigstruct{
		Date:          p.Date,
		MiscMask:      DefaultMiscMask,
		Attributes:    Attributes{Flags: flags, XFRM: XFRMLegacy},
		AttributeMask: Attributes{Flags: DefaultFlagsMask, XFRM: DefaultXFRMMask},
		EnclaveHash:   p.MREnclave,
		ISVProdID:     p.ISVProdID,
		ISVSVN:        p.ISVSVN,
	}
}

// ParseSigstruct parses a SIGSTRUCT. It checks the length, both constant
// headers and the BCD date; it does not check the signature (see Verify).
func ParseSigstruct(b []byte) (*Sigstruct, error) {
	if len(b) != SigstructSize {
		return nil, fmt.Errorf("sigstruct: length is %d bytes, want %d", len(b), SigstructSize)
	}
	if !bytes.Equal(b[offHeader:offHeader+16], sigstructHeader[:]) {
		return nil, fmt.Errorf("sigstruct: header is %x, want %x", b[offHeader:offHeader+16], sigstructHeader)
	}
	if !bytes.Equal(b[offHeader2:offHeader2+16], sigstructHeader2[:]) {
		return nil, fmt.Errorf("sigstruct: header2 is %x, want %x", b[offHeader2:offHeader2+16], sigstructHeader2)
	}
	le := binary.LittleEndian
	date, err := dateFromBCD(le.Uint32(b[offDate:]))
	if err != nil {
		return nil, err
	}
	s := &Sigstruct{
		Vendor:            le.Uint32(b[offVendor:]),
		Date:              date,
		SWDefined:         le.Uint32(b[offSWDefined:]),
		Exponent:          le.Uint32(b[offExponent:]),
		MiscSelect:        le.Uint32(b[offMiscSelect:]),
		MiscMask:          le.Uint32(b[offMiscMask:]),
		CETAttributes:     b[offCETAttributes],
		CETAttributesMask: b[offCETAttributesMask],
		Attributes:        Attributes{Flags: le.Uint64(b[offAttributes:]), XFRM: le.Uint64(b[offAttributes+8:])},
		AttributeMask:     Attributes{Flags: le.Uint64(b[offAttributeMask:]), XFRM: le.Uint64(b[offAttributeMask+8:])},
		ISVProdID:         le.Uint16(b[offISVProdID:]),
		ISVSVN:            le.Uint16(b[offISVSVN:]),
	}
	copy(s.Reserved1[:], b[offReserved1:])
	copy(s.Modulus[:], b[offModulus:])
	copy(s.Signature[:], b[offSignature:])
	copy(s.Reserved2[:], b[offReserved2:])
	copy(s.ISVFamilyID[:], b[offISVFamilyID:])
	copy(s.EnclaveHash[:], b[offEnclaveHash:])
	copy(s.Reserved3[:], b[offReserved3:])
	copy(s.ISVExtProdID[:], b[offISVExtProdID:])
	copy(s.Reserved4[:], b[offReserved4:])
	copy(s.Q1[:], b[offQ1:])
	copy(s.Q2[:], b[offQ2:])
	return s, nil
}

// Marshal returns the 1808-byte SIGSTRUCT. It fails only if Date does not
// fit binary-coded decimal yyyymmdd.
func (s *Sigstruct) Marshal() ([]byte, error) {
	date, err := s.Date.bcd()
	if err != nil {
		return nil, err
	}
	b := make([]byte, SigstructSize)
	le := binary.LittleEndian
	copy(b[offHeader:], sigstructHeader[:])
	le.PutUint32(b[offVendor:], s.Vendor)
	le.PutUint32(b[offDate:], date)
	copy(b[offHeader2:], sigstructHeader2[:])
	le.PutUint32(b[offSWDefined:], s.SWDefined)
	copy(b[offReserved1:], s.Reserved1[:])
	copy(b[offModulus:], s.Modulus[:])
	le.PutUint32(b[offExponent:], s.Exponent)
	copy(b[offSignature:], s.Signature[:])
	le.PutUint32(b[offMiscSelect:], s.MiscSelect)
	le.PutUint32(b[offMiscMask:], s.MiscMask)
	b[offCETAttributes] = s.CETAttributes
	b[offCETAttributesMask] = s.CETAttributesMask
	copy(b[offReserved2:], s.Reserved2[:])
	copy(b[offISVFamilyID:], s.ISVFamilyID[:])
	copy(b[offAttributes:], s.Attributes.Bytes())
	copy(b[offAttributeMask:], s.AttributeMask.Bytes())
	copy(b[offEnclaveHash:], s.EnclaveHash[:])
	copy(b[offReserved3:], s.Reserved3[:])
	copy(b[offISVExtProdID:], s.ISVExtProdID[:])
	le.PutUint16(b[offISVProdID:], s.ISVProdID)
	le.PutUint16(b[offISVSVN:], s.ISVSVN)
	copy(b[offReserved4:], s.Reserved4[:])
	copy(b[offQ1:], s.Q1[:])
	copy(b[offQ2:], s.Q2[:])
	return b, nil
}

// SigningData returns the 256 bytes the SIGSTRUCT signature covers: bytes
// [0,128) (header through reserved1) followed by bytes [900,1028)
// (miscselect through isvsvn), as the SDM and gramine-sgx-sign define it.
func (s *Sigstruct) SigningData() ([]byte, error) {
	b, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	return signingData(b), nil
}

func signingData(b []byte) []byte {
	d := make([]byte, 0, signedPart1End+signedPart2End-signedPart2Start)
	d = append(d, b[:signedPart1End]...)
	return append(d, b[signedPart2Start:signedPart2End]...)
}

// Sign signs s with key as gramine-sgx-sign does: it sets Modulus and
// Exponent from key, signs SigningData with RSASSA-PKCS1-v1_5 over SHA-256,
// stores the signature little-endian, and sets Q1 = ⌊s²/n⌋ and
// Q2 = ⌊(s³ − Q1·s·n)/n⌋ = ⌊s·(s² mod n)/n⌋, the values EINIT uses to check
// the signature.
func (s *Sigstruct) Sign(key *rsa.PrivateKey) error {
	if key == nil {
		return errors.New("sigstruct: sign: no signing key")
	}
	if err := CheckSigningKey(&key.PublicKey); err != nil {
		return fmt.Errorf("sigstruct: sign: %s", trimPrefix(err))
	}
	copy(s.Modulus[:], modulusLE(key.N))
	s.Exponent = KeyExponent
	data, err := s.SigningData()
	if err != nil {
		return err
	}
	digest := sha256.Sum256(data)
	sigBE, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		return fmt.Errorf("sigstruct: sign: %w", err)
	}
	sig := new(big.Int).SetBytes(sigBE)
	q1, q2 := quotients(sig, key.N)
	putLE(s.Signature[:], sig)
	putLE(s.Q1[:], q1)
	putLE(s.Q2[:], q2)
	return nil
}

// quotients returns Q1 = ⌊s²/n⌋ and Q2 = ⌊s·(s² mod n)/n⌋.
func quotients(sig, n *big.Int) (q1, q2 *big.Int) {
	sq := new(big.Int).Mul(sig, sig)
	q1, r := new(big.Int).QuoRem(sq, n, new(big.Int))
	q2 = r.Mul(r, sig)
	q2.Quo(q2, n)
	return q1, q2
}

// Verify checks that s is a correctly signed SIGSTRUCT: the exponent is 3,
// the modulus has 3072 bits, the signature verifies (PKCS#1 v1.5, SHA-256)
// under the modulus in s, and Q1 and Q2 are the values EINIT expects.
// Verify establishes only that s is internally consistent; who signed it is
// MRSIGNER (Info), which a policy must pin.
func (s *Sigstruct) Verify() error {
	if s.Exponent != KeyExponent {
		return fmt.Errorf("sigstruct: exponent is %d, SGX requires %d", s.Exponent, KeyExponent)
	}
	n := fromLE(s.Modulus[:])
	if n.BitLen() != KeyBits {
		return fmt.Errorf("sigstruct: modulus has %d bits, SGX requires %d", n.BitLen(), KeyBits)
	}
	sig := fromLE(s.Signature[:])
	if sig.Cmp(n) >= 0 {
		return errors.New("sigstruct: signature is not less than the modulus")
	}
	data, err := s.SigningData()
	if err != nil {
		return err
	}
	digest := sha256.Sum256(data)
	pub := &rsa.PublicKey{N: n, E: KeyExponent}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig.FillBytes(make([]byte, KeySize))); err != nil {
		return fmt.Errorf("sigstruct: signature does not verify under the SIGSTRUCT modulus: %w", err)
	}
	q1, q2 := quotients(sig, n)
	var want [KeySize]byte
	putLE(want[:], q1)
	if want != s.Q1 {
		return errors.New("sigstruct: q1 is not floor(signature^2 / modulus)")
	}
	putLE(want[:], q2)
	if want != s.Q2 {
		return errors.New("sigstruct: q2 is not floor((signature^3 - q1*signature*modulus) / modulus)")
	}
	return nil
}

// MRSigner returns SHA-256 of the modulus field, the enclave's MRSIGNER.
func (s *Sigstruct) MRSigner() [32]byte {
	return sha256.Sum256(s.Modulus[:])
}

// Info returns the identity fields a verifier or policy needs.
func (s *Sigstruct) Info() SigstructInfo {
	return SigstructInfo{
		MREnclave:  Measurement(s.EnclaveHash),
		MRSigner:   Measurement(s.MRSigner()),
		ISVProdID:  s.ISVProdID,
		ISVSVN:     s.ISVSVN,
		Debug:      s.Attributes.Flags&FlagDebug != 0,
		Date:       s.Date.String(),
		Attributes: HexBytes(s.Attributes.Bytes()),
		MiscSelect: s.MiscSelect,
	}
}

// SigstructInfo is the enclave identity in a SIGSTRUCT; it marshals to JSON
// (and YAML) with byte strings in lower-case hex.
type SigstructInfo struct {
	MREnclave Measurement `json:"mr_enclave" yaml:"mr_enclave"`
	MRSigner  Measurement `json:"mr_signer" yaml:"mr_signer"`
	ISVProdID uint16      `json:"isv_prod_id" yaml:"isv_prod_id"`
	ISVSVN    uint16      `json:"isv_svn" yaml:"isv_svn"`
	// Debug is ATTRIBUTES.FLAGS bit 1: the enclave can be debugged and
	// offers no confidentiality.
	Debug bool `json:"debug" yaml:"debug"`
	// Date is the SIGSTRUCT date, YYYY-MM-DD.
	Date string `json:"date" yaml:"date"`
	// Attributes is ATTRIBUTES as in an SGX report: FLAGS ‖ XFRM, 16 bytes.
	Attributes HexBytes `json:"attributes" yaml:"attributes"`
	MiscSelect uint32   `json:"misc_select" yaml:"misc_select"`
}

// Measurement is a 32-byte SGX measurement (MRENCLAVE, MRSIGNER). It
// marshals as 64 lower-case hex digits.
type Measurement [32]byte

// String returns m in lower-case hex.
func (m Measurement) String() string { return hex.EncodeToString(m[:]) }

// MarshalText returns m in lower-case hex.
func (m Measurement) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses 64 hex digits.
func (m *Measurement) UnmarshalText(b []byte) error {
	if len(b) != 2*len(m) {
		return fmt.Errorf("measurement: %d hex digits, want %d", len(b), 2*len(m))
	}
	var v Measurement
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("measurement: %w", err)
	}
	*m = v
	return nil
}

// HexBytes is a byte string that marshals as lower-case hex.
type HexBytes []byte

// String returns h in lower-case hex.
func (h HexBytes) String() string { return hex.EncodeToString(h) }

// MarshalText returns h in lower-case hex.
func (h HexBytes) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses hex digits.
func (h *HexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("hex bytes: %w", err)
	}
	*h = v
	return nil
}

func fromLE(b []byte) *big.Int {
	be := bytes.Clone(b)
	reverse(be)
	return new(big.Int).SetBytes(be)
}

// putLE writes v into dst little-endian; v must fit.
func putLE(dst []byte, v *big.Int) {
	v.FillBytes(dst)
	reverse(dst)
}
