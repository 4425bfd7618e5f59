package abi

import (
	"bytes"
	"encoding/pem"
	"fmt"
)

// CertificationData is a certification data structure: type (2 bytes),
// size (4 bytes) and that many bytes of data.
type CertificationData struct {
	Type uint16
	Data []byte
}

// ParseCertificationData parses a certification data structure that must
// span b exactly. The returned data aliases b.
func ParseCertificationData(b []byte) (*CertificationData, error) {
	r := &reader{st: "certification data", b: b}
	c := &CertificationData{}
	var err error
	if c.Type, err = r.u16("type"); err != nil {
		return nil, err
	}
	if c.Type == 0 || c.Type > certDataTypeMaxKnownValue {
		return nil, fieldErr("certification data", "type", 0, "unknown certification data type %d", c.Type)
	}
	size, err := r.u32("size")
	if err != nil {
		return nil, err
	}
	if size > MaxCertificationLen {
		return nil, fieldErr("certification data", "size", 2, "size %d exceeds limit %d", size, MaxCertificationLen)
	}
	if c.Data, err = r.take("data", int(size)); err != nil {
		return nil, err
	}
	if err := r.end("data"); err != nil {
		return nil, err
	}
	return c, nil
}

// Marshal encodes the certification data.
func (c *CertificationData) Marshal() []byte {
	b := make([]byte, 0, certDataHeaderSize+len(c.Data))
	b = putU16(b, c.Type)
	b = putU32(b, uint32(len(c.Data)))
	return append(b, c.Data...)
}

// QEReportCertificationData is the QE report, its signature by the PCK,
// the QE authentication data and the (inner) certification data that
// identifies the PCK. In v4/v5 quotes it is the payload of certification
// data type 6; in v3 quotes it is part of the signature data.
type QEReportCertificationData struct {
	QEReport *EnclaveReport
	// RawQEReport is the 384-byte QE report as signed by the PCK.
	RawQEReport       []byte
	QEReportSignature [SignatureSize]byte
	QEAuthData        []byte
	CertificationData *CertificationData
}

// ParseQEReportCertificationData parses QE report certification data that
// must span b exactly. The returned slices alias b.
func ParseQEReportCertificationData(b []byte) (*QEReportCertificationData, error) {
	const st = "qe report certification data"
	r := &reader{st: st, b: b}
	q := &QEReportCertificationData{}
	var err error
	if q.RawQEReport, err = r.take("qe_report", EnclaveReportSize); err != nil {
		return nil, err
	}
	if q.QEReport, err = parseEnclaveReportAs("qe report", q.RawQEReport); err != nil {
		return nil, err
	}
	if err = r.into("qe_report_signature", q.QEReportSignature[:]); err != nil {
		return nil, err
	}
	authLen, err := r.u16("qe_auth_data.size")
	if err != nil {
		return nil, err
	}
	if q.QEAuthData, err = r.take("qe_auth_data.data", int(authLen)); err != nil {
		return nil, err
	}
	off := r.off
	rest, _ := r.take("certification_data", r.remaining())
	if q.CertificationData, err = ParseCertificationData(rest); err != nil {
		if fe, ok := err.(*FieldError); ok {
			// Name the enclosing structure and make the offset absolute.
			return nil, &FieldError{Struct: st, Field: "certification_data." + fe.Field, Offset: off + fe.Offset, Err: fe.Err}
		}
		return nil, err
	}
	return q, nil
}

// Marshal encodes the QE report certification data.
func (q *QEReportCertificationData) Marshal() ([]byte, error) {
	if q.CertificationData == nil {
		return nil, fmt.Errorf("abi: qe report certification data: marshal: missing certification data")
	}
	if len(q.QEAuthData) > 0xFFFF {
		return nil, fmt.Errorf("abi: qe report certification data: marshal: qe auth data too long (%d)", len(q.QEAuthData))
	}
	report := q.RawQEReport
	if q.QEReport != nil {
		report = q.QEReport.Marshal()
	}
	if len(report) != EnclaveReportSize {
		return nil, fmt.Errorf("abi: qe report certification data: marshal: qe report has %d bytes", len(report))
	}
	b := append([]byte{}, report...)
	b = append(b, q.QEReportSignature[:]...)
	b = putU16(b, uint16(len(q.QEAuthData)))
	b = append(b, q.QEAuthData...)
	return append(b, q.CertificationData.Marshal()...), nil
}

// PCKChainPEM returns the PEM blocks of certification data type 5 (PCK leaf,
// intermediate CA, root CA). Anything after the last block other than
// whitespace and NUL padding is an error, as is any non-certificate block.
func PCKChainPEM(c *CertificationData) ([]*pem.Block, error) {
	const st = "certification data"
	if c.Type != CertDataPCKChain {
		return nil, fieldErr(st, "type", 0, "certification data type %d, want %d (PCK certificate chain)", c.Type, CertDataPCKChain)
	}
	var blocks []*pem.Block
	rest := c.Data
	for {
		trimmed := bytes.TrimLeft(rest, " \t\r\n")
		if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
			break
		}
		off := len(c.Data) - len(trimmed)
		blk, next := pem.Decode(trimmed)
		if blk == nil {
			return nil, fieldErr(st, "data", off, "malformed PEM block %d", len(blocks))
		}
		if blk.Type != "CERTIFICATE" || len(blk.Headers) != 0 {
			return nil, fieldErr(st, "data", off, "PEM block %d has type %q (with %d headers), want CERTIFICATE", len(blocks), blk.Type, len(blk.Headers))
		}
		blocks = append(blocks, blk)
		rest = next
	}
	for i, ch := range rest {
		switch ch {
		case 0, ' ', '\t', '\r', '\n':
		default:
			return nil, fieldErr(st, "data", len(c.Data)-len(rest)+i, "unexpected byte %#02x after the last PEM certificate", ch)
		}
	}
	if len(blocks) == 0 {
		return nil, fieldErr(st, "data", 0, "no PEM certificate found")
	}
	return blocks, nil
}
