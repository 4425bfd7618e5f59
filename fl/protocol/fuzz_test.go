package protocol

import (
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
)

// FuzzDecodeWeights feeds arbitrary headers and payload cut into arbitrary
// chunk sizes to the decoder: it must not panic, and what it accepts must
// re-encode to the same payload checksum.
func FuzzDecodeWeights(f *testing.F) {
	w := testWeights([]int{3, 5}, []int{}, []int{2})
	var cs []*flv1.Chunk
	if _, err := EncodeWeights(w, &flv1.Header{Round: 1, Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE}, func(c *flv1.Chunk) error { cs = append(cs, c); return nil }); err != nil {
		f.Fatal(err)
	}
	hb, err := proto.Marshal(cs[0].GetHeader())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hb, cs[1].GetData(), uint16(7))
	f.Add(hb, cs[1].GetData()[1:], uint16(3))
	f.Add([]byte{}, []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, hb, payload []byte, cut uint16) {
		h := &flv1.Header{}
		if err := proto.Unmarshal(hb, h); err != nil || h.TotalBytes > 1<<20 || h.TotalBytes < 0 {
			return
		}
		chunks := []*flv1.Chunk{{Body: &flv1.Chunk_Header{Header: h}}}
		step := int(cut)%64 + 1
		for i := 0; i < len(payload); i += step {
			chunks = append(chunks, &flv1.Chunk{Body: &flv1.Chunk_Data{Data: payload[i:min(len(payload), i+step)]}})
		}
		i := 0
		dec, err := DecodeWeights(func() (*flv1.Chunk, error) {
			if i == len(chunks) {
				return nil, io.EOF
			}
			i++
			return chunks[i-1], nil
		}, nil)
		if err != nil {
			return
		}
		if got := PayloadSHA256(dec.Weights); string(got) != string(h.Sha256) {
			t.Fatalf("accepted payload re-encodes to another checksum")
		}
	})
}
