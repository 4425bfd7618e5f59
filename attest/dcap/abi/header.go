package abi

import "fmt"

// Header is the 48-byte quote header.
type Header struct {
	Version            uint16
	AttestationKeyType uint16
	// TEEType is 0 (SGX) or 0x81 (TDX). In v3 quotes this field is reserved
	// and zero.
	TEEType uint32
	// QESVN and PCESVN are the quoting enclave and PCE SVNs (v3). In v4/v5
	// quotes these two fields are reserved.
	QESVN      uint16
	PCESVN     uint16
	QEVendorID [16]byte
	UserData   [20]byte
}

// ParseHeader parses exactly HeaderSize bytes. It checks only the encoding;
// CheckHeader checks the values.
func ParseHeader(b []byte) (*Header, error) {
	if err := exactLen("header", b, HeaderSize); err != nil {
		return nil, err
	}
	return parseHeader(&reader{st: "header", b: b})
}

func parseHeader(r *reader) (*Header, error) {
	h := &Header{}
	var err error
	if h.Version, err = r.u16("version"); err != nil {
		return nil, err
	}
	if h.AttestationKeyType, err = r.u16("att_key_type"); err != nil {
		return nil, err
	}
	if h.TEEType, err = r.u32("tee_type"); err != nil {
		return nil, err
	}
	if h.QESVN, err = r.u16("qe_svn"); err != nil {
		return nil, err
	}
	if h.PCESVN, err = r.u16("pce_svn"); err != nil {
		return nil, err
	}
	if err = r.into("qe_vendor_id", h.QEVendorID[:]); err != nil {
		return nil, err
	}
	if err = r.into("user_data", h.UserData[:]); err != nil {
		return nil, err
	}
	return h, nil
}

// CheckHeader checks that the header describes a quote this package can
// parse: version 3 (SGX), 4 or 5 (SGX or TDX), ECDSA P-256 attestation key.
func CheckHeader(h *Header) error {
	switch h.Version {
	case QuoteVersion3:
		if h.TEEType != TEETypeSGX {
			return fieldErr("header", "tee_type", 4, "quote version 3 with TEE type %#x (v3 is SGX only)", h.TEEType)
		}
	case QuoteVersion4, QuoteVersion5:
		if h.TEEType != TEETypeSGX && h.TEEType != TEETypeTDX {
			return fieldErr("header", "tee_type", 4, "unsupported TEE type %#x", h.TEEType)
		}
	default:
		return fieldErr("header", "version", 0, "unsupported quote version %d", h.Version)
	}
	if h.AttestationKeyType != AttestationKeyTypeECDSAP256 {
		return fieldErr("header", "att_key_type", 2, "unsupported attestation key type %d (want %d, ECDSA P-256)",
			h.AttestationKeyType, AttestationKeyTypeECDSAP256)
	}
	return nil
}

// Marshal encodes the header in its 48-byte form.
func (h *Header) Marshal() []byte {
	b := make([]byte, 0, HeaderSize)
	b = putU16(b, h.Version)
	b = putU16(b, h.AttestationKeyType)
	b = putU32(b, h.TEEType)
	b = putU16(b, h.QESVN)
	b = putU16(b, h.PCESVN)
	b = append(b, h.QEVendorID[:]...)
	b = append(b, h.UserData[:]...)
	return b
}

func (h *Header) String() string {
	return fmt.Sprintf("quote header v%d key type %d tee %#x", h.Version, h.AttestationKeyType, h.TEEType)
}
