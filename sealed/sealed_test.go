package sealed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

func testKeys(t testing.TB, ids ...string) *LocalKeys {
	t.Helper()
	keks := map[string][]byte{}
	for _, id := range ids {
		k := make([]byte, DataKeySize)
		rand.Read(k)
		keks[id] = k
	}
	l, err := NewLocalKeys(keks)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// seal encrypts data, writing it in chunks of the given size to exercise the
// streaming writer (chunk 0 writes everything at once).
func seal(t testing.TB, ks KeySource, keyID string, data []byte, seg, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(context.Background(), &buf, ks, keyID, &Options{SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	if chunk == 0 {
		chunk = len(data) + 1
	}
	for rest := data; len(rest) > 0; {
		n := min(chunk, len(rest))
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sealTink encrypts data exactly as NewWriter sets up a file (teeml header,
// data key from ks) but with Tink's own encrypting writer: the reference
// for the format teeml's segment loop writes.
func sealTink(t testing.TB, ks KeySource, keyID string, data []byte, seg int) []byte {
	t.Helper()
	plain, wrapped, err := ks.NewDataKey(context.Background(), keyID)
	if err != nil {
		t.Fatal(err)
	}
	h := &Header{Algorithm: AlgAES256GCMHKDF, SegmentSize: seg, KeyID: keyID, Wrapped: wrapped}
	raw, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p, err := primitive(plain, h, len(raw))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(raw)
	enc, err := p.NewEncryptingWriter(&buf, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sealFast encrypts through Writer.ReadFrom (teeml's in-place segment
// loop) instead of Write.
func sealFast(t testing.TB, ks KeySource, keyID string, src io.Reader, seg int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(context.Background(), &buf, ks, keyID, &Options{SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, src); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// open decrypts everything and returns what the reader released before any
// error, and the error.
func open(ks KeySource, ct []byte, oneByte bool) ([]byte, error) {
	var src io.Reader = bytes.NewReader(ct)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	r, err := Open(context.Background(), src, ks)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// openWT decrypts through Reader.WriteTo (teeml's in-place segment loop)
// instead of Read (Tink's reader).
func openWT(ks KeySource, ct []byte) ([]byte, error) {
	r, err := Open(context.Background(), bytes.NewReader(ct), ks)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = r.WriteTo(&buf)
	return buf.Bytes(), err
}

func TestRoundTripSizes(t *testing.T) {
	ks := testKeys(t, "k1")
	const S = DefaultSegmentSize
	// Header for key ID "k1" and a LocalKeys wrapped key (12+32+16 bytes).
	hdr := fixedLen + 2 + 2 + 60
	first := S - hdr - tinkHeaderLen - tagLen // plaintext in segment 0
	later := S - tagLen
	sizes := []int{0, 1, S - 1, S, S + 1,
		first - 1, first, first + 1,
		first + later - 1, first + later, first + later + 1,
		first + 2*later + 12345}
	for _, n := range sizes {
		data := randBytes(n)
		ct := seal(t, ks, "k1", data, S, 0)
		h, hl, err := ParseHeader(ct)
		if err != nil {
			t.Fatal(err)
		}
		if hl != hdr || h.KeyID != "k1" || h.SegmentSize != S {
			t.Fatalf("header len %d (want %d), %+v", hl, hdr, h)
		}
		// Expected size: headers + one tag per segment.
		segs := 1
		if n > first {
			segs = 1 + (n-first+later-1)/later
		}
		if want := hdr + tinkHeaderLen + n + segs*tagLen; len(ct) != want {
			t.Errorf("%d bytes: ciphertext %d bytes, want %d (%d segments)", n, len(ct), want, segs)
		}
		got, err := open(ks, ct, false)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: round trip differs", n)
		}
		got, err = openWT(ks, ct)
		if err != nil {
			t.Fatalf("%d bytes, WriteTo: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: WriteTo round trip differs", n)
		}
		// Tink's own writer produces the same layout, and both readers
		// decrypt it.
		ref := sealTink(t, ks, "k1", data, S)
		if len(ref) != len(ct) {
			t.Fatalf("%d bytes: Write wrote %d bytes, Tink's writer %d", n, len(ct), len(ref))
		}
		if got, err := openWT(ks, ref); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: WriteTo on Tink's output: %v", n, err)
		}
		// Write in uneven pieces (whole segments sealed from the slice,
		// partial ones copied) gives the same layout.
		for _, chunk := range []int{1000, later - 1, later + 1, 2*later + 3} {
			if pieces := seal(t, ks, "k1", data, S, chunk); len(pieces) != len(ct) {
				t.Fatalf("%d bytes in %d-byte writes: %d bytes, want %d", n, chunk, len(pieces), len(ct))
			} else if got, err := open(ks, pieces, false); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes in %d-byte writes: Tink's reader: %v", n, chunk, err)
			}
		}
		// The ReadFrom writer produces the same format: same length, and
		// Tink's reader (Read) decrypts it.
		for _, src := range []io.Reader{bytes.NewReader(data), iotest.HalfReader(bytes.NewReader(data))} {
			fast := sealFast(t, ks, "k1", src, S)
			if len(fast) != len(ct) {
				t.Fatalf("%d bytes: ReadFrom wrote %d bytes, Tink's writer %d", n, len(fast), len(ct))
			}
			if got, err := open(ks, fast, false); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes: Tink's reader on ReadFrom output: %v", n, err)
			}
			if got, err := openWT(ks, fast); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes: WriteTo on ReadFrom output: %v", n, err)
			}
		}
	}
}

func TestRoundTripSmallWritesAndReads(t *testing.T) {
	ks := testKeys(t, "k1")
	data := randBytes(3*MinSegmentSize + 777)
	ct := seal(t, ks, "k1", data, MinSegmentSize, 4093)
	got, err := open(ks, ct, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("round trip differs")
	}
}

func TestEncryptionIsRandomized(t *testing.T) {
	ks := testKeys(t, "k1")
	data := []byte("same plaintext")
	a, b := seal(t, ks, "k1", data, 0, 0), seal(t, ks, "k1", data, 0, 0)
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions of the same plaintext are identical")
	}
}

// tamperCase builds a modified ciphertext from a good one.
type tamperCase struct {
	name   string
	mod    func(ct []byte) []byte
	keys   KeySource // nil: the writer's keys
	want   string    // substring of the error
	goodTo int       // plaintext bytes the reader may release before failing (-1: none checked)
}

func TestTamperDetected(t *testing.T) {
	ks := testKeys(t, "k1", "k2")
	const S = MinSegmentSize
	data := randBytes(5*S + S/3) // 6 segments, the last one partial
	ct := seal(t, ks, "k1", data, S, 0)
	_, hl, err := ParseHeader(ct)
	if err != nil {
		t.Fatal(err)
	}
	nseg := (len(ct) + S - 1) / S
	if nseg != 6 {
		t.Fatalf("%d segments, want 6", nseg)
	}
	first := S - hl - tinkHeaderLen - tagLen
	plainBefore := func(seg int) int { // plaintext bytes in segments before seg
		if seg == 0 {
			return 0
		}
		return first + (seg-1)*(S-tagLen)
	}
	segment := func(ct []byte, i int) []byte { return ct[i*S : min((i+1)*S, len(ct))] }
	flip := func(off int) func([]byte) []byte {
		return func(ct []byte) []byte { c := bytes.Clone(ct); c[off] ^= 0x01; return c }
	}
	cut := func(n int) func([]byte) []byte { return func(ct []byte) []byte { return bytes.Clone(ct[:n]) } }
	auth := "failed authentication"

	var cases []tamperCase
	for k := 1; k < nseg; k++ {
		cases = append(cases, tamperCase{name: "truncate at segment boundary " + strconv.Itoa(k), mod: cut(k * S), want: "segment " + strconv.Itoa(k-1) + " ", goodTo: plainBefore(k - 1)})
		cases = append(cases, tamperCase{name: "truncate mid segment " + strconv.Itoa(k), mod: cut(k*S + S/2), want: "segment " + strconv.Itoa(k) + " ", goodTo: plainBefore(k)})
	}
	cases = append(cases,
		tamperCase{name: "truncate mid segment 0", mod: cut(S / 2), want: "segment 0 ", goodTo: 0},
		tamperCase{name: "truncate last byte", mod: cut(len(ct) - 1), want: "segment 5 ", goodTo: plainBefore(5)},
		tamperCase{name: "truncate to header", mod: cut(hl), want: "ends inside the 40-byte stream header", goodTo: -1},
		tamperCase{name: "truncate in stream header", mod: cut(hl + 20), want: "stream header", goodTo: -1},
		tamperCase{name: "truncate after stream header", mod: cut(hl + tinkHeaderLen), want: "segment 0 ", goodTo: 0},
		tamperCase{name: "truncate in header", mod: cut(hl - 3), want: "wrapped key: truncated", goodTo: -1},
		tamperCase{name: "empty file", mod: cut(0), want: "not a teeml sealed file", goodTo: -1},
		tamperCase{name: "swap segments 1 and 2", mod: func(ct []byte) []byte {
			c := bytes.Clone(ct)
			copy(c[S:2*S], segment(ct, 2))
			copy(c[2*S:3*S], segment(ct, 1))
			return c
		}, want: "segment 1 ", goodTo: plainBefore(1)},
		tamperCase{name: "duplicate segment 2", mod: func(ct []byte) []byte {
			return append(append(bytes.Clone(ct[:3*S]), segment(ct, 2)...), ct[3*S:]...)
		}, want: "segment 3 ", goodTo: plainBefore(3)},
		tamperCase{name: "drop segment 3", mod: func(ct []byte) []byte {
			return append(bytes.Clone(ct[:3*S]), ct[4*S:]...)
		}, want: "segment 3 ", goodTo: plainBefore(3)},
		tamperCase{name: "append a byte", mod: func(ct []byte) []byte { return append(bytes.Clone(ct), 0) }, want: "segment 5 ", goodTo: plainBefore(5)},
		tamperCase{name: "append a copy of the last segment", mod: func(ct []byte) []byte { return append(bytes.Clone(ct), segment(ct, 5)...) }, want: auth, goodTo: plainBefore(5)},
		tamperCase{name: "flip magic", mod: flip(0), want: "not a teeml sealed file", goodTo: -1},
		tamperCase{name: "flip version", mod: flip(11), want: "version: 0 is not supported", goodTo: -1},
		tamperCase{name: "flip algorithm", mod: flip(12), want: "algorithm: 0 is not supported", goodTo: -1},
		tamperCase{name: "flip segment size", mod: flip(15), want: "segment 0 ", goodTo: 0}, // 64 KiB+256 is still legal: AAD catches it
		tamperCase{name: "segment size out of range", mod: func(ct []byte) []byte {
			c := bytes.Clone(ct)
			binary.BigEndian.PutUint32(c[13:], 1<<30)
			return c
		}, want: "segment size: 1073741824 outside", goodTo: -1},
		tamperCase{name: "flip key ID", mod: flip(fixedLen), want: `key "j1": not in`, goodTo: -1},
		tamperCase{name: "key ID k1 -> k2", mod: func(ct []byte) []byte { c := bytes.Clone(ct); c[fixedLen+1] = '2'; return c }, want: `key "k2": wrapped data key does not authenticate`, goodTo: -1},
		tamperCase{name: "key ID length", mod: func(ct []byte) []byte { c := bytes.Clone(ct); c[fixedLen-1] = 0; return c }, want: "key ID: length 0", goodTo: -1},
		tamperCase{name: "flip wrapped key", mod: flip(hl - 1), want: "wrapped data key does not authenticate", goodTo: -1},
		tamperCase{name: "wrapped key of another data key", mod: func(ct []byte) []byte {
			// A valid wrapped key for k1 (so unwrap succeeds) of a different data key.
			_, w2, err := ks.NewDataKey(context.Background(), "k1")
			if err != nil {
				t.Fatal(err)
			}
			c := bytes.Clone(ct)
			copy(c[hl-len(w2):hl], w2)
			return c
		}, want: "segment 0 ", goodTo: 0},
		tamperCase{name: "flip stream header length", mod: flip(hl), want: "stream header", goodTo: -1},
		tamperCase{name: "flip salt", mod: flip(hl + 5), want: "segment 0 ", goodTo: 0},
		tamperCase{name: "flip nonce prefix", mod: flip(hl + tinkHeaderLen - 1), want: "segment 0 ", goodTo: 0},
		tamperCase{name: "flip first body byte", mod: flip(hl + tinkHeaderLen), want: "segment 0 ", goodTo: 0},
		tamperCase{name: "flip middle of segment 2", mod: flip(2*S + S/2), want: "segment 2 ", goodTo: plainBefore(2)},
		tamperCase{name: "flip tag of segment 3", mod: flip(4*S - 1), want: "segment 3 ", goodTo: plainBefore(3)},
		tamperCase{name: "flip final tag", mod: flip(len(ct) - 1), want: "segment 5 ", goodTo: plainBefore(5)},
		tamperCase{name: "wrong key, same key ID", mod: bytes.Clone, keys: testKeys(t, "k1"), want: `key "k1": wrapped data key does not authenticate`, goodTo: -1},
		tamperCase{name: "key ID unknown to key source", mod: bytes.Clone, keys: testKeys(t, "other"), want: `key "k1": not in`, goodTo: -1},
	)

	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys := KeySource(ks)
			if c.keys != nil {
				keys = c.keys
			}
			bad := c.mod(ct)
			for _, path := range []struct {
				name string
				open func() ([]byte, error)
			}{
				{"Read (Tink)", func() ([]byte, error) { return open(keys, bad, false) }},
				{"WriteTo", func() ([]byte, error) { return openWT(keys, bad) }},
			} {
				got, err := path.open()
				if err == nil {
					t.Fatalf("%s: tampered file decrypted (%d bytes)", path.name, len(got))
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Fatalf("%s: error %q, want it to contain %q", path.name, err, c.want)
				}
				if c.goodTo >= 0 {
					// Only plaintext of segments before the bad one came out,
					// and it is the original plaintext.
					if len(got) != c.goodTo || !bytes.Equal(got, data[:len(got)]) {
						t.Fatalf("%s: reader released %d bytes before failing, want exactly the %d bytes of earlier verified segments", path.name, len(got), c.goodTo)
					}
				}
			}
			// The file API leaves nothing behind.
			src := filepath.Join(dir, "in.sealed")
			if err := os.WriteFile(src, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, "out.bin")
			if _, _, err := DecryptFile(context.Background(), src, dst, keys, nil); err == nil {
				t.Fatal("DecryptFile succeeded on a tampered file")
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Fatalf("DecryptFile left files behind: %v", ents)
			}
			os.Remove(src)
		})
	}
	// The untouched file still decrypts with the same setup.
	if got, err := open(ks, ct, false); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("control: %v", err)
	}
}

func TestIntegrityErrorType(t *testing.T) {
	ks := testKeys(t, "k1")
	ct := seal(t, ks, "k1", randBytes(100), 0, 0)
	ct[len(ct)-1] ^= 1
	_, err := open(ks, ct, false)
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Segment != 0 {
		t.Fatalf("want IntegrityError for segment 0, got %v", err)
	}
}

func TestFileRoundTripAndInspect(t *testing.T) {
	ks := testKeys(t, "dataset-1")
	dir := t.TempDir()
	src, enc, dec := filepath.Join(dir, "p.bin"), filepath.Join(dir, "p.sealed"), filepath.Join(dir, "p.out")
	data := randBytes(2*DefaultSegmentSize + 5)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, n, err := EncryptFile(context.Background(), src, enc, ks, "dataset-1", nil); err != nil || n != int64(len(data)) {
		t.Fatalf("encrypt: %d bytes, %v", n, err)
	}
	info, err := Inspect(enc)
	if err != nil {
		t.Fatal(err)
	}
	if info.PlaintextSize != int64(len(data)) || info.Segments != 3 || info.Header.KeyID != "dataset-1" || !info.StreamHeaderOK {
		t.Fatalf("inspect: %+v", info)
	}
	if _, n, err := DecryptFile(context.Background(), enc, dec, ks, nil); err != nil || n != int64(len(data)) {
		t.Fatalf("decrypt: %d, %v", n, err)
	}
	got, _ := os.ReadFile(dec)
	if !bytes.Equal(got, data) {
		t.Fatal("file round trip differs")
	}
	// An existing output file survives a failed decryption untouched.
	bad, _ := os.ReadFile(enc)
	bad[len(bad)/2] ^= 1
	os.WriteFile(enc, bad, 0o600)
	if _, _, err := DecryptFile(context.Background(), enc, dec, ks, nil); err == nil {
		t.Fatal("tampered file decrypted")
	}
	if got, _ := os.ReadFile(dec); !bytes.Equal(got, data) {
		t.Fatal("failed decryption changed the existing output file")
	}
}

func TestCancelledContextStopsReading(t *testing.T) {
	ks := testKeys(t, "k1")
	ct := seal(t, ks, "k1", randBytes(3*MinSegmentSize), MinSegmentSize, 0)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Open(ctx, bytes.NewReader(ct), ks)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "keys.json")
	if err := GenerateKeyFile(p, "ds"); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeyFile(p, "ds"); err == nil || !strings.Contains(err.Error(), "already exists") || !errors.Is(fmt.Errorf("data keygen: %w", err), fs.ErrExist) {
		t.Fatalf("overwrote a key file (or the refusal is not fs.ErrExist): %v", err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	l, err := LoadKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.Describe(), "SIMULATION") || !l.Simulated() {
		t.Fatal("local keys not labelled as simulation")
	}
	ct := seal(t, l, "ds", []byte("hello"), 0, 0)
	l2, _ := LoadKeyFile(p)
	if got, err := open(l2, ct, false); err != nil || string(got) != "hello" {
		t.Fatalf("reloaded key file: %q %v", got, err)
	}
	if err := AddKeyToFile(p, "pii"); err != nil {
		t.Fatal(err)
	}
	if err := AddKeyToFile(p, "ds"); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("replaced a key: %v", err)
	}
	l3, err := LoadKeyFile(p)
	if err != nil || strings.Join(l3.KeyIDs(), ",") != "ds,pii" {
		t.Fatalf("after add: %v %v", l3, err)
	}
	if got, err := open(l3, ct, false); err != nil || string(got) != "hello" {
		t.Fatalf("existing key changed by add: %q %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, "x.json"), []byte(`{"type":"other"}`), 0o600)
	if _, err := LoadKeyFile(filepath.Join(dir, "x.json")); err == nil || !strings.Contains(err.Error(), `type "other"`) {
		t.Fatalf("foreign JSON accepted: %v", err)
	}
}

func TestWriteToAfterReadContinues(t *testing.T) {
	ks := testKeys(t, "k1")
	data := randBytes(3*MinSegmentSize + 99)
	ct := seal(t, ks, "k1", data, MinSegmentSize, 0)
	r, err := Open(context.Background(), bytes.NewReader(ct), ks)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	if _, err := r.WriteTo(&rest); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(head, rest.Bytes()...), data) {
		t.Fatal("Read then WriteTo differs")
	}
}

// TestWriterMixesWriteAndReadFrom: Write and ReadFrom share one segment
// loop, so they can alternate (also across segment boundaries, and with a
// second ReadFrom), and Close after no write is an empty stream.
func TestWriterMixesWriteAndReadFrom(t *testing.T) {
	ks := testKeys(t, "k1")
	data := randBytes(5*MinSegmentSize + 321)
	var buf bytes.Buffer
	w, err := NewWriter(context.Background(), &buf, ks, "k1", &Options{SegmentSize: MinSegmentSize})
	if err != nil {
		t.Fatal(err)
	}
	cuts := []int{0, 7, MinSegmentSize + 3, 3 * MinSegmentSize, 3*MinSegmentSize + 1, len(data)}
	for i := 0; i+1 < len(cuts); i++ {
		part := data[cuts[i]:cuts[i+1]]
		if i%2 == 0 {
			if _, err := w.ReadFrom(bytes.NewReader(part)); err != nil {
				t.Fatal(err)
			}
		} else if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := open(ks, buf.Bytes(), false); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("mixed writes: %v", err)
	}
	if ref := sealTink(t, ks, "k1", data, MinSegmentSize); len(ref) != buf.Len() {
		t.Fatalf("mixed writes: %d bytes, Tink's writer %d", buf.Len(), len(ref))
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close accepted")
	}
	// Close without any write is an empty stream.
	buf.Reset()
	w, _ = NewWriter(context.Background(), &buf, ks, "k1", nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := open(ks, buf.Bytes(), false); err != nil || len(got) != 0 {
		t.Fatalf("%q %v", got, err)
	}
}

func TestFileAPIsLeaveNothingOnError(t *testing.T) {
	ks := testKeys(t, "k1")
	dir := t.TempDir()
	src := filepath.Join(dir, "p.bin")
	os.WriteFile(src, randBytes(3*MinSegmentSize), 0o600)
	enc := filepath.Join(dir, "p.sealed")
	if _, _, err := EncryptFile(context.Background(), src, enc, ks, "unknown", nil); err == nil || !strings.Contains(err.Error(), `key "unknown"`) {
		t.Fatalf("got %v", err)
	}
	if _, _, err := EncryptFile(context.Background(), src, enc, ks, "k1", &Options{SegmentSize: MinSegmentSize}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(dir, "p.out")
	if _, _, err := DecryptFile(ctx, enc, out, ks, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, _, err := EncryptFile(ctx, src, filepath.Join(dir, "again.sealed"), ks, "k1", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("want only p.bin and p.sealed, got %v", ents)
	}
}

// TestWriteFileMixedWrites: WriteFile's writer takes tiny and
// multi-segment writes in any order (no bufio in between any more), the
// file decrypts to exactly what was written, and an error from enc leaves
// no file.
func TestWriteFileMixedWrites(t *testing.T) {
	ks := testKeys(t, "k1")
	dir := t.TempDir()
	path := filepath.Join(dir, "out.sealed")
	var want bytes.Buffer
	err := WriteFile(context.Background(), path, 0o600, ks, "k1", func(w io.Writer) error {
		for _, n := range []int{1, 1, 7, 3*DefaultSegmentSize + 5, 2, DefaultSegmentSize - 3, DefaultSegmentSize, 1, 0, 2*DefaultSegmentSize + 1} {
			b := randBytes(n)
			want.Write(b)
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.plain")
	if _, _, err := DecryptFile(context.Background(), path, out, ks, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("round trip differs (%d bytes, want %d): %v", len(got), want.Len(), err)
	}
	failed := filepath.Join(dir, "failed.sealed")
	boom := errors.New("boom")
	if err := WriteFile(context.Background(), failed, 0o600, ks, "k1", func(w io.Writer) error {
		w.Write(randBytes(2 * DefaultSegmentSize))
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("enc error: %v", err)
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Fatalf("a failed WriteFile left %s: %v", failed, err)
	}
}
