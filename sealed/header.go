package sealed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Magic opens every sealed file. It is followed by the format version.
const Magic = "TEEMLSEALED"

// Version is the only header version this package writes and reads.
const Version = 1

// Algorithm identifies the streaming AEAD that protects the body.
type Algorithm uint8

// AlgAES256GCMHKDF is Tink's streaming AEAD AES256_GCM_HKDF (HKDF-SHA256
// derives a per-file AES-256-GCM key from the data key, a random salt and the
// header as associated data; each segment is sealed under a nonce made of a
// random prefix, the segment counter and a final-segment flag).
const AlgAES256GCMHKDF Algorithm = 1

func (a Algorithm) String() string {
	if a == AlgAES256GCMHKDF {
		return "AES256-GCM-HKDF-SHA256 (Tink streaming AEAD)"
	}
	return fmt.Sprintf("unknown algorithm %d", uint8(a))
}

// Limits of the v1 header. They keep a hostile header from making the reader
// allocate much memory: the whole header is at most 11+1+1+4+2+256+2+4096 bytes.
const (
	MaxKeyIDLen    = 256
	MaxWrappedLen  = 4096
	MinSegmentSize = 64 << 10
	MaxSegmentSize = 8 << 20
)

// DefaultSegmentSize is the ciphertext segment size teeml writes: 1 MiB.
const DefaultSegmentSize = 1 << 20

// fixedLen is the length of the header up to and including the key ID length.
const fixedLen = len(Magic) + 1 + 1 + 4 + 2

// Header is the clear-text prefix of a sealed file. All of its bytes are the
// associated data of the streaming AEAD, so changing any of them makes the
// first segment fail authentication.
type Header struct {
	Algorithm   Algorithm
	SegmentSize int    // ciphertext segment size in bytes
	KeyID       string // the key source's name for the key-encryption key
	Wrapped     []byte // the data key, wrapped by the key source (opaque)
}

// HeaderError reports a malformed header; Field names the offending field.
type HeaderError struct {
	Field  string
	Reason string
}

func (e *HeaderError) Error() string { return "sealed header: " + e.Field + ": " + e.Reason }

// ErrNotSealed is wrapped by the error for input that does not start with Magic.
var ErrNotSealed = errors.New("not a teeml sealed file")

// validate checks the fields a writer controls against the v1 limits.
func (h *Header) validate() error {
	if h.Algorithm != AlgAES256GCMHKDF {
		return &HeaderError{"algorithm", fmt.Sprintf("%d is not supported (want %d, %s)", uint8(h.Algorithm), uint8(AlgAES256GCMHKDF), AlgAES256GCMHKDF)}
	}
	if h.SegmentSize < MinSegmentSize || h.SegmentSize > MaxSegmentSize {
		return &HeaderError{"segment size", fmt.Sprintf("%d outside [%d, %d]", h.SegmentSize, MinSegmentSize, MaxSegmentSize)}
	}
	if err := ValidKeyID(h.KeyID); err != nil {
		return &HeaderError{"key ID", err.Error()}
	}
	if len(h.Wrapped) == 0 || len(h.Wrapped) > MaxWrappedLen {
		return &HeaderError{"wrapped key", fmt.Sprintf("length %d outside [1, %d]", len(h.Wrapped), MaxWrappedLen)}
	}
	// Tink needs room for its own 40-byte stream header and one tag in the
	// first segment; with the caps above this always holds, but check anyway
	// so a future change of limits cannot produce unreadable files.
	if h.Len()+tinkHeaderLen+tagLen >= h.SegmentSize {
		return &HeaderError{"segment size", fmt.Sprintf("%d too small for a %d-byte header", h.SegmentSize, h.Len())}
	}
	return nil
}

// ValidKeyID reports whether id can name a key: 1 to MaxKeyIDLen bytes of
// UTF-8 without control characters (it is printed in errors and logs).
func ValidKeyID(id string) error {
	if id == "" {
		return errors.New("empty")
	}
	if len(id) > MaxKeyIDLen {
		return fmt.Errorf("%d bytes, at most %d", len(id), MaxKeyIDLen)
	}
	if !utf8.ValidString(id) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// Len is the encoded length of h in bytes.
func (h *Header) Len() int { return fixedLen + len(h.KeyID) + 2 + len(h.Wrapped) }

// MarshalBinary encodes h; it fails if h breaks a v1 limit.
func (h *Header) MarshalBinary() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, h.Len())
	b = append(b, Magic...)
	b = append(b, Version, byte(h.Algorithm))
	b = binary.BigEndian.AppendUint32(b, uint32(h.SegmentSize))
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.KeyID)))
	b = append(b, h.KeyID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Wrapped)))
	b = append(b, h.Wrapped...)
	return b, nil
}

// ReadHeader reads and parses a header from r, reading exactly the header's
// bytes and no more. It returns the parsed header and its raw bytes (the
// associated data for the body).
func ReadHeader(r io.Reader) (*Header, []byte, error) {
	raw := make([]byte, fixedLen, fixedLen+MaxKeyIDLen+2+MaxWrappedLen)
	if n, err := io.ReadFull(r, raw); err != nil {
		if n == 0 {
			return nil, nil, fmt.Errorf("sealed header: %w (empty input)", ErrNotSealed)
		}
		if n >= len(Magic) && string(raw[:len(Magic)]) != Magic || n < len(Magic) && !bytes.HasPrefix([]byte(Magic), raw[:n]) {
			return nil, nil, fmt.Errorf("sealed header: %w (no %q magic)", ErrNotSealed, Magic)
		}
		return nil, nil, &HeaderError{"header", fmt.Sprintf("truncated: %d of at least %d bytes", n, fixedLen)}
	}
	if string(raw[:len(Magic)]) != Magic {
		return nil, nil, fmt.Errorf("sealed header: %w (no %q magic)", ErrNotSealed, Magic)
	}
	p := len(Magic)
	if v := raw[p]; v != Version {
		return nil, nil, &HeaderError{"version", fmt.Sprintf("%d is not supported (this teeml reads version %d)", v, Version)}
	}
	h := &Header{Algorithm: Algorithm(raw[p+1]), SegmentSize: int(binary.BigEndian.Uint32(raw[p+2:]))}
	idLen := int(binary.BigEndian.Uint16(raw[p+6:]))
	if idLen == 0 || idLen > MaxKeyIDLen {
		return nil, nil, &HeaderError{"key ID", fmt.Sprintf("length %d outside [1, %d]", idLen, MaxKeyIDLen)}
	}
	raw = raw[:fixedLen+idLen+2]
	if _, err := io.ReadFull(r, raw[fixedLen:]); err != nil {
		return nil, nil, &HeaderError{"key ID", "truncated"}
	}
	h.KeyID = string(raw[fixedLen : fixedLen+idLen])
	wLen := int(binary.BigEndian.Uint16(raw[fixedLen+idLen:]))
	if wLen == 0 || wLen > MaxWrappedLen {
		return nil, nil, &HeaderError{"wrapped key", fmt.Sprintf("length %d outside [1, %d]", wLen, MaxWrappedLen)}
	}
	start := len(raw)
	raw = raw[:start+wLen]
	if _, err := io.ReadFull(r, raw[start:]); err != nil {
		return nil, nil, &HeaderError{"wrapped key", "truncated"}
	}
	h.Wrapped = raw[start:]
	if err := h.validate(); err != nil {
		return nil, nil, err
	}
	return h, raw, nil
}

// ParseHeader parses a header at the start of b and returns it with its length.
func ParseHeader(b []byte) (*Header, int, error) {
	h, raw, err := ReadHeader(bytes.NewReader(b))
	if err != nil {
		return nil, 0, err
	}
	return h, len(raw), nil
}
