// Package pemcerts reads PEM certificate bundles the way RFC 7468 section 2
// allows them to be written: explanatory text may stand before, between and
// after the encapsulation boundaries (Intel's and AMD's published PEM files
// and `openssl x509 -text` output carry such text). The text is ignored; the
// certificates are not: a block that begins but does not decode, a block of
// another type or with headers, a boundary line outside a block, or a bundle
// without any certificate is refused with a one-line error naming the block
// and its line.
package pemcerts

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrNoCertificate is returned (wrapped) for input holding no PEM
// certificate at all.
var ErrNoCertificate = errors.New("no PEM certificate found")

var (
	beginMark = []byte("-----BEGIN ")
	endMark   = []byte("-----END ")
	boundary  = []byte("-----")
)

// DER returns the DER bytes of every "CERTIFICATE" block in b, in order. It
// does not parse the certificates: callers do, with their own error prefix.
func DER(b []byte) ([][]byte, error) {
	var out [][]byte
	pos := 0
	for pos < len(b) {
		eol := bytes.IndexByte(b[pos:], '\n')
		lineEnd := len(b)
		if eol >= 0 {
			lineEnd = pos + eol + 1
		}
		line := b[pos:lineEnd]
		switch {
		case bytes.HasPrefix(line, beginMark):
			der, next, err := block(b, pos, len(out))
			if err != nil {
				return nil, err
			}
			out = append(out, der)
			pos = next
			continue
		case bytes.HasPrefix(line, boundary) && bytes.Contains(line, endMark):
			return nil, fmt.Errorf("line %d: PEM END boundary outside a block (truncated or damaged certificate)", lineNo(b, pos))
		}
		pos = lineEnd
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}

// block decodes the PEM block whose BEGIN line starts at b[start] and
// returns its DER and the offset just after its END line.
func block(b []byte, start, n int) ([]byte, int, error) {
	where := func() string { return fmt.Sprintf("PEM block %d (line %d)", n+1, lineNo(b, start)) }
	j := bytes.Index(b[start:], append([]byte("\n"), endMark...))
	if j < 0 {
		return nil, 0, fmt.Errorf("%s: malformed: no END line", where())
	}
	endStart := start + j + 1
	end := len(b)
	if k := bytes.IndexByte(b[endStart:], '\n'); k >= 0 {
		end = endStart + k + 1
	}
	seg := b[start:end]
	if bytes.Contains(seg[len(beginMark):], append([]byte("\n"), beginMark...)) {
		return nil, 0, fmt.Errorf("%s: malformed: another BEGIN line before its END line", where())
	}
	blk, rest := pem.Decode(seg)
	if blk == nil || len(bytes.TrimSpace(rest)) != 0 {
		return nil, 0, fmt.Errorf("%s: malformed: not valid PEM (bad base64 or mismatched END line)", where())
	}
	if blk.Type != "CERTIFICATE" {
		return nil, 0, fmt.Errorf("%s: type %q, want CERTIFICATE", where(), blk.Type)
	}
	if len(blk.Headers) != 0 {
		return nil, 0, fmt.Errorf("%s: %d PEM headers, want none", where(), len(blk.Headers))
	}
	if len(blk.Bytes) == 0 {
		return nil, 0, fmt.Errorf("%s: malformed: empty certificate", where())
	}
	return blk.Bytes, end, nil
}

func lineNo(b []byte, off int) int { return bytes.Count(b[:off], []byte("\n")) + 1 }
