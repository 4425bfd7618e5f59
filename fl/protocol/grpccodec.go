package protocol

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec chunkCodec delegates to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
)

// chunkCodec is gRPC's protobuf codec with one copy fewer for each data
// Chunk sent and received. Sending, the standard codec copies the data
// into the marshalled message; chunkCodec hands gRPC the field's 3–5 byte
// tag and length and the data itself (often a view of a tensor: see
// EncodeWeights), which gRPC copies into its HTTP/2 frames when it writes
// them. Receiving, gRPC hands the codec a message in pieces (HTTP/2
// frames), which the standard codec copies into one pooled buffer, then
// copies the bytes field out of it again; chunkCodec copies into a buffer
// of its own and lets the Chunk's data alias it. The wire format is
// unchanged (it is the "proto" codec, content
// subtype included): peers with the standard codec interoperate. Every
// other message, and every Chunk that is not a lone data field (headers,
// trailers, unknown fields), goes through the standard codec.
type chunkCodec struct{ std encoding.CodecV2 }

// codec is the FL service's codec; nil if the proto codec is missing.
var codec = func() encoding.CodecV2 {
	std := encoding.GetCodecV2("proto")
	if std == nil {
		return nil
	}
	return chunkCodec{std: std}
}()

func (chunkCodec) Name() string { return "proto" }

// minZeroCopy is the smallest data chunk chunkCodec sends without copying
// (below it, one more small buffer costs more than the copy).
const minZeroCopy = 4 << 10

func (c chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	if ch, ok := v.(*flv1.Chunk); ok {
		if d, ok := ch.GetBody().(*flv1.Chunk_Data); ok && len(d.Data) >= minZeroCopy {
			prefix := protowire.AppendVarint(protowire.AppendTag(make([]byte, 0, 12), 2, protowire.BytesType), uint64(len(d.Data)))
			return mem.BufferSlice{mem.SliceBuffer(prefix), mem.SliceBuffer(d.Data)}, nil
		}
	}
	return c.std.Marshal(v)
}

// rawChunk is a received Chunk (DecodeStream). Through chunkCodec a lone
// data field stays in gRPC's receive buffers: raw holds them (a reference
// of ours, freed once copied into the tensors) and the payload starts skip
// bytes in (after the field's tag and length); Chunk is then empty. Every
// other message, and every message under the standard codec (a proto
// message through the embedded Chunk), is decoded into Chunk.
type rawChunk struct {
	*flv1.Chunk
	raw  mem.BufferSlice
	skip int
}

// loneData says whether msg is exactly one data field (field 2, length
// delimited, nothing after it) and where its bytes start.
func loneData(msg mem.BufferSlice) (skip int, ok bool) {
	var pre [1 + binary.MaxVarintLen64]byte // a one-byte tag and the length
	n := 0
	for _, b := range msg {
		if n += copy(pre[n:], b.ReadOnlyData()); n == len(pre) {
			break
		}
	}
	num, typ, tn := protowire.ConsumeTag(pre[:n])
	if tn < 0 || num != 2 || typ != protowire.BytesType {
		return 0, false
	}
	l, ln := protowire.ConsumeVarint(pre[tn:n])
	if ln < 0 || uint64(msg.Len()-tn-ln) != l {
		return 0, false
	}
	return tn + ln, true
}

func (c chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if rc, ok := v.(*rawChunk); ok {
		if skip, ok := loneData(data); ok {
			data.Ref()
			rc.Chunk.Reset()
			rc.raw, rc.skip = data, skip
			return nil
		}
		v = rc.Chunk
	}
	ch, ok := v.(*flv1.Chunk)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	b := data.Materialize() // a new slice: the data may alias it
	if num, typ, n := protowire.ConsumeTag(b); n > 0 && num == 2 && typ == protowire.BytesType {
		if d, m := protowire.ConsumeBytes(b[n:]); m >= 0 && n+m == len(b) {
			ch.Reset()
			ch.Body = &flv1.Chunk_Data{Data: d}
			return nil
		}
	}
	if err := proto.Unmarshal(b, ch); err != nil {
		return fmt.Errorf("chunk: %w", err)
	}
	return nil
}

// ServerOptions are the gRPC server options an Aggregator's server should
// be created with: the codec that sends and receives chunks with one copy
// fewer each (the server works without them, only slower). They apply to every
// service on that server and change nothing for messages other than the
// FL service's Chunks.
func ServerOptions() []grpc.ServerOption {
	if codec == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.ForceServerCodecV2(codec)}
}

// callOptions are the options of a Collaborator's model download and
// upload.
func callOptions() []grpc.CallOption {
	if codec == nil {
		return nil
	}
	return []grpc.CallOption{grpc.ForceCodecV2(codec)}
}
