package protocol

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"google.golang.org/protobuf/proto"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
)

// FuzzDecodeWeights feeds arbitrary headers, payloads cut into arbitrary
// chunk sizes and trailers to the decoder: it must not panic, and what it
// accepts must re-encode to exactly the payload it was given, with the
// checksums it was given (the trailer's CRC-32C, the header's SHA-256 of a
// legacy sender).
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
	tb, err := proto.Marshal(cs[len(cs)-1].GetTrailer())
	if err != nil {
		f.Fatal(err)
	}
	payload := cs[1].GetData()
	// A legacy header: the SHA-256 in the header, no trailer.
	legacy := proto.Clone(cs[0].GetHeader()).(*flv1.Header)
	sum := sha256.Sum256(payload)
	legacy.Sha256 = sum[:]
	lb, err := proto.Marshal(legacy)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hb, payload, uint16(7), tb)
	f.Add(hb, payload[1:], uint16(3), tb)
	f.Add(hb, payload, uint16(5), []byte{})
	f.Add(lb, payload, uint16(9), []byte{})
	f.Add(lb, payload, uint16(2), tb)
	f.Add([]byte{}, []byte{}, uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, hb, payload []byte, cut uint16, tb []byte) {
		h := &flv1.Header{}
		if err := proto.Unmarshal(hb, h); err != nil || h.TotalBytes > 1<<20 || h.TotalBytes < 0 {
			return
		}
		chunks := []*flv1.Chunk{{Body: &flv1.Chunk_Header{Header: h}}}
		step := int(cut)%64 + 1
		for i := 0; i < len(payload); i += step {
			chunks = append(chunks, &flv1.Chunk{Body: &flv1.Chunk_Data{Data: payload[i:min(len(payload), i+step)]}})
		}
		var tr *flv1.Trailer
		if len(tb) > 0 {
			tr = &flv1.Trailer{}
			if err := proto.Unmarshal(tb, tr); err != nil {
				return
			}
			chunks = append(chunks, &flv1.Chunk{Body: &flv1.Chunk_Trailer{Trailer: tr}})
		}
		dec, err := DecodeWeights(recvFrom(chunks), nil)
		if err != nil {
			return
		}
		var again []byte
		if err := walkPayload(dec.Weights, func(b []byte) error { again = append(again, b...); return nil }); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, payload) {
			t.Fatalf("accepted %d payload bytes re-encode to %d other bytes", len(payload), len(again))
		}
		if tr == nil && len(h.Sha256) == 0 {
			t.Fatal("accepted a transfer without any checksum")
		}
		if tr != nil && PayloadCRC32C(dec.Weights) != tr.GetCrc32C() {
			t.Fatal("accepted payload re-encodes to another crc32c")
		}
		if len(h.Sha256) > 0 {
			if s := sha256.Sum256(again); !bytes.Equal(s[:], h.Sha256) {
				t.Fatal("accepted payload re-encodes to another sha256")
			}
		}
	})
}

// FuzzParseSecAggURI: a key certificate's URI (relayed, untrusted) never
// panics the parser, and whatever parses renders back to the same URI.
func FuzzParseSecAggURI(f *testing.F) {
	k := SecAggKeys{PlanHash: planHash, Round: 3, Mask: make([]byte, 32), Enc: make([]byte, 32)}
	k.Mask[0], k.Enc[0] = 9, 9 // the X25519 base point: a valid key
	u, err := k.uri()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(u.String())
	f.Add(secaggURN + "x:1:00:00")
	f.Add(secaggURN + ":::")
	f.Add("urn:other")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseSecAggURI(s)
		if err != nil {
			return
		}
		u, err := k.uri()
		if err != nil {
			return // a plan hash that is no URI part cannot come from a plan
		}
		k2, err := parseSecAggURI(u.String())
		if err != nil || k2.Round != k.Round || string(k2.Mask) != string(k.Mask) || string(k2.Enc) != string(k.Enc) || k2.PlanHash != k.PlanHash {
			t.Fatalf("%q parsed to %+v, which renders to %q: %+v, %v", s, k, u, k2, err)
		}
	})
}
