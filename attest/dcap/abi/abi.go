// Package abi converts Intel DCAP quotes between their binary encoding and Go
// structs: the quote header, the SGX report body (also used for the QE
// report), the TDX TD report bodies (TDX 1.0 and 1.5), the ECDSA signature
// data and its certification data.
//
// It is the "parse" stage of teeml's parse → verify → validate flow and does
// no cryptography. Every parser checks bounds before each read, never panics
// and names the field that failed in its error.
//
// Layout references: Intel SGX ECDSA Quote Library API (quote v3) and Intel
// TDX DCAP Quoting Library API (quote v4/v5).
package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes of fixed-length structures, in bytes.
const (
	HeaderSize          = 48
	EnclaveReportSize   = 384
	TDReport10Size      = 584
	TDReport15Size      = 648
	SignatureSize       = 64 // ECDSA P-256 r‖s, 32 bytes each, big endian
	AttestationKeySize  = 64 // ECDSA P-256 public key X‖Y, 32 bytes each, big endian
	bodyDescriptorSize  = 6  // v5: body type (2) ‖ body size (4)
	sigDataLenSize      = 4
	certDataHeaderSize  = 6 // type (2) ‖ size (4)
	qeAuthDataSizeSize  = 2
	MaxCertificationLen = 1 << 20 // sanity bound on embedded certification data
)

// Quote versions.
const (
	QuoteVersion3 = 3 // SGX ECDSA quote
	QuoteVersion4 = 4 // TDX 1.0 (or SGX) quote
	QuoteVersion5 = 5 // quote with explicit body type (TDX 1.5)
)

// AttestationKeyTypeECDSAP256 is the only attestation key type supported by
// Intel's quoting enclaves in practice (ECDSA-256-with-P-256 curve).
const AttestationKeyTypeECDSAP256 = 2

// TEE types in the quote header.
const (
	TEETypeSGX uint32 = 0x00000000
	TEETypeTDX uint32 = 0x00000081
)

// Body types (explicit in v5 quotes, implied by TEE type in v3/v4).
const (
	BodyTypeSGX  uint16 = 1 // SGX enclave report, 384 bytes
	BodyTypeTD10 uint16 = 2 // TDX 1.0 TD report, 584 bytes
	BodyTypeTD15 uint16 = 3 // TDX 1.5 TD report, 648 bytes
)

// Certification data types.
const (
	CertDataPPIDCleartext     uint16 = 1
	CertDataPPIDRSA2048       uint16 = 2
	CertDataPPIDRSA3072       uint16 = 3
	CertDataPCKLeaf           uint16 = 4
	CertDataPCKChain          uint16 = 5 // PEM: PCK leaf ‖ intermediate CA ‖ root CA
	CertDataQEReport          uint16 = 6 // QE report certification data (v4/v5)
	CertDataPlatformManifest  uint16 = 7
	certDataTypeMaxKnownValue        = 7
)

// IntelQEVendorID is the QE vendor ID of Intel's quoting enclaves.
var IntelQEVendorID = [16]byte{0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07}

// ErrTruncated is wrapped by errors for input that ends before a field.
var ErrTruncated = errors.New("truncated")

// FieldError reports a problem with one field of a structure.
type FieldError struct {
	Struct string // e.g. "quote", "header", "qe report certification data"
	Field  string // e.g. "signature_data_len"
	Offset int    // byte offset of the field within the structure being parsed
	Err    error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("abi: %s: field %s (offset %d): %v", e.Struct, e.Field, e.Offset, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(st, field string, off int, format string, args ...any) error {
	return &FieldError{Struct: st, Field: field, Offset: off, Err: fmt.Errorf(format, args...)}
}

// reader is a bounds-checked cursor over a byte slice. All reads name the
// field being read so that errors say what was missing.
type reader struct {
	st  string
	b   []byte
	off int
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) take(field string, n int) ([]byte, error) {
	if n < 0 || r.remaining() < n {
		return nil, &FieldError{Struct: r.st, Field: field, Offset: r.off,
			Err: fmt.Errorf("%w: need %d bytes, have %d", ErrTruncated, n, r.remaining())}
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) u16(field string) (uint16, error) {
	s, err := r.take(field, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

func (r *reader) u32(field string) (uint32, error) {
	s, err := r.take(field, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

func (r *reader) into(field string, dst []byte) error {
	s, err := r.take(field, len(dst))
	if err != nil {
		return err
	}
	copy(dst, s)
	return nil
}

// end fails if bytes are left over.
func (r *reader) end(field string) error {
	if r.remaining() != 0 {
		return fieldErr(r.st, field, r.off, "%d unexpected trailing bytes", r.remaining())
	}
	return nil
}

func exactLen(st string, b []byte, n int) error {
	switch {
	case len(b) < n:
		return &FieldError{Struct: st, Field: "length", Offset: 0,
			Err: fmt.Errorf("%w: need exactly %d bytes, have %d", ErrTruncated, n, len(b))}
	case len(b) > n:
		return fieldErr(st, "length", n, "need exactly %d bytes, have %d", n, len(b))
	}
	return nil
}

func putU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func putU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
