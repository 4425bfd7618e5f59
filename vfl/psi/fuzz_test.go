package psi

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"filippo.io/edwards25519"
	"github.com/gtank/ristretto255"
	"google.golang.org/protobuf/proto"

	psiv1 "github.com/teeml/teeml/api/proto/teeml/psi/v1"
)

// FuzzIDReader: any bytes either parse into valid, normalised, bounded IDs
// or fail with an error naming the file and line; it never panics.
func FuzzIDReader(f *testing.F) {
	for _, s := range []string{"a\nb\n", "a\r\nb", "\xef\xbb\xbfx\n", "\n", "a\n\nb", "\xff\n", "Jose\u0301\n", strings.Repeat("x", MaxIDLen+1)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewIDReader(bytes.NewReader(b), "fuzz")
		for {
			id, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "ids fuzz") || strings.Contains(err.Error(), "\n") {
					t.Fatalf("bad error %q", err)
				}
				return
			}
			if id == "" || !utf8.ValidString(id) || len(id) > MaxIDLen || NormalizeID(id) != id || strings.ContainsAny(id, "\n") {
				t.Fatalf("bad ID %q", id)
			}
		}
	})
}

// FuzzPeerMessage feeds arbitrary bytes as a peer's message to the checks
// and the group arithmetic that handle it: no panic, and points that are
// accepted are canonical encodings of curve points not of small order.
func FuzzPeerMessage(f *testing.F) {
	good := make([]byte, 2*pointLen)
	blindIDs(good, []byte("dst"), mustSecret(f), []string{"a", "b"})
	for _, m := range []*psiv1.PSIMessage{
		{Body: &psiv1.PSIMessage_Points{Points: &psiv1.Points{Seq: 0, Data: good}}},
		{Body: &psiv1.PSIMessage_Points{Points: &psiv1.Points{Seq: 0, Data: make([]byte, 32)}}},
		{Body: &psiv1.PSIMessage_Digests{Digests: &psiv1.Digests{Seq: 0, Data: bytes.Repeat([]byte{1}, 32)}}},
		{Body: &psiv1.PSIMessage_Hello{Hello: &psiv1.Hello{Version: Version, Role: 1, Mode: 1, Commit: make([]byte, 32)}}},
		{Body: &psiv1.PSIMessage_EndOfSet{EndOfSet: &psiv1.EndOfSet{Count: 3}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	k := mustSecret(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m psiv1.PSIMessage
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		if p := m.GetPoints(); p != nil && checkPoints(p, p.GetSeq()) == nil {
			data := p.GetData()
			out := make([]byte, len(data)/pointLen*DigestLen)
			if err := reblind(out, k, data); err == nil {
				for i := 0; i < len(data); i += pointLen {
					enc := data[i : i+pointLen]
					q, err := new(edwards25519.Point).SetBytes(enc)
					if err != nil || !bytes.Equal(q.Bytes(), enc) || q.MultByCofactor(q).Equal(edwards25519.NewIdentityPoint()) == 1 {
						t.Fatalf("accepted invalid point %x", enc)
					}
				}
			}
		}
		if d := m.GetDigests(); d != nil && checkSortedDigests(d.GetData(), nil) == nil {
			data := d.GetData()
			for i := DigestLen; i < len(data); i += DigestLen {
				if bytes.Compare(data[i-DigestLen:i], data[i:i+DigestLen]) >= 0 {
					t.Fatal("accepted unsorted digests")
				}
			}
		}
		if h := m.GetHello(); h != nil {
			s := &session{cfg: Config{Role: Leader, Mode: Both, ConfigHash: "x"}, peer: "fuzz"}
			_ = s.checkHello(h)
		}
	})
}

func mustSecret(tb testing.TB) *ristretto255.Scalar {
	k, err := newSecret(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// FuzzDecodePoint: decodePoint, which parses the peer's points, accepts
// exactly the canonical encodings of curve points, and never panics.
func FuzzDecodePoint(f *testing.F) {
	f.Add(make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Add(new(edwards25519.Point).ScalarBaseMult(edwards25519.NewScalar()).Bytes())
	f.Add(edwards25519.NewGeneratorPoint().Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 32 {
			var p edwards25519.Point
			if decodePoint(&p, b) == nil {
				t.Fatalf("%d bytes accepted", len(b))
			}
			return
		}
		checkDecodePoint(t, b)
	})
}
