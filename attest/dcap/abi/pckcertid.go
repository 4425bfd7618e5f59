package abi

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// CertDataName names a certification data type as Intel's quote format
// does (Intel SGX ECDSA Quote Library API, "Certification Data Type").
func CertDataName(t uint16) string {
	switch t {
	case CertDataPPIDCleartext:
		return "PPID in cleartext, CPUSVN, PCESVN, PCEID"
	case CertDataPPIDRSA2048:
		return "PPID encrypted with RSA-2048-OAEP, CPUSVN, PCESVN, PCEID"
	case CertDataPPIDRSA3072:
		return "PPID encrypted with RSA-3072-OAEP, CPUSVN, PCESVN, PCEID"
	case CertDataPCKLeaf:
		return "PCK leaf certificate"
	case CertDataPCKChain:
		return "PCK certificate chain"
	case CertDataQEReport:
		return "QE report certification data"
	case CertDataPlatformManifest:
		return "platform manifest"
	}
	return "unknown"
}

// PCKCertID is the platform identification of certification data types 1
// to 3: what Intel PCS needs to return the platform's PCK certificate
// (GET /sgx/certification/v4/pckcert). It carries no certificate, so a
// quote with it verifies only with the PCK certificate obtained from PCS.
type PCKCertID struct {
	Type uint16
	// PPID is the platform provisioning ID: 16 bytes in cleartext (type
	// 1), or encrypted with the PCS's RSA-2048 (256 bytes, type 2) or
	// RSA-3072 (384 bytes, type 3) key, OAEP.
	PPID   []byte
	CPUSVN [16]byte
	PCESVN uint16
	PCEID  uint16
}

// ParsePCKCertID parses certification data of type 1, 2 or 3: PPID ‖
// CPUSVN (16) ‖ PCESVN (2, LE) ‖ PCEID (2, LE), exactly.
func ParsePCKCertID(c *CertificationData) (*PCKCertID, error) {
	const st = "certification data"
	var n int
	switch c.Type {
	case CertDataPPIDCleartext:
		n = 16
	case CertDataPPIDRSA2048:
		n = 256
	case CertDataPPIDRSA3072:
		n = 384
	default:
		return nil, fieldErr(st, "type", 0, "certification data type %d (%s) is not a PCK certificate ID (types 1 to 3)", c.Type, CertDataName(c.Type))
	}
	if len(c.Data) != n+20 {
		return nil, fieldErr(st, "data", 0, "type %d (%s) is %d bytes, want %d", c.Type, CertDataName(c.Type), len(c.Data), n+20)
	}
	r := &reader{st: st, b: c.Data}
	id := &PCKCertID{Type: c.Type}
	var err error
	if id.PPID, err = r.take("ppid", n); err != nil {
		return nil, err
	}
	if err = r.into("cpusvn", id.CPUSVN[:]); err != nil {
		return nil, err
	}
	if id.PCESVN, err = r.u16("pcesvn"); err != nil {
		return nil, err
	}
	if id.PCEID, err = r.u16("pceid"); err != nil {
		return nil, err
	}
	return id, r.end("pceid")
}

// String is a one-line description for errors, e.g. "type 2 (PPID
// encrypted with RSA-2048-OAEP, …) PCEID 0000 PCESVN 13 CPUSVN 0e0e…".
func (id *PCKCertID) String() string {
	s := fmt.Sprintf("type %d (%s), PCEID %04x, PCESVN %d, CPUSVN %s", id.Type, CertDataName(id.Type), id.PCEID, id.PCESVN, hex.EncodeToString(id.CPUSVN[:]))
	if id.Type == CertDataPPIDCleartext {
		s += ", PPID " + hex.EncodeToString(id.PPID)
	}
	return s
}

// PCKLeafDER returns the PCK leaf certificate of certification data type
// 4: one PEM CERTIFICATE block (NUL padding and whitespace after it
// allowed, as for type 5) or the bare DER certificate.
func PCKLeafDER(c *CertificationData) ([]byte, error) {
	const st = "certification data"
	if c.Type != CertDataPCKLeaf {
		return nil, fieldErr(st, "type", 0, "certification data type %d (%s), want %d (%s)", c.Type, CertDataName(c.Type), CertDataPCKLeaf, CertDataName(CertDataPCKLeaf))
	}
	if len(c.Data) > 0 && c.Data[0] == 0x30 { // DER SEQUENCE
		return c.Data, nil
	}
	blocks, err := PCKChainPEM(&CertificationData{Type: CertDataPCKChain, Data: c.Data})
	if err != nil {
		return nil, fieldErr(st, "data", 0, "type 4 (PCK leaf certificate): %v", unwrapField(err))
	}
	if len(blocks) != 1 {
		return nil, fieldErr(st, "data", 0, "type 4 (PCK leaf certificate) holds %d certificates, want 1", len(blocks))
	}
	return blocks[0].Bytes, nil
}

func unwrapField(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Err
	}
	return err
}
