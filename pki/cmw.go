package pki

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// CMWType is the media type of teeml's evidence inside the CSR's
// conceptual message wrapper (CMW, draft-ietf-rats-msg-wrap): the DER
// TeemlEvidence structure (evidenceExt). It is in the vendor tree and not
// yet registered with IANA; a CMW-aware parser can unwrap the record and
// dispatch on it without knowing teeml.
const CMWType = "application/vnd.teeml.evidence+der"

// marshalCMW encodes the CMW CBOR record [type, value] (RFC 8949: an array
// of two, a text string and a byte string, lengths in the shortest form).
func marshalCMW(typ string, value []byte) []byte {
	out := []byte{0x82}
	out = cborHead(out, 3, uint64(len(typ)))
	out = append(out, typ...)
	out = cborHead(out, 2, uint64(len(value)))
	return append(out, value...)
}

func cborHead(out []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(out, m|byte(n))
	case n <= 0xff:
		return append(out, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(out, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(out, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(out, m|27), n)
}

// parseCMW decodes a CMW CBOR record strictly: an array of exactly two
// items, a definite-length text string type and byte string value, each
// length in its shortest form, nothing after. The tag form (#6.<n>) and
// the JSON form are refused by name.
func parseCMW(b []byte) (typ string, value []byte, err error) {
	if len(b) == 0 {
		return "", nil, errors.New("CMW: empty")
	}
	switch {
	case b[0] == '[':
		return "", nil, errors.New("CMW: JSON record form not supported, want the CBOR record [type, value]")
	case b[0]>>5 == 6:
		return "", nil, errors.New("CMW: CBOR tag form not supported, want the CBOR record [type, value]")
	case b[0] == 0x83:
		return "", nil, errors.New("CMW: record with an indicator (3 items) not supported, want [type, value]")
	case b[0] != 0x82:
		return "", nil, fmt.Errorf("CMW: first byte 0x%02x, want 0x82 (CBOR array of two)", b[0])
	}
	rest := b[1:]
	t, rest, err := cborItem(rest, 3, "type")
	if err != nil {
		return "", nil, err
	}
	v, rest, err := cborItem(rest, 2, "value")
	if err != nil {
		return "", nil, err
	}
	if len(rest) != 0 {
		return "", nil, fmt.Errorf("CMW: %d bytes after the record", len(rest))
	}
	return string(t), v, nil
}

func cborItem(b []byte, major byte, what string) ([]byte, []byte, error) {
	kinds := map[byte]string{2: "byte string", 3: "text string"}
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("CMW: %s missing", what)
	}
	if b[0]>>5 != major {
		return nil, nil, fmt.Errorf("CMW: %s is CBOR major type %d, want a %s", what, b[0]>>5, kinds[major])
	}
	ai := b[0] & 0x1f
	b = b[1:]
	var n uint64
	var min uint64
	switch {
	case ai < 24:
		n = uint64(ai)
	case ai == 24 && len(b) >= 1:
		n, b, min = uint64(b[0]), b[1:], 24
	case ai == 25 && len(b) >= 2:
		n, b, min = uint64(binary.BigEndian.Uint16(b)), b[2:], 0x100
	case ai == 26 && len(b) >= 4:
		n, b, min = uint64(binary.BigEndian.Uint32(b)), b[4:], 0x10000
	case ai == 27 && len(b) >= 8:
		n, b, min = binary.BigEndian.Uint64(b), b[8:], 0x100000000
	case ai == 31:
		return nil, nil, fmt.Errorf("CMW: %s has indefinite length", what)
	default:
		return nil, nil, fmt.Errorf("CMW: %s length truncated or reserved", what)
	}
	if n < min {
		return nil, nil, fmt.Errorf("CMW: %s length %d not in its shortest form", what, n)
	}
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("CMW: %s of %d bytes, only %d left", what, n, len(b))
	}
	return b[:n], b[n:], nil
}
