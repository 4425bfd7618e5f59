package psi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxIDLen is the longest ID accepted, in bytes after normalisation.
const MaxIDLen = 1024

// NormalizeID returns the form of id that the intersection compares: its
// Unicode NFC normalisation, so that "é" typed as one code point (NFC) and
// as "e" + combining acute (NFD) is the same user on both sides. Nothing
// else is changed (no case folding, no trimming): IDs are identifiers, not
// names. Join code must apply the same function to its table's IDs.
func NormalizeID(id string) string { return norm.NFC.String(id) }

// IDReader reads an ID file: UTF-8 text, one ID per line. A trailing "\r"
// (CRLF files) and a UTF-8 byte order mark before the first line are
// removed; every other byte belongs to the ID. Empty lines, invalid UTF-8
// and IDs longer than MaxIDLen are refused with the line number.
type IDReader struct {
	sc   *bufio.Scanner
	name string
	line int
}

// NewIDReader reads IDs from r; name is used in error messages.
func NewIDReader(r io.Reader, name string) *IDReader {
	sc := bufio.NewScanner(r)
	// Room for a maximal ID written in a decomposed form plus CR.
	sc.Buffer(make([]byte, 0, 64<<10), 4*MaxIDLen+2)
	return &IDReader{sc: sc, name: name}
}

// Next returns the next ID, normalised with NormalizeID, or io.EOF.
func (r *IDReader) Next() (string, error) {
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return "", fmt.Errorf("ids %s:%d: line longer than %d bytes", r.name, r.line+1, 4*MaxIDLen)
			}
			return "", fmt.Errorf("ids %s: %w", r.name, err)
		}
		return "", io.EOF
	}
	r.line++
	b := r.sc.Bytes()
	if r.line == 1 {
		b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	}
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return "", fmt.Errorf("ids %s:%d: empty ID", r.name, r.line)
	case !utf8.Valid(b):
		return "", fmt.Errorf("ids %s:%d: not valid UTF-8", r.name, r.line)
	}
	id := norm.NFC.String(string(b))
	if len(id) > MaxIDLen {
		return "", fmt.Errorf("ids %s:%d: ID of %d bytes, longer than %d", r.name, r.line, len(id), MaxIDLen)
	}
	return id, nil
}

// Line is the number of lines read so far.
func (r *IDReader) Line() int { return r.line }
