package bigdl

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The vectors in testdata were produced by testdata/gen_vectors.py with
// Python's cryptography package, independently of this Go code.
var vectors = []string{"people.csv", "one.bin", "block.bin"}

func dataKey(t testing.TB) []byte {
	k, err := LoadDataKey("testdata/datakey.txt")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDecryptPythonVectors(t *testing.T) {
	k := dataKey(t)
	for _, name := range vectors {
		want, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), name)
		h, n, err := DecryptFile(context.Background(), filepath.Join("testdata", name+".cbc"), dst, k)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := os.ReadFile(dst)
		if !bytes.Equal(got, want) || n != int64(len(want)) {
			t.Fatalf("%s: plaintext differs (%d bytes, want %d)", name, n, len(want))
		}
		if len(h.IV) != 16 || !strings.HasSuffix(h.EncryptedDataKey, "=") {
			t.Fatalf("%s: header %+v", name, h)
		}
	}
}

// encrypt is a second, Go, writer of the layout for tamper tests on larger
// inputs (the committed vectors cover interoperability).
func encrypt(t testing.TB, key, iv, pt []byte) []byte {
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	padded := append(bytes.Clone(pt), bytes.Repeat([]byte{byte(pad)}, pad)...)
	b, _ := aes.NewCipher(key[16:32])
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, padded)
	m := hmac.New(sha256.New, key[:16])
	m.Write(ct)
	h := make([]byte, HeaderLen)
	edk := []byte("wrapped-by-kms")
	binary.BigEndian.PutUint32(h[0:], uint32(len(edk)))
	binary.BigEndian.PutUint32(h[4:], IVLen)
	copy(h[8:], edk)
	copy(h[8+len(edk):], iv)
	for i := 8 + len(edk) + IVLen; i < HeaderLen; i++ {
		h[i] = padByte
	}
	return append(append(h, ct...), m.Sum(nil)...)
}

func TestTamperDetectedAndNothingWritten(t *testing.T) {
	k := dataKey(t)
	good, err := os.ReadFile("testdata/people.csv.cbc")
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := bytes.Clone(k)
	wrongKey[0] ^= 1 // HMAC half
	wrongAES := bytes.Clone(k)
	wrongAES[20] ^= 1 // AES half: the tag still verifies, only padding can notice
	flip := func(off int) []byte { c := bytes.Clone(good); c[off] ^= 1; return c }
	cases := []struct {
		name string
		file []byte
		key  []byte
		want string
	}{
		{"flip first ciphertext byte", flip(HeaderLen), k, "tag does not match"},
		{"flip middle ciphertext byte", flip(len(good) / 2), k, "tag does not match"},
		{"flip last ciphertext byte", flip(len(good) - TagLen - 1), k, "tag does not match"},
		{"flip tag", flip(len(good) - 1), k, "tag does not match"},
		{"truncate one block", append(bytes.Clone(good[:len(good)-TagLen-16]), good[len(good)-TagLen:]...), k, "tag does not match"},
		{"truncate tag", good[:len(good)-1], k, "truncated or not a BigDL"},
		{"truncate to header", good[:HeaderLen], k, "truncated"},
		{"short file", good[:100], k, "shorter than the 400-byte header"},
		{"wrong HMAC key", good, wrongKey, "tag does not match"},
		{"header padding", flip(HeaderLen - 1), k, "want padding 0x80"},
		{"IV length", flip(7), k, "IV length"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		src := filepath.Join(dir, "in.cbc")
		os.WriteFile(src, c.file, 0o600)
		dst := filepath.Join(dir, "out.csv")
		_, _, err := DecryptFile(context.Background(), src, dst, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("%s: files left behind: %v", c.name, ents)
		}
		os.Remove(src)
	}
	// The AES half of the key is not covered by the tag; a wrong AES key is
	// caught by the padding check at best, and nothing is written either way.
	src := filepath.Join(dir, "in.cbc")
	os.WriteFile(src, good, 0o600)
	if _, _, err := DecryptFile(context.Background(), src, filepath.Join(dir, "out.csv"), wrongAES); err == nil {
		t.Log("wrong AES key gave valid padding by chance (1 in ~256)")
	} else if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("wrong AES key: files left behind: %v", ents)
	}
}

func TestLargeMultiChunk(t *testing.T) {
	key := make([]byte, 44)
	rand.Read(key)
	iv := make([]byte, 16)
	rand.Read(iv)
	pt := make([]byte, 3<<20+5)
	rand.Read(pt)
	ct := encrypt(t, key, iv, pt)
	var out bytes.Buffer
	if _, n, err := Decrypt(context.Background(), bytes.NewReader(ct), int64(len(ct)), key, &out); err != nil || n != int64(len(pt)) {
		t.Fatalf("%d %v", n, err)
	}
	if !bytes.Equal(out.Bytes(), pt) {
		t.Fatal("differs")
	}
	ct[len(ct)/2] ^= 1
	if _, _, err := Decrypt(context.Background(), bytes.NewReader(ct), int64(len(ct)), key, &out); err != ErrTagMismatch {
		t.Fatalf("got %v", err)
	}
}

func TestShortKeyRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	os.WriteFile(p, []byte("too short\n"), 0o600)
	if _, err := LoadDataKey(p); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseHeader(f *testing.F) {
	good, err := os.ReadFile("testdata/one.bin.cbc")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good[:HeaderLen])
	f.Add(make([]byte, HeaderLen))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if len(h.IV) != IVLen || len(h.EncryptedDataKey) > HeaderLen-8-IVLen {
			t.Fatalf("accepted bad header %+v", h)
		}
	})
}
