package abi

import (
	"bytes"
	"fmt"
)

// Quote is a parsed DCAP quote (v3, v4 or v5) with ECDSA P-256 signature
// data.
type Quote struct {
	Header *Header
	// BodyType says which of the report fields is set. For v3/v4 quotes it is
	// implied by the TEE type; for v5 it is explicit.
	BodyType uint16
	// SGXReport is set for SGX quotes.
	SGXReport *EnclaveReport
	// TDReport is set for TDX quotes; for TDX 1.5 bodies it points at the
	// 1.0 part of TDReport15.
	TDReport *TDReport10
	// TDReport15 is set for v5 quotes with a TDX 1.5 body.
	TDReport15 *TDReport15
	// SignatureData is the quote's ECDSA signature data.
	SignatureData *SignatureData
	// TrailingZeros counts zero bytes after the signature data (some TDX
	// stacks pad quotes to a fixed buffer size). Non-zero trailing bytes are
	// an error.
	TrailingZeros int

	signed []byte // header ‖ [v5 body descriptor] ‖ body
}

// SignedData returns the bytes the attestation key signed: the header and
// the body (for v5 quotes also the body type and size in between).
func (q *Quote) SignedData() []byte { return q.signed }

// SignatureData is the ECDSA-256 quote signature data.
type SignatureData struct {
	// Signature is the quote signature (r‖s) by the attestation key over
	// SignedData.
	Signature [SignatureSize]byte
	// AttestationKey is the raw P-256 public key X‖Y.
	AttestationKey [AttestationKeySize]byte
	// CertificationData is the outer certification data of v4/v5 quotes
	// (type 6, QE report certification data). It is nil for v3 quotes, where
	// the QE report certification data follows the attestation key directly.
	CertificationData *CertificationData
	// QEReportCertificationData is always set: parsed from the type-6
	// certification data (v4/v5) or from the signature data itself (v3).
	QEReportCertificationData *QEReportCertificationData
}

// ParseQuote parses a DCAP quote. The returned quote does not alias b.
func ParseQuote(b []byte) (*Quote, error) {
	b = bytes.Clone(b)
	r := &reader{st: "quote", b: b}
	hb, err := r.take("header", HeaderSize)
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(&reader{st: "header", b: hb})
	if err != nil {
		return nil, err
	}
	if err := CheckHeader(h); err != nil {
		return nil, err
	}
	q := &Quote{Header: h}

	bodyType, bodySize := uint16(0), 0
	switch h.Version {
	case QuoteVersion3, QuoteVersion4:
		if h.TEEType == TEETypeTDX {
			bodyType, bodySize = BodyTypeTD10, TDReport10Size
		} else {
			bodyType, bodySize = BodyTypeSGX, EnclaveReportSize
		}
	case QuoteVersion5:
		off := r.off
		if bodyType, err = r.u16("body_type"); err != nil {
			return nil, err
		}
		size, err := r.u32("body_size")
		if err != nil {
			return nil, err
		}
		want := 0
		switch {
		case bodyType == BodyTypeSGX && h.TEEType == TEETypeSGX:
			want = EnclaveReportSize
		case bodyType == BodyTypeTD10 && h.TEEType == TEETypeTDX:
			want = TDReport10Size
		case bodyType == BodyTypeTD15 && h.TEEType == TEETypeTDX:
			want = TDReport15Size
		default:
			return nil, fieldErr("quote", "body_type", off, "body type %d invalid for TEE type %#x", bodyType, h.TEEType)
		}
		if int64(size) != int64(want) {
			return nil, fieldErr("quote", "body_size", off+2, "body size %d, want %d for body type %d", size, want, bodyType)
		}
		bodySize = want
	}
	q.BodyType = bodyType
	body, err := r.take("body", bodySize)
	if err != nil {
		return nil, err
	}
	q.signed = b[:r.off:r.off]
	switch bodyType {
	case BodyTypeSGX:
		if q.SGXReport, err = ParseEnclaveReport(body); err != nil {
			return nil, err
		}
	case BodyTypeTD10:
		if q.TDReport, err = ParseTDReport10(body); err != nil {
			return nil, err
		}
	case BodyTypeTD15:
		if q.TDReport15, err = ParseTDReport15(body); err != nil {
			return nil, err
		}
		q.TDReport = &q.TDReport15.TDReport10
	}

	sigLen, err := r.u32("signature_data_len")
	if err != nil {
		return nil, err
	}
	sigOff := r.off
	sigBytes, err := r.take("signature_data", int(sigLen))
	if err != nil {
		return nil, err
	}
	if q.SignatureData, err = parseSignatureData(sigBytes, h.Version, sigOff); err != nil {
		return nil, err
	}
	for i, c := range b[r.off:] {
		if c != 0 {
			return nil, fieldErr("quote", "trailing_data", r.off+i,
				"non-zero byte after signature data (signature_data_len %d)", sigLen)
		}
	}
	q.TrailingZeros = r.remaining()
	return q, nil
}

func parseSignatureData(b []byte, version uint16, base int) (*SignatureData, error) {
	r := &reader{st: "signature data", b: b}
	s := &SignatureData{}
	if err := r.into("signature", s.Signature[:]); err != nil {
		return nil, err
	}
	if err := r.into("attestation_key", s.AttestationKey[:]); err != nil {
		return nil, err
	}
	var err error
	if version == QuoteVersion3 {
		rest, _ := r.take("qe_report_certification_data", r.remaining())
		s.QEReportCertificationData, err = ParseQEReportCertificationData(rest)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	rest, _ := r.take("certification_data", r.remaining())
	if s.CertificationData, err = ParseCertificationData(rest); err != nil {
		return nil, err
	}
	if s.CertificationData.Type != CertDataQEReport {
		return nil, fieldErr("signature data", "certification_data.type", 2*SignatureSize,
			"outer certification data type %d, want %d (QE report certification data)",
			s.CertificationData.Type, CertDataQEReport)
	}
	if s.QEReportCertificationData, err = ParseQEReportCertificationData(s.CertificationData.Data); err != nil {
		return nil, err
	}
	return s, nil
}

// Marshal encodes the quote. For a quote produced by ParseQuote it returns
// the input bytes (without any trailing zero padding) — provided the
// structures were not modified in ways Marshal cannot represent.
func (q *Quote) Marshal() ([]byte, error) {
	if q.Header == nil || q.SignatureData == nil {
		return nil, fmt.Errorf("abi: quote: marshal: missing header or signature data")
	}
	b := q.Header.Marshal()
	var body []byte
	switch q.BodyType {
	case BodyTypeSGX:
		if q.SGXReport == nil {
			return nil, fmt.Errorf("abi: quote: marshal: body type SGX without SGX report")
		}
		body = q.SGXReport.Marshal()
	case BodyTypeTD10:
		if q.TDReport == nil {
			return nil, fmt.Errorf("abi: quote: marshal: body type TD 1.0 without TD report")
		}
		body = q.TDReport.Marshal()
	case BodyTypeTD15:
		if q.TDReport15 == nil {
			return nil, fmt.Errorf("abi: quote: marshal: body type TD 1.5 without TD 1.5 report")
		}
		body = q.TDReport15.Marshal()
	default:
		return nil, fmt.Errorf("abi: quote: marshal: unknown body type %d", q.BodyType)
	}
	if q.Header.Version == QuoteVersion5 {
		b = putU16(b, q.BodyType)
		b = putU32(b, uint32(len(body)))
	}
	b = append(b, body...)
	sig, err := q.SignatureData.marshal(q.Header.Version)
	if err != nil {
		return nil, err
	}
	b = putU32(b, uint32(len(sig)))
	return append(b, sig...), nil
}

// MarshalSigned returns what SignedData would return for the quote's
// current header and body; it is what a quote signer signs.
func (q *Quote) MarshalSigned() ([]byte, error) {
	b, err := q.Marshal()
	if err != nil {
		return nil, err
	}
	n := HeaderSize
	if q.Header.Version == QuoteVersion5 {
		n += bodyDescriptorSize
	}
	switch q.BodyType {
	case BodyTypeSGX:
		n += EnclaveReportSize
	case BodyTypeTD10:
		n += TDReport10Size
	case BodyTypeTD15:
		n += TDReport15Size
	}
	return b[:n], nil
}

func (s *SignatureData) marshal(version uint16) ([]byte, error) {
	if s.QEReportCertificationData == nil {
		return nil, fmt.Errorf("abi: signature data: marshal: missing QE report certification data")
	}
	b := append([]byte{}, s.Signature[:]...)
	b = append(b, s.AttestationKey[:]...)
	qe, err := s.QEReportCertificationData.Marshal()
	if err != nil {
		return nil, err
	}
	if version == QuoteVersion3 {
		return append(b, qe...), nil
	}
	cd := &CertificationData{Type: CertDataQEReport, Data: qe}
	return append(b, cd.Marshal()...), nil
}
