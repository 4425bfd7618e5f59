// Package sealed encrypts files at rest with authenticated, streaming
// encryption: Tink's streaming AEAD AES256-GCM-HKDF with 1 MiB segments, keyed
// by a fresh data key per file that a KeySource (the attested key broker, or a
// local key file in simulation) generates and wraps.
//
// A sealed file is a small clear header (magic, version, algorithm, segment
// size, key ID, wrapped data key; see Header) followed by Tink's stream: a
// 40-byte stream header (length byte, 32-byte HKDF salt, 7-byte nonce prefix)
// and the ciphertext segments. The header bytes are Tink's associated data:
// they feed the HKDF that derives the file's AES-GCM key, so changing any of
// them fails the first segment. Each segment's nonce carries its index and a
// final-segment flag, so reordering, duplicating, dropping or truncating
// segments fails authentication. docs/sealed.md has the full specification.
//
// Memory is constant in the file size: one segment of plaintext and one of
// ciphertext are buffered at a time.
package sealed

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"

	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"
	tinksubtle "github.com/tink-crypto/tink-go/v2/subtle"

	"github.com/teeml/teeml/internal/atomicfile"
)

// Sizes fixed by Tink's AES-GCM-HKDF stream format.
const (
	tinkHeaderLen = 1 + DataKeySize + subtle.AESGCMHKDFNoncePrefixSizeInBytes // 40
	tagLen        = subtle.AESGCMHKDFTagSizeInBytes                           // 16
	hkdfHash      = "SHA256"
	// peekLen bytes of the next segment are read ahead to learn whether the
	// current one is the last; one cache line keeps later reads aligned.
	peekLen = 64
)

// Options tune a Writer. The zero value writes DefaultSegmentSize segments.
type Options struct {
	// SegmentSize is the ciphertext segment size in bytes (MinSegmentSize to
	// MaxSegmentSize); 0 means DefaultSegmentSize.
	SegmentSize int
	// Progress, if set, is called by EncryptFile and DecryptFile with the
	// number of plaintext bytes processed so far.
	Progress func(done int64)
}

// primitive builds Tink's streaming AEAD for a header. firstSegmentOffset is
// the header length, so ciphertext segment i occupies the file bytes
// [i*SegmentSize, (i+1)*SegmentSize): segment boundaries are file offsets.
func primitive(dataKey []byte, h *Header, headerLen int) (*subtle.AESGCMHKDF, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("data key for %q is %d bytes, want %d", h.KeyID, len(dataKey), DataKeySize)
	}
	return subtle.NewAESGCMHKDF(dataKey, hkdfHash, DataKeySize, h.SegmentSize, headerLen)
}

// Writer encrypts into a sealed stream. Close must be called: it seals the
// final segment, without which the stream does not decrypt.
type Writer struct {
	ctx     context.Context
	dst     io.Writer
	header  *Header
	raw     []byte         // header bytes: the associated data
	dataKey []byte         // kept until the stream header is written, then cleared
	fast    *segmentSealer // made on the first Write or ReadFrom
	n       int64
	err     error
}

// NewWriter writes a header for a fresh data key of keyID to w and returns a
// Writer for the body.
//
// The body is Tink's AES-GCM-HKDF stream format, written by teeml's own
// segment loop (tests decrypt it with Tink's reader and compare it with
// Tink's writer): Write seals whole segments straight from the caller's
// slice into the Writer's one segment buffer, copying only the bytes of a
// segment that is not complete yet (or may be the final one); ReadFrom
// (used by io.Copy from readers without WriteTo) reads plaintext into that
// buffer and seals it in place. The two can be mixed freely.
func NewWriter(ctx context.Context, w io.Writer, ks KeySource, keyID string, opt *Options) (*Writer, error) {
	seg := DefaultSegmentSize
	if opt != nil && opt.SegmentSize != 0 {
		seg = opt.SegmentSize
	}
	if err := ValidKeyID(keyID); err != nil {
		return nil, fmt.Errorf("sealed: key ID %q: %w", keyID, err)
	}
	plain, wrapped, err := ks.NewDataKey(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("sealed: new data key: %w", err)
	}
	h := &Header{Algorithm: AlgAES256GCMHKDF, SegmentSize: seg, KeyID: keyID, Wrapped: wrapped}
	raw, err := h.MarshalBinary()
	if err != nil {
		clear(plain)
		return nil, err
	}
	// Tink's constructor checks the key size and the segment parameters
	// exactly as Tink's reader will.
	if _, err := primitive(plain, h, len(raw)); err != nil {
		clear(plain)
		return nil, fmt.Errorf("sealed: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		clear(plain)
		return nil, fmt.Errorf("sealed: write header: %w", err)
	}
	return &Writer{ctx: ctx, dst: w, header: h, raw: raw, dataKey: plain}, nil
}

// Header returns the header written for this stream.
func (w *Writer) Header() *Header { return w.header }

// Write encrypts p. After an error every later call fails: part of p may
// have been sealed and written, so the stream cannot be continued.
//
// Only the last segment's worth of p is copied (it may be the final
// segment, which is sealed by Close); every segment known to be followed by
// more data is sealed from p directly into the segment buffer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if err := w.start(); err != nil {
		return 0, err
	}
	f := w.fast
	n := 0
	for len(p) > 0 {
		c := w.plainCap(f.seg)
		if f.held == 0 && len(p) > c {
			// A whole segment with more data after it: seal it out of
			// place, no copy.
			if err := w.sealFrom(p[:c], false); err != nil {
				w.err = err
				return n, err
			}
			p, n = p[c:], n+c
			w.n += int64(c)
			continue
		}
		k := copy(f.buf[f.held:c], p)
		f.held += k
		p, n = p[k:], n+k
		w.n += int64(k)
		if f.held == c && len(p) > 0 {
			if err := w.sealSegment(f.held, false); err != nil {
				w.err = err
				return n, err
			}
			f.held = 0
		}
	}
	return n, nil
}

// start writes Tink's stream header and sets up the segment sealer, once.
func (w *Writer) start() error {
	if w.fast != nil {
		return nil
	}
	if err := w.startFast(); err != nil {
		w.err = err
		return err
	}
	if w.header.SegmentSize == DefaultSegmentSize {
		w.fast.buf = *segPool.Get().(*[]byte)
	} else {
		w.fast.buf = make([]byte, w.header.SegmentSize)
	}
	return nil
}

// segPool recycles the segment buffers of default-size Writers (a 1 MiB
// allocation, zeroed, per file otherwise). A buffer goes back only after a
// successful Close, when it holds nothing but ciphertext: every plaintext
// byte copied into it was sealed in place, at the same offsets.
var segPool = sync.Pool{New: func() any {
	b := make([]byte, DefaultSegmentSize)
	return &b
}}

// segmentSealer writes Tink's AES-GCM-HKDF stream format directly (stream
// header, then segments sealed from the caller's slice or in place).
type segmentSealer struct {
	aead  cipher.AEAD
	nonce []byte
	buf   []byte // one segment, sealed in place
	seg   int    // index of the next segment to seal
	held  int    // plaintext bytes in buf not yet sealed (the possible final segment)
}

func (w *Writer) startFast() error {
	var sh [tinkHeaderLen]byte
	sh[0] = tinkHeaderLen
	if _, err := rand.Read(sh[1:]); err != nil {
		return err
	}
	fileKey, err := tinksubtle.ComputeHKDF(hkdfHash, w.dataKey, sh[1:1+DataKeySize], w.raw, DataKeySize)
	clear(w.dataKey)
	if err != nil {
		return err
	}
	defer clear(fileKey)
	blk, err := aes.NewCipher(fileKey)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return err
	}
	if _, err := w.dst.Write(sh[:]); err != nil {
		return fmt.Errorf("sealed: write stream header: %w", err)
	}
	f := &segmentSealer{aead: aead, nonce: make([]byte, subtle.AESGCMHKDFNonceSizeInBytes)}
	copy(f.nonce, sh[1+DataKeySize:])
	w.fast = f
	return nil
}

// plainCap is the plaintext capacity of segment i.
func (w *Writer) plainCap(i int) int {
	if i == 0 {
		return w.header.SegmentSize - len(w.raw) - tinkHeaderLen - tagLen
	}
	return w.header.SegmentSize - tagLen
}

// sealSegment seals buf[:n] as segment f.seg in place and writes it.
func (w *Writer) sealSegment(n int, last bool) error {
	return w.sealFrom(w.fast.buf[:n], last)
}

// sealFrom seals pt (buf[:n], in place, or a caller's slice that does not
// overlap buf) as segment f.seg into buf and writes it.
func (w *Writer) sealFrom(pt []byte, last bool) error {
	f := w.fast
	if f.seg >= math.MaxUint32 {
		return errors.New("sealed: too many segments")
	}
	binary.BigEndian.PutUint32(f.nonce[subtle.AESGCMHKDFNoncePrefixSizeInBytes:], uint32(f.seg))
	f.nonce[len(f.nonce)-1] = 0
	if last {
		f.nonce[len(f.nonce)-1] = 1
	}
	ct := f.aead.Seal(f.buf[:0], f.nonce, pt, nil)
	f.seg++
	if _, err := w.dst.Write(ct); err != nil {
		return fmt.Errorf("sealed: write: %w", err)
	}
	return nil
}

// ReadFrom encrypts everything r yields (io.ReaderFrom). The final segment is
// held back until Close, which seals it as the last one.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if err := w.start(); err != nil {
		return 0, err
	}
	f := w.fast
	var total int64
	for {
		if err := w.ctx.Err(); err != nil {
			w.err = err
			return total, err
		}
		// buf holds f.held bytes of segment f.seg; fill it up.
		c := w.plainCap(f.seg)
		n, err := io.ReadFull(r, f.buf[f.held:c])
		total += int64(n)
		w.n += int64(n)
		f.held += n
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil // short: this may be the final segment; Close seals it
		}
		if err != nil {
			w.err = err
			return total, err
		}
		// Full. Seal it as non-final only once we know more data follows:
		// peek at the next bytes (a cache line, so the rest of the next
		// segment is still read into aligned memory).
		var peek [peekLen]byte
		m, err := io.ReadFull(r, peek[:])
		total += int64(m)
		w.n += int64(m)
		if m == 0 {
			if err == io.EOF {
				return total, nil // the full segment may be final: held for Close
			}
			w.err = err
			return total, err
		}
		if err := w.sealSegment(f.held, false); err != nil {
			w.err = err
			return total, err
		}
		f.held = copy(f.buf, peek[:m])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			w.err = err
			return total, err
		}
	}
}

// Close seals the final segment. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.start(); err != nil { // nothing written: an empty stream
		return err
	}
	if err := w.sealSegment(w.fast.held, true); err != nil {
		w.err = err
		return err
	}
	if b := w.fast.buf; len(b) == DefaultSegmentSize {
		w.fast.buf = nil
		segPool.Put(&b)
	}
	clear(w.dataKey)
	w.err = errors.New("sealed: write after close")
	return nil
}

// IntegrityError reports ciphertext that failed authentication. Segment is
// the index of the first segment that failed (-1 for Tink's stream header).
type IntegrityError struct {
	Segment int
	Offset  int64 // file offset of that segment
	Err     error
}

func (e *IntegrityError) Error() string {
	if e.Segment < 0 {
		return fmt.Sprintf("sealed: stream header at byte %d: %v", e.Offset, e.Err)
	}
	return fmt.Sprintf("sealed: segment %d (file offset %d) failed authentication: the file was truncated, reordered or modified, or the data key is wrong (%v)", e.Segment, e.Offset, e.Err)
}

func (e *IntegrityError) Unwrap() error { return e.Err }

// Reader decrypts a sealed stream.
//
// Read returns plaintext of authenticated segments only: a segment is
// decrypted and verified in full before any of its bytes are returned. But a
// streaming reader cannot know that a segment is followed by the rest of the
// file until it gets there: truncation at a segment boundary is detected only
// when the last present segment fails the final-segment check, i.e. Read
// returns an error instead of io.EOF at the end. Consumers must treat any
// error, including one at the very end, as fatal for the whole file and
// discard what they read (DecryptFile does this with a temporary file).
//
// Reader also implements io.WriterTo (used by io.Copy): when nothing has been
// Read yet, WriteTo decrypts each segment in place and hands it to the writer,
// saving the copy Tink's Reader makes into its own plaintext buffer. It
// implements the same Tink stream format (the nonce and key derivation below);
// tests decrypt Tink's writer's output with it and compare it with Tink's
// reader on every tamper case.
type Reader struct {
	ctx        context.Context
	header     *Header
	headerLen  int
	rawHeader  []byte             // associated data
	src        io.Reader          // ciphertext after Tink's stream header
	streamHdr  []byte             // Tink's stream header, replayed to Tink's reader
	tink       *subtle.AESGCMHKDF // makes dec on the first Read
	dec        io.Reader          // Tink's decrypting reader (used by Read)
	aead       cipher.AEAD
	prefix     []byte // Tink's nonce prefix
	started    bool   // Read was called: WriteTo must continue through dec
	firstPlain int64  // plaintext bytes in segment 0
	plainSeg   int64  // plaintext bytes in every later segment
	out        int64  // plaintext bytes returned so far
	err        error
}

// Open reads the header from r, asks ks for the data key and returns a Reader
// of the plaintext. ctx bounds the key request and is checked on every Read.
func Open(ctx context.Context, r io.Reader, ks KeySource) (*Reader, error) {
	h, raw, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	key, err := ks.Unwrap(ctx, h.KeyID, h.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("sealed: unwrap data key: %w", err)
	}
	defer clear(key)
	p, err := primitive(key, h, len(raw))
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	// Read Tink's stream header here so WriteTo has the salt and nonce
	// prefix; Tink's reader gets the same bytes back and validates them.
	sh := make([]byte, tinkHeaderLen)
	if _, err := io.ReadFull(r, sh); err != nil {
		return nil, &IntegrityError{Segment: -1, Offset: int64(len(raw)), Err: errors.New("truncated: file ends inside the 40-byte stream header")}
	}
	if int(sh[0]) != tinkHeaderLen {
		return nil, &IntegrityError{Segment: -1, Offset: int64(len(raw)), Err: fmt.Errorf("invalid header length %d, want %d", sh[0], tinkHeaderLen)}
	}
	// The per-file key, exactly as Tink derives it: HKDF-SHA256(data key,
	// salt, info = associated data = the header).
	fileKey, err := tinksubtle.ComputeHKDF(hkdfHash, key, sh[1:1+DataKeySize], raw, DataKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(fileKey)
	blk, err := aes.NewCipher(fileKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &Reader{
		ctx:        ctx,
		header:     h,
		headerLen:  len(raw),
		rawHeader:  raw,
		src:        r,
		streamHdr:  sh,
		tink:       p,
		aead:       aead,
		prefix:     bytes.Clone(sh[1+DataKeySize:]),
		firstPlain: int64(h.SegmentSize - len(raw) - tinkHeaderLen - tagLen),
		plainSeg:   int64(h.SegmentSize - tagLen),
	}, nil
}

// WriteTo implements io.WriterTo; see the type's comment. Only plaintext of
// authenticated segments reaches w, and an error at the end (truncation) is
// as fatal as anywhere else.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	if r.started || r.err != nil {
		return io.CopyBuffer(w, struct{ io.Reader }{r}, make([]byte, r.header.SegmentSize))
	}
	r.started = true
	S := r.header.SegmentSize
	// Tink's rule: the last segment is the one after which the stream ends.
	// Reading the next segment before decrypting the current one tells us;
	// two segment-aligned buffers keep reads and in-place decryption on
	// aligned memory (a one-byte look-ahead would misalign every copy).
	// One segment buffer, opened in place. Tink's rule: the last segment is
	// the one after which the stream ends, so before opening a segment we
	// peek at the next bytes (a cache line: the rest of the next segment is
	// then read into aligned memory).
	buf := make([]byte, S)
	var peek [peekLen]byte
	nonce := make([]byte, subtle.AESGCMHKDFNonceSizeInBytes)
	copy(nonce, r.prefix)
	readFull := func(b []byte) (int, bool, error) {
		n, err := io.ReadFull(r.src, b)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return n, false, fmt.Errorf("sealed: read: %w", err)
		}
		return n, err != nil, nil
	}
	curLen, curShort, err := readFull(buf[:S-r.headerLen-tinkHeaderLen])
	if err != nil {
		r.err = err
		return 0, err
	}
	var written int64
	for seg := 0; ; seg++ {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			return written, err
		}
		if seg >= math.MaxUint32 {
			r.err = &IntegrityError{Segment: seg, Offset: int64(seg) * int64(S), Err: errors.New("too many segments")}
			return written, r.err
		}
		last := curShort
		pn, pshort := 0, false
		if !last {
			if pn, pshort, err = readFull(peek[:]); err != nil {
				r.err = err
				return written, err
			}
			last = pn == 0
		}
		binary.BigEndian.PutUint32(nonce[len(r.prefix):], uint32(seg))
		nonce[len(nonce)-1] = 0
		if last {
			nonce[len(nonce)-1] = 1
		}
		var pt []byte
		if curLen < tagLen {
			err = errors.New("segment too short")
		} else {
			pt, err = r.aead.Open(buf[:0], nonce, buf[:curLen], nil)
		}
		if err != nil {
			r.err = &IntegrityError{Segment: seg, Offset: int64(seg) * int64(S), Err: err}
			return written, r.err
		}
		k, err := w.Write(pt)
		written += int64(k)
		r.out += int64(k)
		if err != nil {
			r.err = err
			return written, err
		}
		if last {
			r.err = io.EOF
			return written, nil
		}
		curLen = copy(buf, peek[:pn])
		curShort = pshort
		if !pshort {
			n, short, err := readFull(buf[peekLen:S])
			if err != nil {
				r.err = err
				return written, err
			}
			curLen, curShort = peekLen+n, short
		}
	}
}

// Header returns the stream's header.
func (r *Reader) Header() *Header { return r.header }

// segmentAt is the index of the segment whose first plaintext byte is at
// plaintext offset off.
func (r *Reader) segmentAt(off int64) int {
	if off < r.firstPlain {
		return 0
	}
	return 1 + int((off-r.firstPlain)/r.plainSeg)
}

// Read implements io.Reader; see the type's comment for the EOF contract.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	r.started = true
	if err := r.ctx.Err(); err != nil {
		r.err = err
		return 0, err
	}
	if r.dec == nil {
		// Created lazily: Tink's reader allocates a segment buffer that the
		// WriteTo path does not need.
		dec, err := r.tink.NewDecryptingReader(io.MultiReader(bytes.NewReader(r.streamHdr), r.src), r.rawHeader)
		if err != nil {
			r.err = &IntegrityError{Segment: -1, Offset: int64(r.headerLen), Err: err}
			return 0, r.err
		}
		r.dec = dec
	}
	n, err := r.dec.Read(p)
	r.out += int64(n)
	if err != nil && err != io.EOF {
		var pe *os.PathError
		if errors.As(err, &pe) {
			r.err = fmt.Errorf("sealed: read: %w", err)
		} else {
			seg := r.segmentAt(r.out)
			r.err = &IntegrityError{Segment: seg, Offset: int64(seg) * int64(r.header.SegmentSize), Err: err}
		}
		return n, r.err
	}
	return n, err
}

// EncryptFile seals the file src (or standard input if src is "-") into dst
// atomically: dst appears only complete, and not at all on error.
func EncryptFile(ctx context.Context, src, dst string, ks KeySource, keyID string, opt *Options) (*Header, int64, error) {
	in := os.Stdin
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		in = f
	}
	var h *Header
	var n int64
	err := atomicfile.WriteFile(dst, 0o600, func(w io.Writer) error {
		sw, err := NewWriter(ctx, w, ks, keyID, opt)
		if err != nil {
			return err
		}
		h = sw.Header()
		if n, err = io.Copy(sw, &ctxReader{ctx: ctx, r: in, progress: progressOf(opt)}); err != nil {
			return err
		}
		return sw.Close()
	})
	if err != nil {
		return nil, 0, err
	}
	return h, n, nil
}

// WriteFile writes path sealed under keyID: enc writes the plaintext into the
// sealing writer (which buffers one segment), and the file appears atomically
// (temp file, fsync, rename, mode perm) only when every segment is sealed —
// so plaintext produced in memory (a shard, a model) never touches the disk.
func WriteFile(ctx context.Context, path string, perm os.FileMode, ks KeySource, keyID string, enc func(io.Writer) error) error {
	return atomicfile.WriteFile(path, perm, func(w io.Writer) error {
		sw, err := NewWriter(ctx, w, ks, keyID, nil)
		if err != nil {
			return err
		}
		// No bufio: the Writer itself collects small writes in its segment
		// buffer (one copy, as bufio would make) and seals large ones
		// straight from the caller's slice.
		if err := enc(sw); err != nil {
			return err
		}
		return sw.Close()
	})
}

// DecryptFile decrypts the sealed file src into dst. The plaintext goes to a
// temporary file next to dst that is renamed to dst only after the final
// segment authenticated; on any error it is removed, so no plaintext of a
// bad file is left behind.
// opt may carry a Progress callback; its SegmentSize is ignored.
func DecryptFile(ctx context.Context, src, dst string, ks KeySource, opt *Options) (*Header, int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var h *Header
	var n int64
	err = atomicfile.WriteFile(dst, 0o600, func(w io.Writer) error {
		r, err := Open(ctx, f, ks)
		if err != nil {
			return err
		}
		h = r.Header()
		// WriteTo checks ctx once per segment.
		n, err = r.WriteTo(&progressWriter{w: w, progress: progressOf(opt)})
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return h, n, nil
}

func progressOf(opt *Options) func(int64) {
	if opt == nil {
		return nil
	}
	return opt.Progress
}

// progressWriter reports the bytes written so far.
type progressWriter struct {
	w        io.Writer
	progress func(int64)
	n        int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.progress != nil {
		p.progress(p.n)
	}
	return n, err
}

// ctxReader stops a long copy when ctx is cancelled and reports progress.
type ctxReader struct {
	ctx      context.Context
	r        io.Reader
	progress func(int64)
	n        int64
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(c.n)
	}
	return n, err
}

// Info describes a sealed file without decrypting it.
type Info struct {
	Header         *Header
	HeaderLen      int   // bytes of the teeml header
	FileSize       int64 // bytes on disk
	Segments       int64 // ciphertext segments
	PlaintextSize  int64 // bytes of plaintext, if the file is intact
	StreamHeaderOK bool  // Tink's stream header has the expected length byte
}

// Inspect parses the header of the sealed file at path and derives the
// segment count and plaintext size from the file size. It needs no key and
// authenticates nothing.
func Inspect(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h, raw, err := ReadHeader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	info := &Info{Header: h, HeaderLen: len(raw), FileSize: st.Size()}
	var b [1]byte
	if _, err := io.ReadFull(f, b[:]); err == nil {
		info.StreamHeaderOK = int(b[0]) == tinkHeaderLen
	}
	if min := int64(len(raw) + tinkHeaderLen + tagLen); st.Size() >= min {
		seg := int64(h.SegmentSize)
		info.Segments = (st.Size() + seg - 1) / seg
		info.PlaintextSize = st.Size() - int64(len(raw)+tinkHeaderLen) - info.Segments*tagLen
	}
	return info, nil
}
