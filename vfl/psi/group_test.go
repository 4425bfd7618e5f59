package psi

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/gtank/ristretto255"
)

// TestHashToGroupSeparation: hash-to-group is deterministic and separated
// by session and by ID.
func TestHashToGroupSeparation(t *testing.T) {
	var s1, s2 [32]byte
	s2[0] = 1
	a := hashToGroup(hashDST(s1), "alice")
	if a.Equal(hashToGroup(hashDST(s1), "alice")) != 1 {
		t.Fatal("hash-to-group not deterministic")
	}
	if a.Equal(hashToGroup(hashDST(s2), "alice")) == 1 {
		t.Fatal("different sessions map an ID to the same element")
	}
	if a.Equal(hashToGroup(hashDST(s1), "alicf")) == 1 {
		t.Fatal("different IDs map to the same element")
	}
	if len(hashDST(s1)) != 77 || !strings.HasPrefix(string(hashDST(s1)), "teeml-psi-v1:") {
		t.Fatalf("DST %q", hashDST(s1))
	}
}

// TestExpandXMDMatchesGeneric checks expandXMD (fixed 64-byte output)
// against a generic expand_message_xmd, itself checked against the SHA-512
// vectors of RFC 9380 appendix K.3.
func TestExpandXMDMatchesGeneric(t *testing.T) {
	dst := []byte("QUUX-V01-CS02-with-expander-SHA512-256")
	for _, msg := range []string{"", "abc", "abcdef0123456789", strings.Repeat("q", 200)} {
		var got [64]byte
		expandXMD(got[:], dst, msg)
		if want := expandGeneric(dst, msg, 64); !bytes.Equal(got[:], want) {
			t.Fatalf("msg %q: %x, want %x", msg, got, want)
		}
	}
	for _, v := range []struct {
		msg string
		n   int
		hex string
	}{
		{"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"},
		{"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"},
		{"abc", 0x80, "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb1347ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b488431851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1"},
	} {
		want, _ := hex.DecodeString(v.hex)
		if got := expandGeneric(dst, v.msg, v.n); !bytes.Equal(got, want) {
			t.Fatalf("RFC 9380 K.3 msg %q len %d: %x, want %x", v.msg, v.n, got, want)
		}
	}
}

// expandGeneric is RFC 9380 section 5.3.1 expand_message_xmd with SHA-512
// for any len_in_bytes up to 255*64.
func expandGeneric(dst []byte, msg string, n int) []byte {
	dstPrime := append(append([]byte(nil), dst...), byte(len(dst)))
	h := sha512.New()
	h.Write(make([]byte, 128))
	h.Write([]byte(msg))
	h.Write([]byte{byte(n >> 8), byte(n), 0})
	h.Write(dstPrime)
	b0 := h.Sum(nil)
	var out, prev []byte
	for i := 1; len(out) < n; i++ {
		h.Reset()
		if i == 1 {
			h.Write(b0)
		} else {
			x := make([]byte, len(b0))
			for j := range x {
				x[j] = b0[j] ^ prev[j]
			}
			h.Write(x)
		}
		h.Write([]byte{byte(i)})
		h.Write(dstPrime)
		prev = h.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

// TestDoubleBlindingCommutes: (H(x)^a)^b and (H(x)^b)^a give the same
// digest, and different IDs do not.
func TestDoubleBlindingCommutes(t *testing.T) {
	a, _ := newSecret(rand.Reader)
	b, _ := newSecret(rand.Reader)
	dst := []byte("teeml-psi-v1:test")
	ids := []string{"x", "y", "用户"}
	pa, pb := make([]byte, 3*pointLen), make([]byte, 3*pointLen)
	blindIDs(pa, dst, a, ids)
	blindIDs(pb, dst, b, ids)
	da, db := make([]byte, 3*DigestLen), make([]byte, 3*DigestLen)
	if err := reblind(da, b, pa); err != nil {
		t.Fatal(err)
	}
	if err := reblind(db, a, pb); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Fatal("double blinding does not commute")
	}
	if bytes.Equal(da[:DigestLen], da[DigestLen:2*DigestLen]) {
		t.Fatal("two IDs share a digest")
	}
}

func TestReblindRefusesBadPoints(t *testing.T) {
	k, _ := newSecret(rand.Reader)
	out := make([]byte, DigestLen)
	if err := reblind(out, k, make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("identity accepted: %v", err)
	}
	bad := bytes.Repeat([]byte{0xff}, 32)
	if err := reblind(out, k, bad); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Fatalf("non-canonical accepted: %v", err)
	}
	_ = ristretto255.NewElement()
}

// TestOneWayMapVectors pins the ristretto255 one-way map that hashToGroup
// ends with to RFC 9496 appendix A.3 (inputs are the SHA-512 images of the
// RFC's strings), so a library upgrade that changed the map, and with it
// every blinded value, fails here rather than silently breaking PSI
// between parties on different builds.
func TestOneWayMapVectors(t *testing.T) {
	vectors := []struct{ in, want string }{
		{"Ristretto is traditionally a short shot of espresso coffee", "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"},
		{"made with the normal amount of ground coffee but extracted with", "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b"},
		{"about half the amount of water in the same amount of time", "006ccd2a9e6867e6a2c5cea83d3302cc9de128dd2a9a57dd8ee7b9d7ffe02826"},
		{"by using a finer grind.", "f8f0c87cf237953c5890aec3998169005dae3eca1fbb04548c635953c817f92a"},
		{"This produces a concentrated shot of coffee per volume.", "ae81e7dedf20a497e10c304a765c1767a42d6e06029758d2d7e8ef7cc4c41179"},
		{"Just pulling a normal shot short will produce a weaker shot", "e2705652ff9f5e44d3e841bf1c251cf7dddb77d140870d1ab2ed64f1a9ce8628"},
		{"and is not a Ristretto as some believe.", "80bd07262511cdde4863f8a7434cef696750681cb9510eea557088f76d9e5065"},
	}
	for i, v := range vectors {
		h := sha512.Sum512([]byte(v.in))
		e, err := ristretto255.NewElement().SetUniformBytes(h[:])
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(e.Bytes()); got != v.want {
			t.Errorf("RFC 9496 A.3 #%d: %s, want %s", i, got, v.want)
		}
	}
}
