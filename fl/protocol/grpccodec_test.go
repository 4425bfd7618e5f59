package protocol

import (
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
)

// pieces cuts b into a BufferSlice of step-byte buffers, as gRPC hands
// over a message read in several HTTP/2 frames.
func pieces(b []byte, step int) mem.BufferSlice {
	var out mem.BufferSlice
	for i := 0; i < len(b); i += step {
		out = append(out, mem.SliceBuffer(b[i:min(len(b), i+step)]))
	}
	return out
}

// sameAsProto checks that chunkCodec decodes b as proto.Unmarshal does.
func sameAsProto(t *testing.T, b []byte, step int) {
	t.Helper()
	want := &flv1.Chunk{}
	wantErr := proto.Unmarshal(b, want)
	got := &flv1.Chunk{}
	err := codec.Unmarshal(pieces(b, step), got)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("chunkCodec error %v, proto.Unmarshal error %v", err, wantErr)
	}
	if err == nil && !proto.Equal(got, want) {
		t.Fatalf("chunkCodec decoded %v, proto.Unmarshal %v", got, want)
	}
	// The same through a rawChunk (DecodeStream): a lone data field stays
	// in the received buffers, anything else is decoded.
	rc := &rawChunk{Chunk: new(flv1.Chunk)}
	err = codec.Unmarshal(pieces(b, step), rc)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("chunkCodec (raw) error %v, proto.Unmarshal error %v", err, wantErr)
	}
	if err != nil {
		return
	}
	if rc.raw != nil {
		d := rc.raw.Materialize()[rc.skip:]
		if w, ok := want.GetBody().(*flv1.Chunk_Data); !ok || string(w.Data) != string(d) || rc.Chunk.GetBody() != nil {
			t.Fatalf("raw data chunk of %d bytes, proto.Unmarshal decoded %v", len(d), want)
		}
	} else if !proto.Equal(rc.Chunk, want) {
		t.Fatalf("chunkCodec (raw) decoded %v, proto.Unmarshal %v", rc.Chunk, want)
	}
}

// TestDecodeStream: a transfer received through chunkCodec in odd pieces,
// with data chunks left in the received buffers, decodes to the weights
// sent; through the standard codec (a server without ServerOptions) too;
// a corrupted one is refused.
func TestDecodeStream(t *testing.T) {
	w := testWeights([]int{3, MaxChunkData/4 - 1}, []int{}, []int{7, 11}, []int{MaxChunkData/4 + 3})
	var msgs [][]byte
	for _, c := range chunks(t, w, &flv1.Header{Round: 1, Kind: flv1.PayloadKind_PAYLOAD_KIND_MODEL}) {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	stream := func(cd interface {
		Unmarshal(mem.BufferSlice, any) error
	}, msgs [][]byte, raws *int) func(any) error {
		i := 0
		return func(m any) error {
			if i == len(msgs) {
				return io.EOF
			}
			i++
			err := cd.Unmarshal(pieces(msgs[i-1], 16384+i), m)
			if rc, ok := m.(*rawChunk); ok && rc.raw != nil {
				*raws++
			}
			return err
		}
	}
	for name, cd := range map[string]encoding.CodecV2{"chunkCodec": codec, "standard codec": encoding.GetCodecV2("proto")} {
		raws := 0
		dec, err := DecodeStream(stream(cd, msgs, &raws), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameWeights(t, w, dec.Weights)
		if want := map[bool]int{true: len(msgs) - 2, false: 0}[cd == codec]; raws != want {
			t.Errorf("%s: %d data chunks left in the received buffers, want %d", name, raws, want)
		}
	}
	bad := append([][]byte(nil), msgs...)
	bad[2] = append([]byte(nil), bad[2]...)
	bad[2][100] ^= 1
	raws := 0
	if _, err := DecodeStream(stream(codec, bad, &raws), nil); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupted chunk: %v, want a checksum error", err)
	}
	// A data chunk first, and one after the trailer, are refused.
	for name, ms := range map[string][][]byte{"data first": msgs[1:], "data after trailer": append(append([][]byte(nil), msgs...), msgs[1])} {
		var de *DecodeError
		if _, err := DecodeStream(stream(codec, ms, &raws), nil); !errors.As(err, &de) || de.Checksum {
			t.Errorf("%s: %v, want a framing DecodeError", name, err)
		}
	}
}

// TestChunkCodec: every kind of Chunk, and malformed ones, decode as with
// the standard codec; a data Chunk's bytes alias the codec's own buffer
// (not the pieces gRPC frees).
func TestChunkCodec(t *testing.T) {
	if codec == nil {
		t.Fatal("no proto codec registered")
	}
	w := testWeights([]int{3, 1000}, []int{10})
	for i, c := range chunks(t, w, &flv1.Header{Round: 3, Sender: "col-1", Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE}) {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		sameAsProto(t, b, 7)
		if i == 1 {
			got := &flv1.Chunk{}
			if err := codec.Unmarshal(pieces(b, len(b)), got); err != nil {
				t.Fatal(err)
			}
			d := got.GetData()
			if len(d) == 0 {
				t.Fatal("data chunk decoded without data")
			}
			d[0] ^= 1 // the codec's buffer, not gRPC's
			if b[len(b)-len(d)] != c.GetData()[0] {
				t.Fatal("decoded data aliases the received buffer gRPC frees")
			}
		}
	}
	data := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{1, 2, 3, 4})
	cases := map[string][]byte{
		"empty":              {},
		"data then unknown":  protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), data...), 9, protowire.VarintType), 5),
		"two data fields":    append(append([]byte(nil), data...), data...),
		"truncated data":     data[:len(data)-1],
		"data as varint":     protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 5),
		"garbage":            {0xff, 0xff, 0xff},
		"header after data":  append(append([]byte(nil), data...), protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), nil)...),
		"zero-length data":   protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), nil),
		"oversized length":   protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.BytesType), 1<<40),
		"group wire type":    protowire.AppendTag(nil, 2, protowire.StartGroupType),
		"trailer then data":  append(protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), nil), data...),
		"non-chunk trailing": append(append([]byte(nil), data...), 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) { sameAsProto(t, b, 2) })
	}
	// Sending: a large data chunk is marshalled without a copy of its data,
	// to the bytes the standard codec produces; small ones and the others
	// as the standard codec does.
	big := &flv1.Chunk{Body: &flv1.Chunk_Data{Data: floatBytes(w[0].Data)}}
	for _, c := range []*flv1.Chunk{big, {Body: &flv1.Chunk_Data{Data: []byte{1, 2, 3}}}, {Body: &flv1.Chunk_Trailer{Trailer: &flv1.Trailer{}}}} {
		out, err := codec.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); string(got) != string(want) {
			t.Fatalf("marshalled %d bytes differ from proto.Marshal's %d", len(got), len(want))
		}
		if c == big && &out[len(out)-1].ReadOnlyData()[0] != &floatBytes(w[0].Data)[0] {
			t.Error("large data chunk was copied")
		}
		out.Free()
	}

	// Other messages go through the standard codec.
	m := &flv1.TaskRequest{Round: 4, Sender: "col-2", WaitMs: 100}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got := &flv1.TaskRequest{}
	if err := codec.Unmarshal(pieces(b, 3), got); err != nil || !proto.Equal(got, m) {
		t.Fatalf("TaskRequest: %v %v", got, err)
	}
}

// FuzzChunkCodec: chunkCodec decodes any bytes as proto.Unmarshal does.
func FuzzChunkCodec(f *testing.F) {
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{1, 2, 3, 4}), uint8(3))
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), nil), uint8(1))
	f.Add([]byte{0x12, 0x80}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		sameAsProto(t, b, int(step)%16+1)
	})
}
