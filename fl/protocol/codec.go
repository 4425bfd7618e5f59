package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"unsafe"

	"google.golang.org/protobuf/proto"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/ml/tensor"
)

// MaxChunkData is the largest payload carried by one Chunk: 1 MiB, well
// under gRPC's default 4 MiB message limit, so transfers of any size need
// no message-size setting.
const MaxChunkData = 1 << 20

// MaxTensors bounds the tensor directory of a received header.
const MaxTensors = 1 << 16

// Directory returns the tensor directory (names and shapes) of w.
func Directory(w tensor.Weights) []*flv1.TensorInfo {
	dir := make([]*flv1.TensorInfo, len(w))
	for i, t := range w {
		shape := make([]int64, len(t.Shape))
		for j, d := range t.Shape {
			shape[j] = int64(d)
		}
		dir[i] = &flv1.TensorInfo{Name: t.Name, Shape: shape}
	}
	return dir
}

// nativeLE is whether float32 values are little-endian in memory (every
// platform Go supports but the big-endian ones: s390x, ppc64, mips…). Then
// a tensor's memory is its wire payload and the codec copies it as bytes;
// else it converts value by value. A variable so tests run both paths.
var nativeLE = func() bool {
	x := uint32(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// floatBytes is the memory of vals as bytes (no copy): only meaningful as
// the wire payload when nativeLE.
func floatBytes(vals []float32) []byte {
	if len(vals) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&vals[0])), 4*len(vals))
}

// appendFloats appends vals to b as little-endian float32.
func appendFloats(b []byte, vals []float32) []byte {
	if nativeLE {
		return append(b, floatBytes(vals)...)
	}
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// walkPayload calls fn with consecutive pieces of the little-endian payload
// of w, each MaxChunkData bytes but the last. On little-endian hosts a
// piece that lies inside one tensor is a view of the tensor's memory (no
// copy; fn must not keep it or write to it); pieces that straddle tensors,
// and every piece on big-endian hosts, are new buffers.
func walkPayload(w tensor.Weights, fn func([]byte) error) error {
	const per = MaxChunkData / 4
	var pending []byte // a piece being filled from several tensors
	for _, t := range w {
		data := t.Data
		for len(data) > 0 {
			if nativeLE && len(pending) == 0 && len(data) >= per {
				if err := fn(floatBytes(data[:per])); err != nil {
					return err
				}
				data = data[per:]
				continue
			}
			if pending == nil {
				pending = make([]byte, 0, MaxChunkData)
			}
			n := min(len(data), (MaxChunkData-len(pending))/4)
			pending = appendFloats(pending, data[:n])
			data = data[n:]
			if len(pending) == MaxChunkData {
				if err := fn(pending); err != nil {
					return err
				}
				pending = nil
			}
		}
	}
	if len(pending) > 0 {
		return fn(pending)
	}
	return nil
}

// castagnoli is the CRC-32C table (hardware-accelerated on amd64 and
// arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PayloadCRC32C returns the CRC-32C of w's little-endian float32 payload,
// the value a transfer's Trailer carries.
func PayloadCRC32C(w tensor.Weights) uint32 {
	var sum uint32
	_ = walkPayload(w, func(b []byte) error { sum = crc32.Update(sum, castagnoli, b); return nil })
	return sum
}

// EncodeWeights sends w as a model transfer: first a Chunk carrying h,
// completed with w's tensor directory and total_bytes, then the payload in
// Chunks of MaxChunkData bytes (the last one shorter), then a Trailer with
// the payload's CRC-32C, computed while sending (one pass over w).
//
// On little-endian hosts most data Chunks are views of w's memory, not
// copies, and with chunkCodec gRPC copies them into its HTTP/2 frames only
// when it writes them, which may be after Send returned: w must not change
// until the transfer's RPC has ended. (The aggregator never changes a
// global model in place; a collaborator uploads its update and drops it.)
// Memory use is w plus the chunks in flight. It returns the bytes handed to send (the chunks'
// encoded sizes).
func EncodeWeights(w tensor.Weights, h *flv1.Header, send func(*flv1.Chunk) error) (int64, error) {
	if err := w.Validate(); err != nil {
		return 0, err
	}
	hd := proto.Clone(h).(*flv1.Header)
	hd.Tensors = Directory(w)
	hd.TotalBytes = 4 * int64(w.NumParams())
	hd.Sha256 = nil
	first := &flv1.Chunk{Body: &flv1.Chunk_Header{Header: hd}}
	sent := int64(proto.Size(first))
	if err := send(first); err != nil {
		return sent, err
	}
	var sum uint32
	err := walkPayload(w, func(b []byte) error {
		sum = crc32.Update(sum, castagnoli, b)
		c := &flv1.Chunk{Body: &flv1.Chunk_Data{Data: b}}
		sent += int64(proto.Size(c))
		return send(c)
	})
	if err != nil {
		return sent, err
	}
	last := &flv1.Chunk{Body: &flv1.Chunk_Trailer{Trailer: &flv1.Trailer{Crc32C: &sum}}}
	sent += int64(proto.Size(last))
	return sent, send(last)
}

// ErrChecksum is returned (wrapped) by DecodeWeights when the payload's
// CRC-32C differs from the trailer's (or its SHA-256 from a legacy
// header's).
var ErrChecksum = errors.New("payload checksum mismatch")

// DecodeError is a refusal of a received transfer: malformed framing or
// header (Checksum false) or a payload whose checksum does not match
// (Checksum true).
type DecodeError struct {
	Msg      string
	Checksum bool
}

func (e *DecodeError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrChecksum) work.
func (e *DecodeError) Is(target error) bool { return target == ErrChecksum && e.Checksum }

func decodeErr(format string, args ...any) error {
	return &DecodeError{Msg: fmt.Sprintf(format, args...)}
}

// Decoded is a received transfer.
type Decoded struct {
	Header  *flv1.Header
	Weights tensor.Weights
	// WireBytes is the sum of the received chunks' encoded sizes.
	WireBytes int64
}

// DecodeWeights reads one transfer from recv (which returns io.EOF after
// the last chunk): the header, which check (if not nil) may refuse before
// any tensor is allocated, then exactly total_bytes of payload copied
// straight into the tensors the directory describes, then the Trailer.
// Memory use is the decoded tensors plus the chunk being read. The
// payload's checksums are computed while it is received: the Trailer's
// CRC-32C must match, and so must the header's SHA-256 when a sender that
// predates the Trailer put one there (such a transfer may end without a
// Trailer).
func DecodeWeights(recv func() (*flv1.Chunk, error), check func(*flv1.Header) error) (*Decoded, error) {
	return decode(func() (*rawChunk, error) {
		c, err := recv()
		return &rawChunk{Chunk: c}, err
	}, check)
}

// DecodeStream is DecodeWeights reading from a gRPC stream's RecvMsg. With
// chunkCodec on the stream (a Collaborator's calls; an Aggregator's server
// built with ServerOptions) each data chunk is copied from gRPC's receive
// buffers straight into the tensors.
func DecodeStream(recvMsg func(any) error, check func(*flv1.Header) error) (*Decoded, error) {
	return decode(func() (*rawChunk, error) {
		rc := &rawChunk{Chunk: new(flv1.Chunk)}
		return rc, recvMsg(rc)
	}, check)
}

func decode(recv func() (*rawChunk, error), check func(*flv1.Header) error) (*Decoded, error) {
	rc, err := recv()
	if err == nil && rc.raw != nil {
		rc.raw.Free()
		return nil, decodeErr("first chunk is not a header")
	}
	c := rc.Chunk
	if err == io.EOF {
		return nil, decodeErr("transfer ended before its header")
	}
	if err != nil {
		return nil, err
	}
	hd := c.GetHeader()
	if hd == nil {
		return nil, decodeErr("first chunk is not a header")
	}
	out := &Decoded{Header: hd, WireBytes: int64(proto.Size(c))}
	if check != nil {
		if err := check(hd); err != nil {
			return nil, err
		}
	}
	var sh hash.Hash // the legacy header digest, if any
	switch len(hd.Sha256) {
	case 0:
	case sha256.Size:
		sh = sha256.New()
	default:
		return nil, decodeErr("header has a %d-byte sha256, want %d or none", len(hd.Sha256), sha256.Size)
	}
	w, err := allocate(hd)
	if err != nil {
		return nil, err
	}
	dec := payloadWriter{w: w}
	var crc uint32
	var trailer *flv1.Trailer
	for {
		rc, err := recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if rc.raw != nil {
			// A data chunk still in gRPC's receive buffers.
			n := rc.raw.Len()
			out.WireBytes += int64(n)
			err := trailerFirst(trailer)
			if err == nil && n-rc.skip > MaxChunkData {
				err = decodeErr("chunk of %d bytes exceeds %d", n-rc.skip, MaxChunkData)
			}
			skip := rc.skip
			for _, b := range rc.raw {
				if err != nil {
					break
				}
				data := b.ReadOnlyData()
				k := min(skip, len(data))
				data, skip = data[k:], skip-k
				if err = dec.write(data); err == nil {
					crc = crc32.Update(crc, castagnoli, data)
					if sh != nil {
						sh.Write(data)
					}
				}
			}
			rc.raw.Free()
			if err != nil {
				return nil, err
			}
			continue
		}
		c := rc.Chunk
		out.WireBytes += int64(proto.Size(c))
		if err := trailerFirst(trailer); err != nil {
			return nil, err
		}
		switch b := c.GetBody().(type) {
		case *flv1.Chunk_Data:
			data := b.Data
			if len(data) > MaxChunkData {
				return nil, decodeErr("chunk of %d bytes exceeds %d", len(data), MaxChunkData)
			}
			if err := dec.write(data); err != nil {
				return nil, err
			}
			crc = crc32.Update(crc, castagnoli, data)
			if sh != nil {
				sh.Write(data)
			}
		case *flv1.Chunk_Trailer:
			if trailer = b.Trailer; trailer == nil || trailer.Crc32C == nil {
				return nil, decodeErr("trailer without a crc32c")
			}
		case *flv1.Chunk_Header:
			return nil, decodeErr("second header in one transfer")
		default:
			return nil, decodeErr("chunk with no body after %d payload bytes", dec.n)
		}
	}
	if dec.n != hd.TotalBytes {
		return nil, decodeErr("payload ended after %d of %d bytes", dec.n, hd.TotalBytes)
	}
	if trailer == nil && sh == nil {
		return nil, decodeErr("transfer ended without its trailer (the payload's crc32c)")
	}
	if trailer != nil && crc != trailer.GetCrc32C() {
		return nil, &DecodeError{Checksum: true, Msg: fmt.Sprintf("payload crc32c %08x differs from the trailer's %08x: %v",
			crc, trailer.GetCrc32C(), ErrChecksum)}
	}
	if sh != nil {
		if sum := sh.Sum(nil); !bytes.Equal(sum, hd.Sha256) {
			return nil, &DecodeError{Checksum: true, Msg: fmt.Sprintf("payload sha256 %s… differs from the header's %s…: %v",
				hex.EncodeToString(sum[:4]), hex.EncodeToString(hd.Sha256[:4]), ErrChecksum)}
		}
	}
	out.Weights = w
	return out, nil
}

// trailerFirst refuses a chunk after the trailer.
func trailerFirst(trailer *flv1.Trailer) error {
	if trailer != nil {
		return decodeErr("chunk after the trailer")
	}
	return nil
}

// allocate builds zeroed tensors for hd's directory after checking it
// against total_bytes.
func allocate(hd *flv1.Header) (tensor.Weights, error) {
	if len(hd.Tensors) > MaxTensors {
		return nil, decodeErr("header lists %d tensors, more than %d", len(hd.Tensors), MaxTensors)
	}
	var total int64
	shapes := make([][]int, len(hd.Tensors))
	for i, ti := range hd.Tensors {
		n := int64(1)
		shape := make([]int, len(ti.Shape))
		for j, d := range ti.Shape {
			if d < 0 || (d > 0 && n > math.MaxInt32/d) {
				return nil, decodeErr("tensor %q: shape %v out of range", ti.Name, ti.Shape)
			}
			n *= d
			shape[j] = int(d)
		}
		shapes[i] = shape
		total += 4 * n
		if total > hd.TotalBytes {
			break
		}
	}
	if total != hd.TotalBytes {
		return nil, decodeErr("tensor directory needs %d bytes, header says total_bytes %d", total, hd.TotalBytes)
	}
	w := make(tensor.Weights, len(hd.Tensors))
	for i, ti := range hd.Tensors {
		w[i] = tensor.Tensor{Name: ti.Name, Shape: shapes[i], Data: make([]float32, tensor.NumElements(shapes[i]))}
	}
	if err := w.Validate(); err != nil {
		return nil, decodeErr("tensor directory: %v", err)
	}
	return w, nil
}

// payloadWriter writes little-endian float32 bytes into consecutive tensors.
type payloadWriter struct {
	w    tensor.Weights
	t    int   // current tensor
	off  int   // bytes written into it (nativeLE)
	i    int   // values written into it (!nativeLE)
	n    int64 // bytes written
	part [4]byte
	np   int // bytes held in part (a value split across chunks; !nativeLE)
}

// errLonger is the refusal of payload beyond the directory.
func (p *payloadWriter) errLonger() error {
	return decodeErr("payload longer than the tensor directory (%d bytes so far)", p.n)
}

func (p *payloadWriter) write(b []byte) error {
	p.n += int64(len(b))
	if !nativeLE {
		return p.writeValues(b)
	}
	// The tensors' memory is the payload's layout: copy bytes, values
	// split across chunks included.
	for len(b) > 0 {
		for p.t < len(p.w) && p.off == 4*len(p.w[p.t].Data) {
			p.t, p.off = p.t+1, 0
		}
		if p.t == len(p.w) {
			return p.errLonger()
		}
		k := copy(floatBytes(p.w[p.t].Data)[p.off:], b)
		p.off += k
		b = b[k:]
	}
	return nil
}

// writeValues is write converting value by value (big-endian hosts).
func (p *payloadWriter) writeValues(b []byte) error {
	for len(b) > 0 {
		for p.t < len(p.w) && p.i == len(p.w[p.t].Data) {
			p.t, p.i = p.t+1, 0
		}
		if p.t == len(p.w) {
			return p.errLonger()
		}
		if p.np > 0 || len(b) < 4 {
			k := copy(p.part[p.np:], b)
			p.np += k
			b = b[k:]
			if p.np == 4 {
				p.w[p.t].Data[p.i] = math.Float32frombits(binary.LittleEndian.Uint32(p.part[:]))
				p.i++
				p.np = 0
			}
			continue
		}
		dst := p.w[p.t].Data[p.i:]
		n := min(len(dst), len(b)/4)
		for k := range n {
			dst[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
		}
		p.i += n
		b = b[4*n:]
	}
	return nil
}
