// Package safetensors reads and writes teeml weights in the Hugging Face
// safetensors format (https://github.com/huggingface/safetensors).
//
// A file is an 8-byte little-endian unsigned header length N, N bytes of JSON
// header, and then the data buffer:
//
//	{"__metadata__": {"k": "v"},
//	 "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//
// data_offsets are relative to the start of the data buffer, and the tensors'
// byte ranges must cover the buffer exactly, without holes or overlaps. Values
// are little-endian and row-major.
//
// # Writing
//
// Write stores every tensor as F32, laid out in the order of the
// tensor.Weights list. Because JSON objects are unordered (and the reference
// implementation re-sorts tensors by dtype and name), the list order is also
// stored in the metadata key "teeml.order" as a JSON array of names. Readers
// that do not know teeml still see an ordinary, valid safetensors file. The
// header is padded with spaces to a multiple of 8 bytes, as the reference
// implementation does, so every tensor is 8-byte aligned in the file.
//
// # Reading
//
// Read returns tensors in the "teeml.order" order when that key is present
// and names exactly the file's tensors; otherwise in data-offset order (ties
// between empty tensors broken by name). The "teeml.order" key is removed from
// the returned metadata: the order of the returned Weights carries it.
//
// Every tensor is converted to float32, teeml's only element type:
//
//   - F32 is taken bit for bit (NaN payloads, -0 and ±Inf included).
//   - F64 is rounded to the nearest float32; values beyond the float32 range
//     become ±Inf, tiny ones underflow to (signed) zero or subnormals.
//   - F16 and BF16 are widened exactly (every value, including subnormals,
//     ±Inf and NaN, is representable in float32).
//   - Integers I8, I16, I32, I64, U8, U16, U32 and U64 are converted to the
//     nearest float32; integers of magnitude above 2^24 may lose precision.
//   - BOOL becomes 0 or 1 (any nonzero byte is true).
//
// Other dtypes (F8_E4M3, F8_E5M2, complex, ...) are rejected.
//
// Read validates the whole file before trusting it: the header length must be
// at most MaxHeaderSize and within the input, the header must be a single
// valid UTF-8 JSON object without duplicate keys, shapes must be non-negative
// and their products must not overflow, shape × dtype size must equal each
// tensor's byte length, and the offsets must tile the data buffer exactly with
// nothing after it. Every problem is reported as a one-line error starting
// "safetensors: " (and naming the tensor where there is one). Read never
// allocates memory based on a header value that has not been checked against
// the input actually available.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml/tensor"
)

const (
	// MaxHeaderSize is the largest JSON header accepted (or written), the same
	// limit as the reference implementation.
	MaxHeaderSize = 100_000_000

	// OrderKey is the metadata key holding the tensor order as a JSON array of
	// names.
	OrderKey = "teeml.order"

	metadataKey = "__metadata__"

	// chunkSize is how many data bytes are converted at a time. It is a
	// multiple of every dtype size.
	chunkSize = 64 << 10
)

// Write writes ws as a safetensors file of F32 tensors, in list order, with
// metadata plus the OrderKey entry (a caller-supplied OrderKey is replaced).
// Names, metadata keys and metadata values must be valid UTF-8; tensor names
// must be unique, non-empty and not "__metadata__".
func Write(w io.Writer, ws tensor.Weights, metadata map[string]string) error {
	header, err := encodeHeader(ws, metadata)
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	buf := make([]byte, chunkSize)
	for _, t := range ws {
		data := t.Data
		for len(data) > 0 {
			n := min(len(data), chunkSize/4)
			for i, v := range data[:n] {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			}
			if _, err := w.Write(buf[:4*n]); err != nil {
				return fmt.Errorf("safetensors: write: %w", err)
			}
			data = data[n:]
		}
	}
	return nil
}

// WriteFile writes ws to path atomically (see internal/atomicfile): on error
// the previous file, if any, is left unchanged. The file gets mode 0644.
func WriteFile(path string, ws tensor.Weights, metadata map[string]string) error {
	// Build the header first so invalid weights fail before touching the
	// file system.
	if _, err := encodeHeader(ws, metadata); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, 0o644, func(w io.Writer) error {
		return Write(w, ws, metadata)
	})
}

// encodeHeader returns the padded JSON header for ws.
func encodeHeader(ws tensor.Weights, metadata map[string]string) ([]byte, error) {
	if err := ws.Validate(); err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	names := make([]string, len(ws))
	for i, t := range ws {
		// tensor.Validate multiplies the shape without overflow checks, so a
		// shape like [2^32, 2^32] with no data would pass it; readers (this
		// one and the reference) reject such a file.
		elems := 1
		for _, d := range t.Shape {
			if d != 0 && elems > math.MaxInt/d {
				return nil, fmt.Errorf("safetensors: tensor %q: shape %v: element count overflows", t.Name, t.Shape)
			}
			elems *= d
		}
		if t.Name == metadataKey {
			return nil, fmt.Errorf("safetensors: tensor %q: name is reserved", t.Name)
		}
		if !utf8.ValidString(t.Name) {
			return nil, fmt.Errorf("safetensors: tensor %q: name is not valid UTF-8", t.Name)
		}
		names[i] = t.Name
	}
	var order bytes.Buffer
	enc := json.NewEncoder(&order)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(names); err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	meta := make(map[string]string, len(metadata)+1)
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("safetensors: metadata %q: key or value is not valid UTF-8", k)
		}
		meta[k] = v
	}
	meta[OrderKey] = strings.TrimSuffix(order.String(), "\n")
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var b bytes.Buffer
	b.WriteString(`{"__metadata__":{`)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, k)
		b.WriteByte(':')
		writeJSONString(&b, meta[k])
	}
	b.WriteByte('}')
	var offset uint64
	for _, t := range ws {
		b.WriteByte(',')
		writeJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":"F32","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := offset + 4*uint64(len(t.Data))
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, offset, end)
		offset = end
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header would be %d bytes, over the %d-byte limit", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

// writeJSONString writes s (valid UTF-8) as a JSON string without the HTML
// escaping encoding/json applies by default.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // cannot fail for a string
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// dtype describes a safetensors element type such as "F32".
type dtype struct {
	name string
	size int
	// decode converts len(dst) elements from src (len(src) == size·len(dst)).
	decode func(dst []float32, src []byte)
}

var dtypes = map[string]*dtype{
	"F32": {"F32", 4, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	}},
	"F64": {"F64", 8, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	}},
	"F16": {"F16", 2, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}},
	"BF16": {"BF16", 2, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	}},
	"I8": {"I8", 1, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	}},
	"U8": {"U8", 1, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(src[i])
		}
	}},
	"BOOL": {"BOOL", 1, func(dst []float32, src []byte) {
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	}},
	"I16": {"I16", 2, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(int16(binary.LittleEndian.Uint16(src[2*i:])))
		}
	}},
	"U16": {"U16", 2, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}},
	"I32": {"I32", 4, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(int32(binary.LittleEndian.Uint32(src[4*i:])))
		}
	}},
	"U32": {"U32", 4, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint32(src[4*i:]))
		}
	}},
	"I64": {"I64", 8, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(int64(binary.LittleEndian.Uint64(src[8*i:])))
		}
	}},
	"U64": {"U64", 8, func(dst []float32, src []byte) {
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint64(src[8*i:]))
		}
	}},
}

// float16ToFloat32 widens an IEEE 754 binary16 value exactly.
func float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // ±Inf, NaN (payload kept)
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0: // ±0 and subnormals: mant·2^-24, exact in float32
		f := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(f))
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	}
}

// entry is one tensor as described by the header.
type entry struct {
	name       string
	dt         *dtype
	shape      []int
	elems      int
	begin, end int64
	data       []float32
}

func (e *entry) errorf(format string, args ...any) error {
	return fmt.Errorf("safetensors: tensor %q: "+format, append([]any{e.name}, args...)...)
}

// Read reads a safetensors file from r, converting every tensor to float32
// (see the package documentation), and returns the tensors and the metadata
// (without OrderKey; never nil). r must hold exactly one file: bytes after the
// data buffer are an error.
func Read(r io.Reader) (tensor.Weights, map[string]string, error) {
	return read(r, remainingSize(r))
}

// ReadFile reads the safetensors file at path; see Read.
func ReadFile(path string) (tensor.Weights, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	return read(f, remainingSize(f))
}

// remainingSize returns how many bytes r still holds, or -1 when that cannot
// be known without reading.
func remainingSize(r io.Reader) int64 {
	switch r := r.(type) {
	case *bytes.Reader:
		return int64(r.Len())
	case *bytes.Buffer:
		return int64(r.Len())
	case *strings.Reader:
		return int64(r.Len())
	case *os.File:
		st, err := r.Stat()
		if err != nil || !st.Mode().IsRegular() {
			return -1
		}
		pos, err := r.Seek(0, io.SeekCurrent)
		if err != nil || pos > st.Size() {
			return -1
		}
		return st.Size() - pos
	}
	return -1
}

// read parses a file from r; size is the number of bytes left in r, or -1 if
// unknown. With a known size, every claim of the header is checked against it
// before anything is allocated for the data; with an unknown size, buffers
// grow only with the bytes that actually arrive.
func read(r io.Reader, size int64) (tensor.Weights, map[string]string, error) {
	header, size, err := readHeader(r, size)
	if err != nil {
		return nil, nil, err
	}
	hlen := int64(len(header))
	entries, meta, err := parseHeader(header)
	if err != nil {
		return nil, nil, err
	}
	byOffset, total, err := checkLayout(entries)
	if err != nil {
		return nil, nil, err
	}
	if size >= 0 {
		if have := size - hlen; have != total {
			if have < total {
				return nil, nil, fmt.Errorf("safetensors: data buffer is %d bytes, the header needs %d", have, total)
			}
			return nil, nil, fmt.Errorf("safetensors: %d bytes after the %d-byte data buffer", have-total, total)
		}
	}

	// Read the data in offset order.
	chunk := make([]byte, min(chunkSize, max(total, 1)))
	for _, e := range byOffset {
		if err := e.readData(r, chunk, size >= 0, total); err != nil {
			return nil, nil, err
		}
	}
	if size < 0 {
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 {
			return nil, nil, fmt.Errorf("safetensors: bytes after the %d-byte data buffer", total)
		}
	}

	ordered := byOffset
	if o, ok := meta[OrderKey]; ok {
		if ws := orderByNames(entries, o); ws != nil {
			ordered = ws
		}
		delete(meta, OrderKey)
	}
	out := make(tensor.Weights, len(ordered))
	for i, e := range ordered {
		out[i] = tensor.Tensor{Name: e.name, Shape: e.shape, Data: e.data}
	}
	return out, meta, nil
}

// readHeader reads the header length and the JSON header. size is as for
// read; it returns size less the 8-byte length prefix (-1 stays -1).
func readHeader(r io.Reader, size int64) ([]byte, int64, error) {
	var lenBuf [8]byte
	if n, err := io.ReadFull(r, lenBuf[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, 0, fmt.Errorf("safetensors: input is %d bytes, too short for the 8-byte header length", n)
		}
		return nil, 0, fmt.Errorf("safetensors: read: %w", err)
	}
	if size >= 0 {
		size = max(size-8, 0) // now the bytes after the length prefix
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	if hlen > MaxHeaderSize {
		return nil, 0, fmt.Errorf("safetensors: header length %d is over the %d-byte limit", hlen, MaxHeaderSize)
	}
	if size >= 0 && hlen > uint64(size) {
		return nil, 0, fmt.Errorf("safetensors: header length %d is larger than the remaining input of %d bytes", hlen, size)
	}
	if size >= 0 {
		header := make([]byte, hlen) // checked against the input size above
		if _, err := io.ReadFull(r, header); err != nil {
			return nil, 0, fmt.Errorf("safetensors: reading header: %w", err)
		}
		return header, size, nil
	}
	// Unknown input size: let the buffer grow with what actually arrives.
	header, err := io.ReadAll(io.LimitReader(r, int64(hlen)))
	if err != nil {
		return nil, 0, fmt.Errorf("safetensors: reading header: %w", err)
	}
	if uint64(len(header)) != hlen {
		return nil, 0, fmt.Errorf("safetensors: header length %d is larger than the remaining input of %d bytes", hlen, len(header))
	}
	return header, size, nil
}

// readData reads e's bytes from r through chunk and decodes them into
// e.data. With sized, the data is known to be there and is allocated at
// once; otherwise the buffer grows with what arrives. total is the data
// buffer's size, for the truncation error.
func (e *entry) readData(r io.Reader, chunk []byte, sized bool, total int64) error {
	var out []float32
	if sized {
		out = make([]float32, e.elems) // the data is known to be there
	} else {
		out = make([]float32, 0, min(e.elems, chunkSize))
	}
	nb := e.end - e.begin
	done := 0
	for nb > 0 {
		k := int(min(nb, int64(len(chunk))))
		if _, err := io.ReadFull(r, chunk[:k]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return e.errorf("data truncated: the header needs %d bytes of data", total)
			}
			return e.errorf("reading data: %w", err)
		}
		n := k / e.dt.size
		if !sized {
			out = grow(out, done+n, e.elems)
		}
		e.dt.decode(out[done:done+n], chunk[:k])
		done += n
		nb -= int64(k)
	}
	e.data = out
	return nil
}

// grow returns s resliced to length n, reallocating by doubling (capped at
// limit) so that streaming a tensor of unknown-but-bounded size costs at most
// about twice its final size in allocations.
func grow(s []float32, n, limit int) []float32 {
	if n <= cap(s) {
		return s[:n]
	}
	c := min(max(2*cap(s), n), limit)
	out := make([]float32, n, c)
	copy(out, s)
	return out
}

// orderByNames returns entries in the order of the JSON array of names in
// order, or nil if it is not exactly a permutation of the entries' names.
func orderByNames(entries []*entry, order string) []*entry {
	var names []string
	if err := json.Unmarshal([]byte(order), &names); err != nil || len(names) != len(entries) {
		return nil
	}
	byName := make(map[string]*entry, len(entries))
	for _, e := range entries {
		byName[e.name] = e
	}
	out := make([]*entry, len(names))
	for i, n := range names {
		e, ok := byName[n]
		if !ok {
			return nil // unknown or repeated name
		}
		delete(byName, n)
		out[i] = e
	}
	return out
}

// checkLayout sorts the entries by offset and checks that they tile
// [0, total) exactly.
func checkLayout(entries []*entry) ([]*entry, int64, error) {
	sorted := append([]*entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.name < b.name
	})
	var pos int64
	var prev *entry
	for _, e := range sorted {
		if e.begin != pos {
			if e.begin > pos {
				if prev == nil {
					return nil, 0, e.errorf("data_offsets [%d, %d] leave a hole: the data buffer starts at 0", e.begin, e.end)
				}
				return nil, 0, e.errorf("data_offsets [%d, %d] leave a hole after tensor %q ending at %d", e.begin, e.end, prev.name, pos)
			}
			return nil, 0, e.errorf("data_offsets [%d, %d] overlap tensor %q [%d, %d]", e.begin, e.end, prev.name, prev.begin, prev.end)
		}
		pos = e.end
		prev = e
	}
	return sorted, pos, nil
}

// parseHeader decodes and checks the JSON header. It returns the entries in
// header order and the metadata (never nil).
func parseHeader(header []byte) ([]*entry, map[string]string, error) {
	if !utf8.Valid(header) {
		return nil, nil, errors.New("safetensors: header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, errors.New("safetensors: header does not start with '{'")
	}
	fields, err := decodeObject(header)
	if err != nil {
		var dup duplicateKeyError
		if errors.As(err, &dup) {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: duplicate name", string(dup))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("unexpected end of JSON")
		}
		return nil, nil, fmt.Errorf("safetensors: invalid header JSON: %w", err)
	}
	meta := map[string]string{}
	var entries []*entry
	for _, f := range fields {
		if f.key == metadataKey {
			if string(f.value) == "null" {
				continue
			}
			mfields, err := decodeObject(f.value)
			if err != nil {
				return nil, nil, fmt.Errorf("safetensors: __metadata__: %w", err)
			}
			for _, mf := range mfields {
				var s string
				if len(mf.value) == 0 || mf.value[0] != '"' || json.Unmarshal(mf.value, &s) != nil {
					return nil, nil, fmt.Errorf("safetensors: __metadata__ %q: value is not a string", mf.key)
				}
				meta[mf.key] = s
			}
			continue
		}
		e, err := parseEntry(f.key, f.value)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	return entries, meta, nil
}

// parseEntry decodes one tensor description.
func parseEntry(name string, value json.RawMessage) (*entry, error) {
	e := &entry{name: name}
	if name == "" {
		return nil, e.errorf("empty tensor name")
	}
	fields, err := decodeObject(value)
	if err != nil {
		return nil, e.errorf("%w", err)
	}
	var dtypeRaw, shapeRaw, offsetsRaw json.RawMessage
	for _, f := range fields {
		switch f.key {
		case "dtype":
			dtypeRaw = f.value
		case "shape":
			shapeRaw = f.value
		case "data_offsets":
			offsetsRaw = f.value
		}
		// Unknown fields are ignored, as by the reference implementation.
	}
	switch {
	case dtypeRaw == nil:
		return nil, e.errorf("missing dtype")
	case shapeRaw == nil:
		return nil, e.errorf("missing shape")
	case offsetsRaw == nil:
		return nil, e.errorf("missing data_offsets")
	}

	var dtName string
	if dtypeRaw[0] != '"' || json.Unmarshal(dtypeRaw, &dtName) != nil {
		return nil, e.errorf("dtype %s is not a string", truncate(dtypeRaw))
	}
	dt, ok := dtypes[dtName]
	if !ok {
		return nil, e.errorf("unsupported dtype %q", dtName)
	}
	e.dt = dt

	shape, err := intList(shapeRaw)
	if err != nil {
		return nil, e.errorf("shape: %w", err)
	}
	e.shape = make([]int, len(shape))
	elems := int64(1)
	for i, d := range shape {
		if d < 0 {
			return nil, e.errorf("negative dimension %d in shape %v", d, shape)
		}
		if d > math.MaxInt || (d != 0 && elems > math.MaxInt64/d) {
			return nil, e.errorf("shape %v: element count overflows", shape)
		}
		elems *= d
		e.shape[i] = int(d)
	}
	if elems > math.MaxInt {
		return nil, e.errorf("shape %v: element count overflows", shape)
	}

	offsets, err := intList(offsetsRaw)
	if err != nil {
		return nil, e.errorf("data_offsets: %w", err)
	}
	if len(offsets) != 2 {
		return nil, e.errorf("data_offsets has %d entries, want [begin, end]", len(offsets))
	}
	e.begin, e.end = offsets[0], offsets[1]
	if e.begin < 0 || e.end < e.begin {
		return nil, e.errorf("data_offsets [%d, %d] out of range", e.begin, e.end)
	}
	if elems > math.MaxInt64/int64(dt.size) {
		return nil, e.errorf("shape %v of %s: byte size overflows", shape, dt.name)
	}
	if want := elems * int64(dt.size); want != e.end-e.begin {
		return nil, e.errorf("shape %v of %s needs %d bytes, data_offsets [%d, %d] span %d", shape, dt.name, want, e.begin, e.end, e.end-e.begin)
	}
	e.elems = int(elems)
	return e, nil
}

// intList decodes a JSON array of integers that fit in int64.
func intList(raw json.RawMessage) ([]int64, error) {
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, fmt.Errorf("%s is not a list", truncate(raw))
	}
	out := make([]int64, len(items))
	for i, it := range items {
		v, err := strconv.ParseInt(string(it), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not an integer in the int64 range", truncate(it))
		}
		out[i] = v
	}
	return out, nil
}

// truncate shortens raw JSON for a one-line error message.
func truncate(raw []byte) string {
	const limit = 40
	s := string(raw)
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "..."
	}
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

// duplicateKeyError reports a key that occurs twice in one JSON object.
type duplicateKeyError string

func (d duplicateKeyError) Error() string { return fmt.Sprintf("duplicate key %q", string(d)) }

type field struct {
	key   string
	value json.RawMessage
}

// decodeObject decodes one JSON object (and nothing after it but white
// space), keeping the member order and rejecting duplicate keys.
func decodeObject(data []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s is not an object", truncate(data))
	}
	var fields []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key is not a string")
		}
		if seen[key] {
			return nil, duplicateKeyError(key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		fields = append(fields, field{key, v})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return fields, nil
}
