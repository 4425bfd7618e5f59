// Package bigdl reads files encrypted by BigDL PPML's BigDLEncrypt
// ("AES_CBC_PKCS5PADDING" mode, the .cbc files of BigDL PPML's encrypted
// CSV/JSON), so that data can be migrated into teeml's sealed format.
//
// Layout (all integers big-endian):
//
//	0    4    length k of the encrypted (KMS-wrapped) data key
//	4    4    length of the IV (16)
//	8    k    encrypted data key, as the KMS returned it (UTF-8)
//	8+k  16   AES-CBC IV
//	...       0x80 padding up to byte 400
//	400  n    AES-128-CBC ciphertext with PKCS#5 padding (n a multiple of 16)
//	400+n 32  HMAC-SHA256 tag
//
// Keys: BigDL takes the bytes of its plaintext data key string; bytes [0,16)
// are the HMAC-SHA256 key and bytes [16,32) the AES-128 key.
//
// BigDL's writer computes the tag over the ciphertext only. Its reader
// recomputes an HMAC over the decrypted plaintext (so the two never match)
// and raises "hmac not match" only when they are equal, i.e. it never rejects
// a modified file. This package verifies the tag the writer actually
// produced, HMAC-SHA256(key[0:16], ciphertext), in constant time, before any
// plaintext is released. The format cannot authenticate what BigDL left out
// of the tag: the 400-byte header, including the IV, so a modified IV changes
// the first 16 plaintext bytes undetectably. Re-seal migrated data with
// package sealed, whose header is bound to every segment.
package bigdl

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"unicode/utf8"

	"github.com/teeml/teeml/internal/atomicfile"
)

// Format constants of BigDL PPML's .cbc files.
const (
	HeaderLen = 400
	IVLen     = aes.BlockSize
	TagLen    = sha256.Size
	// KeyLen is the number of data key bytes BigDL uses: 16 for HMAC, 16 for AES.
	KeyLen  = 32
	padByte = 0x80
)

// Header is the parsed 400-byte header.
type Header struct {
	EncryptedDataKey string // the KMS-wrapped data key; informational for teeml
	IV               []byte
}

// FormatError reports a file that does not follow the layout.
type FormatError struct{ Reason string }

func (e *FormatError) Error() string { return "bigdl-cbc: " + e.Reason }

// ErrTagMismatch is returned when the HMAC-SHA256 tag does not match the
// ciphertext: the file was modified, or the data key is wrong.
var ErrTagMismatch = errors.New("bigdl-cbc: HMAC-SHA256 tag does not match the ciphertext (file modified or wrong data key); no plaintext was written")

// ParseHeader parses the 400-byte header strictly.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < HeaderLen {
		return nil, &FormatError{fmt.Sprintf("header: %d bytes, want %d", len(b), HeaderLen)}
	}
	b = b[:HeaderLen]
	kl := int64(int32(binary.BigEndian.Uint32(b[0:4])))
	il := int64(int32(binary.BigEndian.Uint32(b[4:8])))
	if il != IVLen {
		return nil, &FormatError{fmt.Sprintf("header: IV length %d, want %d", il, IVLen)}
	}
	if kl < 0 || 8+kl+il > HeaderLen {
		return nil, &FormatError{fmt.Sprintf("header: encrypted data key length %d does not fit in %d bytes", kl, HeaderLen)}
	}
	edk := b[8 : 8+kl]
	if !utf8.Valid(edk) {
		return nil, &FormatError{"header: encrypted data key is not UTF-8"}
	}
	end := 8 + kl + il
	for i, c := range b[end:] {
		if c != padByte {
			return nil, &FormatError{fmt.Sprintf("header: byte %d is %#02x, want padding %#02x", int(end)+i, c, padByte)}
		}
	}
	return &Header{EncryptedDataKey: string(edk), IV: bytes.Clone(b[8+kl : end])}, nil
}

// keys splits BigDL's plaintext data key into the HMAC and AES keys.
func keys(dataKey []byte) (macKey, encKey []byte, err error) {
	if len(dataKey) < KeyLen {
		return nil, nil, fmt.Errorf("bigdl-cbc: data key is %d bytes, BigDL needs at least %d (HMAC key = bytes 0-15, AES key = bytes 16-31)", len(dataKey), KeyLen)
	}
	return dataKey[:16], dataKey[16:32], nil
}

// Inspect reads the header of a .cbc file of the given size.
func Inspect(r io.Reader, size int64) (*Header, int64, error) {
	hb := make([]byte, HeaderLen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, 0, &FormatError{fmt.Sprintf("file is %d bytes, shorter than the %d-byte header", size, HeaderLen)}
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return nil, 0, err
	}
	n := size - HeaderLen - TagLen
	if n < aes.BlockSize || n%aes.BlockSize != 0 {
		return nil, 0, &FormatError{fmt.Sprintf("ciphertext is %d bytes: truncated or not a BigDL AES-CBC file (want a positive multiple of 16 between the header and the 32-byte tag)", n)}
	}
	return h, n, nil
}

// Decrypt reads a whole .cbc file from r (of the given size) and writes the
// plaintext to w. It decrypts while it authenticates, so w receives
// unauthenticated plaintext: callers must discard w's content on error.
// DecryptFile does that; use it unless w is a temporary buffer.
func Decrypt(ctx context.Context, r io.Reader, size int64, dataKey []byte, w io.Writer) (*Header, int64, error) {
	macKey, encKey, err := keys(dataKey)
	if err != nil {
		return nil, 0, err
	}
	h, n, err := Inspect(r, size)
	if err != nil {
		return nil, 0, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, 0, err
	}
	mac := hmac.New(sha256.New, macKey)
	d := &decrypter{cbc: cipher.NewCBCDecrypter(block, h.IV), mac: mac, w: w}
	buf := make([]byte, 256<<10)
	for rest := n; rest > 0; {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		chunk := buf[:min(int64(len(buf)), rest)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, 0, fmt.Errorf("bigdl-cbc: read ciphertext: %w", err)
		}
		rest -= int64(len(chunk))
		if err := d.write(chunk, rest == 0); err != nil {
			return nil, 0, err
		}
	}
	tag := make([]byte, TagLen)
	if _, err := io.ReadFull(r, tag); err != nil {
		return nil, 0, fmt.Errorf("bigdl-cbc: read tag: %w", err)
	}
	if !hmac.Equal(mac.Sum(nil), tag) {
		return nil, 0, ErrTagMismatch
	}
	// Padding is checked only after the tag, so a bad padding never acts as
	// an oracle on unauthenticated ciphertext.
	last, err := unpad(d.held)
	if err != nil {
		return nil, 0, err
	}
	if _, err := w.Write(last); err != nil {
		return nil, 0, err
	}
	return h, d.out + int64(len(last)), nil
}

// decrypter streams CBC decryption, holding back the final block so its
// padding can be removed once the tag has been verified.
type decrypter struct {
	cbc  cipher.BlockMode
	mac  hash.Hash
	w    io.Writer
	held []byte
	out  int64
}

func (d *decrypter) write(ct []byte, final bool) error {
	d.mac.Write(ct)
	pt := make([]byte, len(ct))
	d.cbc.CryptBlocks(pt, ct)
	if final {
		pt, d.held = pt[:len(pt)-aes.BlockSize], pt[len(pt)-aes.BlockSize:]
	}
	if _, err := d.w.Write(pt); err != nil {
		return err
	}
	d.out += int64(len(pt))
	return nil
}

func unpad(b []byte) ([]byte, error) {
	p := int(b[len(b)-1])
	if p == 0 || p > aes.BlockSize {
		return nil, &FormatError{"bad PKCS#5 padding in an authenticated file (wrong data key for the AES half?)"}
	}
	for _, c := range b[len(b)-p:] {
		if int(c) != p {
			return nil, &FormatError{"bad PKCS#5 padding in an authenticated file (wrong data key for the AES half?)"}
		}
	}
	return b[:len(b)-p], nil
}

// DecryptFile decrypts the .cbc file src into dst. Plaintext goes to a
// temporary file next to dst, renamed to dst only after the tag verified;
// on any error it is removed and dst is left as it was.
func DecryptFile(ctx context.Context, src, dst string, dataKey []byte) (*Header, int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	var h *Header
	var n int64
	err = atomicfile.WriteFile(dst, 0o600, func(w io.Writer) error {
		h, n, err = Decrypt(ctx, f, st.Size(), dataKey, w)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return h, n, nil
}

// LoadDataKey reads BigDL's plaintext data key from a file, dropping one
// trailing newline (the key is used as raw bytes, as BigDL does).
func LoadDataKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bigdl data key: %w", err)
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if _, _, err := keys(b); err != nil {
		return nil, fmt.Errorf("bigdl data key %s: %w", path, err)
	}
	return b, nil
}
