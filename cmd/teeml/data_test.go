package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataSealedRoundTripAndTamper(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	out, e, code := run(t, bin, "data", "keygen", "--key-file", keys, "--key", "ds1")
	if code != 0 || !strings.Contains(out, "SIMULATION") {
		t.Fatalf("keygen: %d %s %s", code, out, e)
	}
	plain := make([]byte, 2<<20+7)
	rand.Read(plain)
	in := filepath.Join(dir, "p.bin")
	os.WriteFile(in, plain, 0o600)
	enc := filepath.Join(dir, "p.sealed")
	out, e, code = run(t, bin, "data", "encrypt", "--key-file", keys, "--in", in, "--out", enc)
	if code != 0 || !strings.Contains(out, "SIMULATION") || !strings.Contains(out, `key "ds1"`) {
		t.Fatalf("encrypt: %d %s %s", code, out, e)
	}
	if !strings.Contains(e, "SIMULATION") {
		t.Fatalf("simulation not logged: %s", e)
	}
	out, e, code = run(t, bin, "data", "inspect", enc)
	if code != 0 || !strings.Contains(out, "key ID:      ds1") || !strings.Contains(out, "plaintext:   2097159 bytes") || !strings.Contains(out, "segments:    3 x 1048576") {
		t.Fatalf("inspect: %d %s %s", code, out, e)
	}
	dec := filepath.Join(dir, "p.out")
	if _, e, code = run(t, bin, "data", "decrypt", "--key-file", keys, "--in", enc, "--out", dec); code != 0 {
		t.Fatalf("decrypt: %s", e)
	}
	if got, _ := os.ReadFile(dec); !bytes.Equal(got, plain) {
		t.Fatal("round trip differs")
	}

	// Tampered and truncated files: one-line error, exit 1, no output file.
	good, _ := os.ReadFile(enc)
	otherKeys := filepath.Join(dir, "other.json")
	run(t, bin, "data", "keygen", "--key-file", otherKeys, "--key", "ds1")
	flipped := bytes.Clone(good)
	flipped[1<<20+100] ^= 1
	cases := []struct {
		name string
		file []byte
		keys string
		want string
	}{
		{"bit flip", flipped, keys, "segment 1 (file offset 1048576) failed authentication"},
		{"truncated at a segment boundary", good[:2<<20], keys, "segment 1 (file offset 1048576) failed authentication"},
		{"wrong key file", good, otherKeys, `key "ds1": wrapped data key does not authenticate`},
	}
	for _, c := range cases {
		bad := filepath.Join(dir, "bad.sealed")
		os.WriteFile(bad, c.file, 0o600)
		o := filepath.Join(dir, "bad.out")
		_, e, code := run(t, bin, "data", "decrypt", "--key-file", c.keys, "--in", bad, "--out", o)
		msg := strings.TrimSpace(e[strings.LastIndex(strings.TrimRight(e, "\n"), "\n")+1:])
		if code == 0 || !strings.HasPrefix(msg, "teeml: ") || !strings.Contains(msg, c.want) {
			t.Errorf("%s: exit %d, last stderr line %q, want %q", c.name, code, msg, c.want)
		}
		if _, err := os.Stat(o); err == nil {
			t.Errorf("%s: output file left behind", c.name)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, ".bad.out*")); len(m) != 0 {
			t.Errorf("%s: temporary files left behind: %v", c.name, m)
		}
	}
	// Refusals.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"data", "encrypt", "--in", in, "--out", enc + "2"}, "no key source"},
		{[]string{"data", "encrypt", "--kms", filepath.Join(dir, "nope.yaml"), "--key", "x", "--in", in, "--out", enc + "2"}, "kms config: open"},
		{[]string{"data", "encrypt", "--kms", filepath.Join(dir, "nope.yaml"), "--key-file", keys, "--in", in, "--out", enc + "2"}, "not both"},
		{[]string{"data", "encrypt", "--key-file", keys, "--key", "nope", "--in", in, "--out", enc + "2"}, `key "nope": not in key file`},
		{[]string{"data", "inspect", in}, "neither a sealed file nor Parquet"},
		{[]string{"data", "keygen", "--key-file", keys, "--key", "x"}, "already exists"},
	} {
		_, e, code := run(t, bin, c.args...)
		if code == 0 || !strings.Contains(e, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, e, c.want)
		}
	}
	if _, err := os.Stat(enc + "2"); err == nil {
		t.Error("refused encrypt left an output file")
	}
}

func TestDataParquetAndBigDL(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	run(t, bin, "data", "keygen", "--key-file", keys, "--key", "ds")
	csvIn := filepath.Join(dir, "x.csv")
	os.WriteFile(csvIn, []byte("id,v,name\n1,0.5,a\n2,1.5,b\n"), 0o600)
	pq := filepath.Join(dir, "x.parquet")
	out, e, code := run(t, bin, "data", "encrypt", "--format", "parquet", "--key-file", keys, "--in", csvIn, "--out", pq)
	if code != 0 || !strings.Contains(out, "2 rows") {
		t.Fatalf("encrypt parquet: %s %s", out, e)
	}
	out, e, code = run(t, bin, "data", "inspect", "--format", "parquet", pq)
	if code != 0 || !strings.Contains(out, "encrypted:   true") || !strings.Contains(out, "footer key:  ds") {
		t.Fatalf("inspect parquet: %s %s", out, e)
	}
	out, e, code = run(t, bin, "data", "inspect", "--format", "parquet", "--key-file", keys, pq)
	if code != 0 || !strings.Contains(out, "column:      name (encrypted, key ds)") || !strings.Contains(out, "rows:        2") {
		t.Fatalf("inspect parquet with keys: %s %s", out, e)
	}
	// Issue 23 defect 6: encrypted Parquet (PARE) is recognised without
	// --format, and a flipped leading magic byte is refused.
	out, e, code = run(t, bin, "data", "inspect", pq)
	if code != 0 || !strings.Contains(out, "format:      parquet") || !strings.Contains(out, "encrypted:   true") {
		t.Fatalf("inspect of encrypted parquet without --format: exit %d %s %s", code, out, e)
	}
	raw, _ := os.ReadFile(pq)
	raw[0] ^= 0x01
	flipped := filepath.Join(dir, "flipped.parquet")
	os.WriteFile(flipped, raw, 0o600)
	flippedOut := filepath.Join(dir, "flipped.csv")
	_, e, code = run(t, bin, "data", "decrypt", "--format", "parquet", "--key-file", keys, "--in", flipped, "--out", flippedOut)
	if code != 1 || !strings.Contains(e, `leading magic "QARE" does not match the footer magic "PARE" (file modified)`) {
		t.Fatalf("decrypt of parquet with a flipped leading magic: exit %d %s", code, e)
	}
	if _, err := os.Stat(flippedOut); err == nil {
		t.Fatal("refused decrypt left an output file")
	}
	if _, e, code = run(t, bin, "data", "inspect", "--format", "parquet", "--key-file", keys, flipped); code != 1 || !strings.Contains(e, "leading magic") {
		t.Fatalf("inspect of parquet with a flipped leading magic: exit %d %s", code, e)
	}
	back := filepath.Join(dir, "back.csv")
	if _, e, code = run(t, bin, "data", "decrypt", "--format", "parquet", "--key-file", keys, "--in", pq, "--out", back); code != 0 {
		t.Fatalf("decrypt parquet: %s", e)
	}
	if got, _ := os.ReadFile(back); string(got) != "id,v,name\n1,0.5,a\n2,1.5,b\n" {
		t.Fatalf("parquet round trip: %q", got)
	}

	// A column under its own key: readable with it, refused (naming the
	// column) with a key file that lacks it.
	if _, e, code := run(t, bin, "data", "keygen", "--add", "--key-file", keys, "--key", "pii"); code != 0 {
		t.Fatalf("keygen --add: %s", e)
	}
	pq2 := filepath.Join(dir, "x2.parquet")
	if out, e, code := run(t, bin, "data", "encrypt", "--format", "parquet", "--key-file", keys, "--key", "ds", "--column-key", "name=pii", "--in", csvIn, "--out", pq2); code != 0 || !strings.Contains(out, `column "name" under key "pii"`) {
		t.Fatalf("encrypt with --column-key: %s %s", out, e)
	}
	dsOnly := filepath.Join(dir, "ds-only.json")
	run(t, bin, "data", "keygen", "--key-file", dsOnly, "--key", "ds")
	if _, e, code := run(t, bin, "data", "decrypt", "--format", "parquet", "--key-file", dsOnly, "--in", pq2, "--out", filepath.Join(dir, "x2.csv")); code == 0 || !strings.Contains(e, `footer: key "ds": wrapped data key does not authenticate`) {
		t.Fatalf("other key file: %d %s", code, e)
	}
	if out, e, code := run(t, bin, "data", "inspect", "--format", "parquet", "--key-file", keys, pq2); code != 0 || !strings.Contains(out, "column:      name (encrypted, key pii)") || !strings.Contains(out, "column:      id (encrypted, key ds)") {
		t.Fatalf("inspect: %s %s", out, e)
	}

	// BigDL PPML migration with the committed vectors.
	td := filepath.Join("..", "..", "sealed", "bigdl", "testdata")
	o := filepath.Join(dir, "people.csv")
	out, e, code = run(t, bin, "data", "decrypt", "--format", "bigdl-cbc", "--key", filepath.Join(td, "datakey.txt"), "--in", filepath.Join(td, "people.csv.cbc"), "--out", o)
	if code != 0 || !strings.Contains(out, "HMAC-SHA256 tag verified") {
		t.Fatalf("bigdl decrypt: %s %s", out, e)
	}
	want, _ := os.ReadFile(filepath.Join(td, "people.csv"))
	if got, _ := os.ReadFile(o); !bytes.Equal(got, want) {
		t.Fatal("bigdl plaintext differs")
	}
	cbc, _ := os.ReadFile(filepath.Join(td, "people.csv.cbc"))
	cbc[1000] ^= 1
	bad := filepath.Join(dir, "bad.cbc")
	os.WriteFile(bad, cbc, 0o600)
	_, e, code = run(t, bin, "data", "decrypt", "--format", "bigdl-cbc", "--key", filepath.Join(td, "datakey.txt"), "--in", bad, "--out", filepath.Join(dir, "bad.csv"))
	if code == 0 || !strings.Contains(e, "HMAC-SHA256 tag does not match") {
		t.Fatalf("tampered bigdl file: %d %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.csv")); err == nil {
		t.Fatal("tampered bigdl file left output")
	}
	out, e, code = run(t, bin, "data", "inspect", "--format", "bigdl-cbc", filepath.Join(td, "one.bin.cbc"))
	if code != 0 || !strings.Contains(out, "IV:") || !strings.Contains(out, "header and IV not authenticated") {
		t.Fatalf("bigdl inspect: %s %s", out, e)
	}
}
