package bridge

import (
	"testing"

	"google.golang.org/protobuf/proto"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"github.com/teeml/teeml/internal/testlog"
)

// FuzzDecodeTensor: any bytes a peer puts in a Data frame's tensor are
// refused or decoded consistently, never a panic or a huge allocation.
func FuzzDecodeTensor(f *testing.F) {
	good, _ := EncodeTensor([]int{2, 2}, []float32{1, 2, 3, 4})
	b, _ := proto.Marshal(good)
	f.Add(b)
	b, _ = proto.Marshal(&vflv1.Tensor{Dtype: "float32", Shape: []int64{1 << 30, 1 << 30}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ten vflv1.Tensor
		if proto.Unmarshal(raw, &ten) != nil {
			return
		}
		shape, v, err := DecodeTensor(&ten)
		if err != nil {
			return
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != len(v) || 4*len(v) != len(ten.Data) {
			t.Fatalf("shape %v with %d values from %d bytes", shape, len(v), len(ten.Data))
		}
	})
}

// FuzzSessionFrames feeds a session arbitrary frame sequences from the
// peer: it must end with an error or keep consistent state, never panic.
func FuzzSessionFrames(f *testing.F) {
	seq := func(fs ...*vflv1.Frame) []byte {
		var out []byte
		for _, fr := range fs {
			b, _ := proto.Marshal(fr)
			out = append(out, byte(len(b)))
			out = append(out, b...)
		}
		return out
	}
	ten, _ := EncodeTensor([]int{1}, []float32{1})
	f.Add(seq(&vflv1.Frame{Kind: &vflv1.Frame_Start{Start: &vflv1.Start{IterId: 1}}},
		&vflv1.Frame{Kind: &vflv1.Frame_Data{Data: &vflv1.Data{IterId: 1, Name: "act1_f", Tensor: ten}}},
		&vflv1.Frame{Kind: &vflv1.Frame_Commit{Commit: &vflv1.Commit{IterId: 1}}}))
	f.Add(seq(&vflv1.Frame{Kind: &vflv1.Frame_Commit{Commit: &vflv1.Commit{IterId: -5}}}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := &Session{cfg: Config{Peer: "peer"}, log: testlog.Discard(), wake: make(chan struct{}),
			pending: map[int64]map[string]*vflv1.Tensor{}, cancel: func() {}}
		for len(raw) > 0 {
			n := int(raw[0])
			raw = raw[1:]
			if n > len(raw) {
				return
			}
			var fr vflv1.Frame
			if proto.Unmarshal(raw[:n], &fr) != nil {
				return
			}
			raw = raw[n:]
			if err := s.handle(&fr); err != nil {
				return
			}
			if s.peerCommitted > s.peerStarted || len(s.pending) > maxAhead+1 {
				t.Fatalf("inconsistent state: started %d committed %d pending %d", s.peerStarted, s.peerCommitted, len(s.pending))
			}
		}
	})
}
