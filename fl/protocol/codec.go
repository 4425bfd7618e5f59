package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"

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

// putFloats writes vals as little-endian float32 into b (len(b) = 4·len(vals)).
func putFloats(b []byte, vals []float32) {
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
}

// walkPayload calls fn with consecutive pieces of the little-endian payload
// of w, each at most MaxChunkData bytes; a new buffer each call when fresh,
// else one reused scratch buffer.
func walkPayload(w tensor.Weights, fresh bool, fn func([]byte) error) error {
	var scratch []byte
	buf := func(n int) []byte {
		if fresh {
			return make([]byte, n)
		}
		if scratch == nil {
			scratch = make([]byte, MaxChunkData)
		}
		return scratch[:n]
	}
	const per = MaxChunkData / 4
	var pending []byte // partially filled chunk
	fill := 0
	for _, t := range w {
		data := t.Data
		for len(data) > 0 {
			if pending == nil {
				pending = buf(MaxChunkData)
				fill = 0
			}
			n := min(len(data), per-fill/4)
			putFloats(pending[fill:fill+4*n], data[:n])
			fill += 4 * n
			data = data[n:]
			if fill == MaxChunkData {
				if err := fn(pending); err != nil {
					return err
				}
				pending = nil
			}
		}
	}
	if pending != nil && fill > 0 {
		return fn(pending[:fill])
	}
	return nil
}

// PayloadSHA256 returns the SHA-256 of w's little-endian float32 payload.
func PayloadSHA256(w tensor.Weights) []byte {
	h := sha256.New()
	_ = walkPayload(w, false, func(b []byte) error { h.Write(b); return nil })
	return h.Sum(nil)
}

// EncodeWeights sends w as a model transfer: first a Chunk carrying h,
// completed with w's tensor directory, total_bytes and the payload's
// SHA-256, then the payload in Chunks of at most MaxChunkData bytes. Every
// chunk is a new message (gRPC may keep a sent message until it is
// written), so memory use is w plus the chunks in flight. It returns the
// bytes handed to send (the chunks' encoded sizes).
func EncodeWeights(w tensor.Weights, h *flv1.Header, send func(*flv1.Chunk) error) (int64, error) {
	if err := w.Validate(); err != nil {
		return 0, err
	}
	hd := proto.Clone(h).(*flv1.Header)
	hd.Tensors = Directory(w)
	hd.TotalBytes = 4 * int64(w.NumParams())
	hd.Sha256 = PayloadSHA256(w)
	first := &flv1.Chunk{Body: &flv1.Chunk_Header{Header: hd}}
	sent := int64(proto.Size(first))
	if err := send(first); err != nil {
		return sent, err
	}
	err := walkPayload(w, true, func(b []byte) error {
		c := &flv1.Chunk{Body: &flv1.Chunk_Data{Data: b}}
		sent += int64(proto.Size(c))
		return send(c)
	})
	return sent, err
}

// ErrChecksum is returned (wrapped) by DecodeWeights when the payload's
// SHA-256 differs from the header's.
var ErrChecksum = errors.New("payload checksum mismatch")

// DecodeError is a refusal of a received transfer: malformed framing or
// header (Checksum false) or a payload whose SHA-256 does not match
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
// any tensor is allocated, then exactly total_bytes of payload written
// straight into the tensors the directory describes. Memory use is the
// decoded tensors plus the chunk being read. The payload's SHA-256 must
// match the header's.
func DecodeWeights(recv func() (*flv1.Chunk, error), check func(*flv1.Header) error) (*Decoded, error) {
	c, err := recv()
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
	w, err := allocate(hd)
	if err != nil {
		return nil, err
	}
	if len(hd.Sha256) != sha256.Size {
		return nil, decodeErr("header has a %d-byte sha256, want %d", len(hd.Sha256), sha256.Size)
	}
	dec := payloadWriter{w: w, h: sha256.New()}
	for {
		c, err := recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		out.WireBytes += int64(proto.Size(c))
		if c.GetHeader() != nil {
			return nil, decodeErr("second header in one transfer")
		}
		data := c.GetData()
		if len(data) > MaxChunkData {
			return nil, decodeErr("chunk of %d bytes exceeds %d", len(data), MaxChunkData)
		}
		if err := dec.write(data); err != nil {
			return nil, err
		}
	}
	if dec.n != hd.TotalBytes {
		return nil, decodeErr("payload ended after %d of %d bytes", dec.n, hd.TotalBytes)
	}
	if sum := dec.h.Sum(nil); !bytes.Equal(sum, hd.Sha256) {
		return nil, &DecodeError{Checksum: true, Msg: fmt.Sprintf("payload sha256 %s… differs from the header's %s…: %v",
			hex.EncodeToString(sum[:4]), hex.EncodeToString(hd.Sha256[:4]), ErrChecksum)}
	}
	out.Weights = w
	return out, nil
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
	h    hash.Hash
	t, i int   // current tensor and value index
	n    int64 // bytes written
	part [4]byte
	np   int // bytes held in part (a value split across chunks)
}

func (p *payloadWriter) write(b []byte) error {
	p.h.Write(b)
	p.n += int64(len(b))
	for len(b) > 0 {
		for p.t < len(p.w) && p.i == len(p.w[p.t].Data) {
			p.t, p.i = p.t+1, 0
		}
		if p.t == len(p.w) {
			return decodeErr("payload longer than the tensor directory (%d bytes so far)", p.n)
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
