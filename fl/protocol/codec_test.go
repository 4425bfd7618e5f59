package protocol

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/ml/tensor"
)

func testWeights(sizes ...[]int) tensor.Weights {
	var w tensor.Weights
	k := 0
	for i, s := range sizes {
		t := tensor.Tensor{Name: string(rune('a'+i)) + "/w", Shape: s, Data: make([]float32, tensor.NumElements(s))}
		for j := range t.Data {
			t.Data[j] = float32(k)*0.5 - 3
			k++
		}
		w = append(w, t)
	}
	return w
}

// chunks encodes w and returns the chunks.
func chunks(t *testing.T, w tensor.Weights, h *flv1.Header) []*flv1.Chunk {
	t.Helper()
	var out []*flv1.Chunk
	if _, err := EncodeWeights(w, h, func(c *flv1.Chunk) error { out = append(out, c); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func recvFrom(cs []*flv1.Chunk) func() (*flv1.Chunk, error) {
	i := 0
	return func() (*flv1.Chunk, error) {
		if i == len(cs) {
			return nil, io.EOF
		}
		i++
		return cs[i-1], nil
	}
}

func sameWeights(t *testing.T, want, got tensor.Weights) {
	t.Helper()
	if err := want.Compatible(got); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		for j, v := range want[i].Data {
			if math.Float32bits(got[i].Data[j]) != math.Float32bits(v) {
				t.Fatalf("tensor %q value %d: got %v, want %v", want[i].Name, j, got[i].Data[j], v)
			}
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	// Tensors straddling chunk boundaries, a scalar and an empty tensor.
	w := testWeights([]int{3, MaxChunkData/4 - 1}, []int{}, []int{0, 5}, []int{7, 11}, []int{MaxChunkData/4 + 3})
	w[0].Data[5] = float32(math.Inf(-1))
	w[3].Data[2] = float32(math.NaN())
	cs := chunks(t, w, &flv1.Header{Round: 2, Sender: "col-1", PlanHash: "abc", Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE, NumExamples: 9})
	var payload int
	for _, c := range cs[1 : len(cs)-1] {
		if n := len(c.GetData()); n == 0 || n > MaxChunkData {
			t.Fatalf("chunk of %d bytes", n)
		}
		payload += len(c.GetData())
	}
	if cs[len(cs)-1].GetTrailer() == nil {
		t.Fatal("last chunk is not the trailer")
	}
	if payload != 4*w.NumParams() || len(cs) != 2+(payload+MaxChunkData-1)/MaxChunkData {
		t.Fatalf("%d chunks, %d payload bytes for %d params", len(cs), payload, w.NumParams())
	}
	dec, err := DecodeWeights(recvFrom(cs), nil)
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, w, dec.Weights)
	if h := dec.Header; h.Round != 2 || h.Sender != "col-1" || h.NumExamples != 9 || h.TotalBytes != int64(payload) {
		t.Fatalf("header %v", h)
	}

	// The same payload re-cut into odd pieces (values split across chunks).
	var flat []byte
	for _, c := range cs[1:] {
		flat = append(flat, c.GetData()...)
	}
	odd := []*flv1.Chunk{cs[0]}
	for i, step := 0, 1; i < len(flat); step = step*7%1021 + 1 {
		j := min(len(flat), i+step)
		odd = append(odd, &flv1.Chunk{Body: &flv1.Chunk_Data{Data: flat[i:j]}})
		i = j
	}
	odd = append(odd, cs[len(cs)-1])
	dec, err = DecodeWeights(recvFrom(odd), nil)
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, w, dec.Weights)
}

func TestCodecRefusals(t *testing.T) {
	w := testWeights([]int{4, 300000}, []int{10})
	good := chunks(t, w, &flv1.Header{Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE})
	clone := func() []*flv1.Chunk {
		out := make([]*flv1.Chunk, len(good))
		for i, c := range good {
			if d := c.GetData(); d != nil {
				out[i] = &flv1.Chunk{Body: &flv1.Chunk_Data{Data: append([]byte(nil), d...)}}
			} else {
				out[i] = proto.Clone(c).(*flv1.Chunk)
			}
		}
		return out
	}
	flipped := clone()
	flipped[2].GetData()[100] ^= 1
	_, err := DecodeWeights(recvFrom(flipped), nil)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("flipped bit: %v, want a checksum error", err)
	}
	t.Logf("flipped bit: %v", err)
	cases := map[string][]*flv1.Chunk{
		"truncated":       clone()[:len(good)-1],
		"no header":       clone()[1:],
		"empty":           nil,
		"two headers":     append(clone(), good[0]),
		"extra data":      append(clone(), &flv1.Chunk{Body: &flv1.Chunk_Data{Data: []byte{1, 2, 3, 4}}}),
		"oversized chunk": {good[0], {Body: &flv1.Chunk_Data{Data: make([]byte, MaxChunkData+1)}}},
	}
	for name, cs := range cases {
		var de *DecodeError
		if _, err := DecodeWeights(recvFrom(cs), nil); !errors.As(err, &de) || de.Checksum {
			t.Errorf("%s: %v, want a framing DecodeError", name, err)
		}
	}
	// A header whose directory does not match total_bytes, and one lying
	// about a huge tensor, are refused before any allocation.
	h := *good[0].GetHeader()
	h.TotalBytes++
	if _, err := DecodeWeights(recvFrom([]*flv1.Chunk{{Body: &flv1.Chunk_Header{Header: &h}}}), nil); err == nil {
		t.Error("total_bytes mismatch accepted")
	}
	h2 := *good[0].GetHeader()
	h2.Tensors = []*flv1.TensorInfo{{Name: "x", Shape: []int64{1 << 40, 1 << 40}}}
	if _, err := DecodeWeights(recvFrom([]*flv1.Chunk{{Body: &flv1.Chunk_Header{Header: &h2}}}), nil); err == nil {
		t.Error("overflowing shape accepted")
	}
	// The check hook refuses before the payload is read.
	reads := 0
	refuse := errors.New("no thanks")
	_, err = DecodeWeights(func() (*flv1.Chunk, error) { reads++; return recvFrom(good)() }, func(*flv1.Header) error { return refuse })
	if !errors.Is(err, refuse) || reads != 1 {
		t.Fatalf("check refusal: %v after %d reads", err, reads)
	}
}

// wireCounter is a gRPC stats handler adding up the wire length of
// received payloads (gRPC's 5-byte message framing included).
type wireCounter struct{ in atomic.Int64 }

func (w *wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (w *wireCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.InPayload); ok {
		w.in.Add(int64(p.WireLength))
	}
}
func (w *wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (w *wireCounter) HandleConn(context.Context, stats.ConnStats) {}

// sinkServer decodes uploads.
type sinkServer struct {
	flv1.UnimplementedAggregatorServer
	got chan *Decoded
}

func (s *sinkServer) UploadUpdate(stream grpc.ClientStreamingServer[flv1.Chunk, flv1.UploadAck]) error {
	dec, err := DecodeWeights(stream.Recv, nil)
	if err != nil {
		return err
	}
	s.got <- dec
	return stream.SendAndClose(&flv1.UploadAck{BytesReceived: dec.WireBytes})
}

// heapPeak samples the bytes of live and not yet swept heap objects.
type heapPeak struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) Stop() uint64 { close(h.stop); <-h.done; return h.peak.Load() }

// TestLargeModelOverGRPC streams a 300 MB model through a real gRPC
// client stream over loopback and checks the bytes on the wire and the
// memory held.
func TestLargeModelOverGRPC(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("300 MB transfer: skipped under -short and -race")
	}
	const payload = 300_000_000
	// Two tensors whose sizes are not multiples of the chunk size.
	w := tensor.Weights{
		{Name: "big/weights", Shape: []int{7_000, 10_000}, Data: make([]float32, 70_000_000)},
		{Name: "big/biases", Shape: []int{5_000_000}, Data: make([]float32, 5_000_000)},
	}
	for _, tt := range w {
		for j := range tt.Data {
			tt.Data[j] = float32(j%9973) * 0.25
		}
	}
	if 4*w.NumParams() != payload {
		t.Fatalf("payload %d", 4*w.NumParams())
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wc := &wireCounter{}
	srv := grpc.NewServer(grpc.StatsHandler(wc))
	sink := &sinkServer{got: make(chan *Decoded, 1)}
	flv1.RegisterAggregatorServer(srv, sink)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); wg.Wait() }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	runtime.GC()
	old := debug.SetGCPercent(10)
	defer debug.SetGCPercent(old)
	runtime.GC()
	peak := startHeapPeak()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	stream, err := flv1.NewAggregatorClient(conn).UploadUpdate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := EncodeWeights(w, &flv1.Header{Round: 1, Sender: "col-1", PlanHash: "p", Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE, NumExamples: 1}, stream.Send)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	dec := <-sink.got
	maxHeap := peak.Stop()
	sameWeights(t, w, dec.Weights)

	ratio := float64(sent) / payload
	wire := float64(wc.in.Load()) / payload
	t.Logf("300 MB upload: %.2f s (%.0f MB/s); chunks %d bytes = %.5f× payload; gRPC wire %d bytes = %.5f× payload; server decoded %d bytes; peak heap objects %.0f MB (payload ×%.2f)",
		elapsed.Seconds(), payload/elapsed.Seconds()/1e6, sent, ratio, wc.in.Load(), wire, ack.BytesReceived, float64(maxHeap)/1e6, float64(maxHeap)/payload)
	if ack.BytesReceived != sent || dec.WireBytes != sent {
		t.Errorf("server counted %d bytes, client sent %d", ack.BytesReceived, sent)
	}
	if ratio > 1.05 || wire > 1.05 {
		t.Errorf("bytes on the wire %.4f× (chunks) / %.4f× (gRPC) the payload, want ≤ 1.05×", ratio, wire)
	}
	// Held: the source (sender) and the decoded tensors (receiver), 2×
	// payload, plus chunks in flight and the GC's 10% headroom. Buffering
	// the payload anywhere would add another 1×.
	if limit := uint64(2.7 * payload); maxHeap > limit {
		t.Errorf("peak heap %d bytes > %d (2.7× payload)", maxHeap, limit)
	}
	if elapsed > 30*time.Second {
		t.Errorf("300 MB took %s, want < 30 s", elapsed)
	}
}

// withValueCodec runs f with the value-by-value (big-endian host) codec
// path, whatever this host is.
func withValueCodec(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := nativeLE
	nativeLE = false
	defer func() { nativeLE = saved }()
	f(t)
}

// TestCodecPortablePath: the value-by-value path produces the same bytes
// as the native one and decodes both, values split across chunks included.
func TestCodecPortablePath(t *testing.T) {
	w := testWeights([]int{3, MaxChunkData/4 - 1}, []int{}, []int{7, 11}, []int{MaxChunkData/4 + 3})
	h := &flv1.Header{Round: 1, Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE, NumExamples: 1}
	native := chunks(t, w, h)
	var portable []*flv1.Chunk
	withValueCodec(t, func(t *testing.T) {
		portable = chunks(t, w, h)
		dec, err := DecodeWeights(recvFrom(native), nil)
		if err != nil {
			t.Fatal(err)
		}
		sameWeights(t, w, dec.Weights)
		// Odd cuts, so that values straddle chunks.
		var flat []byte
		for _, c := range native[1 : len(native)-1] {
			flat = append(flat, c.GetData()...)
		}
		odd := []*flv1.Chunk{native[0]}
		for i := 0; i < len(flat); i += 4097 {
			odd = append(odd, &flv1.Chunk{Body: &flv1.Chunk_Data{Data: flat[i:min(len(flat), i+4097)]}})
		}
		odd = append(odd, native[len(native)-1])
		if dec, err = DecodeWeights(recvFrom(odd), nil); err != nil {
			t.Fatal(err)
		}
		sameWeights(t, w, dec.Weights)
	})
	if len(portable) != len(native) {
		t.Fatalf("portable path: %d chunks, native %d", len(portable), len(native))
	}
	for i := range native {
		if !proto.Equal(native[i], portable[i]) {
			t.Fatalf("chunk %d differs between the native and the portable path", i)
		}
	}
}

// TestEncodeZeroCopy: on a little-endian host, a chunk inside one tensor is
// a view of the tensor (no copy), chunks straddling tensors are copies,
// and encoding leaves the weights as they were.
func TestEncodeZeroCopy(t *testing.T) {
	if !nativeLE {
		t.Skip("big-endian host: every chunk is converted")
	}
	w := testWeights([]int{MaxChunkData/4 + 10}, []int{2 * MaxChunkData / 4})
	orig := w.Clone()
	cs := chunks(t, w, &flv1.Header{Kind: flv1.PayloadKind_PAYLOAD_KIND_MODEL})
	if len(cs) != 6 { // header, 4 data chunks (the last 10 values), trailer
		t.Fatalf("%d chunks, want 6", len(cs))
	}
	if &cs[1].GetData()[0] != &floatBytes(w[0].Data)[0] {
		t.Error("first chunk is a copy, want a view of the first tensor")
	}
	if &cs[2].GetData()[0] == &floatBytes(w[0].Data)[MaxChunkData] {
		t.Error("chunk straddling two tensors is a view of the first")
	}
	if &cs[3].GetData()[0] != &floatBytes(w[1].Data)[MaxChunkData-40] {
		t.Error("third chunk is a copy, want a view of the second tensor")
	}
	sameWeights(t, orig, w)
}

// TestCodecTrailer: the trailer's presence, position and CRC, and the
// legacy header SHA-256 of senders that predate it.
func TestCodecTrailer(t *testing.T) {
	w := testWeights([]int{4, 300000}, []int{10})
	good := chunks(t, w, &flv1.Header{Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE})
	last := len(good) - 1
	if good[last].GetTrailer().GetCrc32C() != PayloadCRC32C(w) {
		t.Fatal("trailer does not carry the payload's crc32c")
	}
	body := good[1:last]
	badCRC := good[last].GetTrailer().GetCrc32C() ^ 1
	framing := map[string][]*flv1.Chunk{
		"no trailer":          good[:last],
		"data after trailer":  append(append([]*flv1.Chunk{}, good...), &flv1.Chunk{Body: &flv1.Chunk_Data{Data: nil}}),
		"two trailers":        append(append([]*flv1.Chunk{}, good...), good[last]),
		"trailer without crc": append(append([]*flv1.Chunk{good[0]}, body...), &flv1.Chunk{Body: &flv1.Chunk_Trailer{Trailer: &flv1.Trailer{}}}),
		"empty chunk":         append(append([]*flv1.Chunk{good[0]}, &flv1.Chunk{}), good[1:]...),
		"early trailer":       append([]*flv1.Chunk{good[0], good[1], good[last]}, good[2:last]...),
	}
	for name, cs := range framing {
		var de *DecodeError
		_, err := DecodeWeights(recvFrom(cs), nil)
		if !errors.As(err, &de) || de.Checksum {
			t.Errorf("%s: %v, want a framing DecodeError", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	wrong := append(append([]*flv1.Chunk{good[0]}, body...), &flv1.Chunk{Body: &flv1.Chunk_Trailer{Trailer: &flv1.Trailer{Crc32C: &badCRC}}})
	if _, err := DecodeWeights(recvFrom(wrong), nil); !errors.Is(err, ErrChecksum) {
		t.Errorf("wrong crc32c: %v, want a checksum error", err)
	}

	// A sender that predates the trailer: SHA-256 in the header, no trailer.
	var flat []byte
	for _, c := range body {
		flat = append(flat, c.GetData()...)
	}
	sum := sha256.Sum256(flat)
	legacy := proto.Clone(good[0].GetHeader()).(*flv1.Header)
	legacy.Sha256 = sum[:]
	old := append([]*flv1.Chunk{{Body: &flv1.Chunk_Header{Header: legacy}}}, body...)
	dec, err := DecodeWeights(recvFrom(old), nil)
	if err != nil {
		t.Fatalf("legacy transfer: %v", err)
	}
	sameWeights(t, w, dec.Weights)
	bad := proto.Clone(legacy).(*flv1.Header)
	bad.Sha256 = append([]byte(nil), sum[:]...)
	bad.Sha256[0] ^= 1
	if _, err := DecodeWeights(recvFrom(append([]*flv1.Chunk{{Body: &flv1.Chunk_Header{Header: bad}}}, body...)), nil); !errors.Is(err, ErrChecksum) {
		t.Errorf("legacy transfer with a wrong sha256: %v, want a checksum error", err)
	}
	short := proto.Clone(legacy).(*flv1.Header)
	short.Sha256 = sum[:5]
	var de *DecodeError
	if _, err := DecodeWeights(recvFrom(append([]*flv1.Chunk{{Body: &flv1.Chunk_Header{Header: short}}}, body...)), nil); !errors.As(err, &de) || de.Checksum {
		t.Errorf("5-byte sha256: %v, want a framing DecodeError", err)
	}
}
