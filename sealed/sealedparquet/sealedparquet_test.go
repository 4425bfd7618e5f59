package sealedparquet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/teeml/teeml/sealed"
)

func keysFor(t testing.TB, ids map[string][]byte) *sealed.LocalKeys {
	t.Helper()
	l, err := sealed.NewLocalKeys(ids)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rnd() []byte { b := make([]byte, 32); rand.Read(b); return b }

const sampleCSV = "id,age,income,city,score\n" +
	"1,34,52000.5,Zurich,0.25\n" +
	"2,,61000,Basel,\n" +
	"3,51,-3.75,\"Gen\"\"eva, CH\",1e-3\n" +
	"4,29,70000,,2\n"

func writeCSV(t testing.TB, dir, body string) string {
	p := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCSVRoundTripEncrypted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ks := keysFor(t, map[string][]byte{"ds": rnd(), "pii": rnd()})
	src := writeCSV(t, dir, sampleCSV)
	pq := filepath.Join(dir, "x.parquet")
	n, err := CSVToParquet(ctx, src, pq, ks, WriteOptions{Keys: Keys{Default: "ds", Columns: map[string]string{"city": "pii"}}})
	if err != nil || n != 4 {
		t.Fatalf("%d rows, %v", n, err)
	}
	raw, _ := os.ReadFile(pq)
	if !bytes.HasSuffix(raw, []byte("PARE")) {
		t.Fatal("footer is not encrypted (no PARE magic)")
	}
	for _, s := range []string{"Zurich", "Basel", "city", "income"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("%q appears in the clear in the encrypted file", s)
		}
	}
	out := filepath.Join(dir, "out.csv")
	rows, enc, err := ParquetToCSV(ctx, pq, out, ks)
	if err != nil || rows != 4 || !enc {
		t.Fatalf("%d rows, encrypted %v, %v", rows, enc, err)
	}
	got, _ := os.ReadFile(out)
	want := "id,age,income,city,score\n1,34,52000.5,Zurich,0.25\n2,,61000,Basel,\n3,51,-3.75,\"Gen\"\"eva, CH\",0.001\n4,29,70000,,2\n"
	if string(got) != want {
		t.Fatalf("CSV round trip:\n%s\nwant\n%s", got, want)
	}

	// The table API returns typed columns.
	rd, err := Open(ctx, pq, ks)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	tbl, err := rd.ReadTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if tbl.NumRows() != 4 || tbl.NumCols() != 5 {
		t.Fatalf("table %dx%d", tbl.NumRows(), tbl.NumCols())
	}
	wantTypes := []string{"int64", "int64", "float64", "utf8", "float64"}
	for i, w := range wantTypes {
		if got := tbl.Schema().Field(i).Type.String(); got != w {
			t.Errorf("column %d type %s, want %s", i, got, w)
		}
	}
	inc := tbl.Column(2).Data().Chunk(0).(*array.Float64)
	if inc.Value(2) != -3.75 {
		t.Errorf("income[2] = %v", inc.Value(2))
	}

	// Inspect without keys shows only the footer key; with keys, the columns.
	info, err := Inspect(ctx, pq, nil)
	if err != nil || !info.Encrypted || info.FooterKeyID != "ds" || info.FooterDecoded || !strings.Contains(info.Algorithm, "AES_GCM_V1") {
		t.Fatalf("inspect without keys: %+v %v", info, err)
	}
	info, err = Inspect(ctx, pq, ks)
	if err != nil || !info.FooterDecoded || info.Rows != 4 || len(info.Columns) != 5 {
		t.Fatalf("inspect with keys: %+v %v", info, err)
	}
	for _, c := range info.Columns {
		want := "ds"
		if c.Column == "city" {
			want = "pii"
		}
		if !c.Encrypted || c.KeyID != want {
			t.Errorf("column %s: encrypted %v key %q, want %q", c.Column, c.Encrypted, c.KeyID, want)
		}
	}
}

func TestWrongColumnKeyNamesTheColumn(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ds := rnd()
	ks := keysFor(t, map[string][]byte{"ds": ds, "pii": rnd()})
	src := writeCSV(t, dir, sampleCSV)
	pq := filepath.Join(dir, "x.parquet")
	if _, err := CSVToParquet(ctx, src, pq, ks, WriteOptions{Keys: Keys{Default: "ds", Columns: map[string]string{"city": "pii"}}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		ks   sealed.KeySource
		want string
	}{
		{"wrong pii key", keysFor(t, map[string][]byte{"ds": ds, "pii": rnd()}), `column "city": key "pii": wrapped data key does not authenticate`},
		{"no pii key", keysFor(t, map[string][]byte{"ds": ds}), `column "city": key "pii": not in`},
		{"wrong footer key", keysFor(t, map[string][]byte{"ds": rnd(), "pii": rnd()}), `footer: key "ds": wrapped data key does not authenticate`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.csv")
			_, _, err := ParquetToCSV(ctx, pq, out, c.ks)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("output written despite the error")
			}
			rd, err := Open(ctx, pq, c.ks)
			if err == nil {
				_, err = rd.ReadTable(ctx)
				rd.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadTable error %v, want %q", err, c.want)
			}
		})
	}
	// Inspect without the pii key names the column's key and the refusal.
	info, err := Inspect(ctx, pq, keysFor(t, map[string][]byte{"ds": ds}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range info.Columns {
		if c.Column == "city" && (c.KeyID != "pii" || !strings.Contains(c.KeyError, "not in")) {
			t.Errorf("city: %+v", c)
		}
		if c.Column != "city" && (c.KeyID != "ds" || c.KeyError != "") {
			t.Errorf("%s: %+v", c.Column, c)
		}
	}
	// Other columns stay readable without the pii key, one column at a time.
	rd, err := Open(ctx, pq, keysFor(t, map[string][]byte{"ds": ds}))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	tbl, err := rd.readColumn(ctx, 0, "id")
	if err != nil {
		t.Fatalf("column id without the pii key: %v", err)
	}
	tbl.Release()
}

func TestTamperedFileFails(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ks := keysFor(t, map[string][]byte{"ds": rnd()})
	var b strings.Builder
	b.WriteString("a,b,c\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "%d,%d.5,s%d\n", i, i*3, i%17)
	}
	src := writeCSV(t, dir, b.String())
	pq := filepath.Join(dir, "x.parquet")
	if _, err := CSVToParquet(ctx, src, pq, ks, WriteOptions{Keys: Keys{Default: "ds"}}); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(pq)
	flen := int(uint32(good[len(good)-8]) | uint32(good[len(good)-7])<<8 | uint32(good[len(good)-6])<<16 | uint32(good[len(good)-5])<<24)
	cases := map[string]int{
		"footer ciphertext": len(good) - 8 - 20, // inside the encrypted FileMetaData (near its tag)
		"footer middle":     len(good) - 8 - flen/3,
		"column data":       40, // inside the first column chunk's pages
	}
	for name, off := range cases {
		t.Run(name, func(t *testing.T) {
			bad := bytes.Clone(good)
			bad[off] ^= 0x01
			p := filepath.Join(dir, "bad.parquet")
			os.WriteFile(p, bad, 0o600)
			out := filepath.Join(dir, "bad.csv")
			_, _, err := ParquetToCSV(ctx, p, out, ks)
			if err == nil {
				t.Fatal("tampered Parquet decrypted")
			}
			t.Log(err)
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			if !strings.Contains(err.Error(), "failed authentication (file modified, or wrong ") || !errors.Is(fmt.Errorf("import: %w", err), ErrAuthentication) {
				t.Fatalf("%v: want ErrAuthentication", err)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("output written despite the error")
			}
		})
	}
	// Truncation.
	p := filepath.Join(dir, "short.parquet")
	os.WriteFile(p, good[:len(good)-100], 0o600)
	if _, _, err := ParquetToCSV(ctx, p, filepath.Join(dir, "s.csv"), ks); err == nil {
		t.Fatal("truncated Parquet read")
	}
}

func TestPlaintextParquetReadable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := writeCSV(t, dir, sampleCSV)
	pq := filepath.Join(dir, "plain.parquet")
	if _, err := CSVToParquet(ctx, src, pq, nil, WriteOptions{Plaintext: true}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(pq)
	if !bytes.HasSuffix(raw, []byte("PAR1")) || !bytes.Contains(raw, []byte("Zurich")) {
		t.Fatal("plaintext file is not plain Parquet")
	}
	out := filepath.Join(dir, "out.csv")
	rows, enc, err := ParquetToCSV(ctx, pq, out, nil)
	if err != nil || rows != 4 || enc {
		t.Fatalf("%d rows, encrypted %v, %v", rows, enc, err)
	}
	info, err := Inspect(ctx, pq, nil)
	if err != nil || info.Encrypted || !info.FooterDecoded || info.Columns[0].Encrypted {
		t.Fatalf("inspect: %+v %v", info, err)
	}
}

func TestEncryptedNeedsKeySource(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ks := keysFor(t, map[string][]byte{"ds": rnd()})
	pq := filepath.Join(dir, "x.parquet")
	if _, err := CSVToParquet(ctx, writeCSV(t, dir, sampleCSV), pq, ks, WriteOptions{Keys: Keys{Default: "ds"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, pq, nil); err == nil || !strings.Contains(err.Error(), "key source is needed") {
		t.Fatalf("got %v", err)
	}
	if _, err := CSVToParquet(ctx, writeCSV(t, dir, sampleCSV), pq, ks, WriteOptions{Keys: Keys{Default: "ds", Columns: map[string]string{"nope": "ds"}}}); err == nil || !strings.Contains(err.Error(), `column "nope"`) {
		t.Fatalf("unknown column accepted: %v", err)
	}
}

// TestLeadingMagicIsChecked reproduces issue 23 defect 6: flipping the
// leading magic byte of an encrypted Parquet file still decrypted (no
// Parquet module authenticates it, and arrow-go reads only the trailing
// magic). Both magics are now checked strictly, for encrypted (PARE) and
// plaintext (PAR1) files, by every reader entry point.
func TestLeadingMagicIsChecked(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ks := keysFor(t, map[string][]byte{"ds": rnd()})
	src := writeCSV(t, dir, sampleCSV)
	for _, c := range []struct {
		name  string
		ks    *sealed.LocalKeys
		opts  WriteOptions
		magic string
	}{
		{"encrypted", ks, WriteOptions{Keys: Keys{Default: "ds"}}, "PARE"},
		{"plaintext", nil, WriteOptions{Plaintext: true}, "PAR1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pq := filepath.Join(dir, c.name+".parquet")
			if _, err := CSVToParquet(ctx, src, pq, c.ks, c.opts); err != nil {
				t.Fatal(err)
			}
			good, _ := os.ReadFile(pq)
			if string(good[:4]) != c.magic || string(good[len(good)-4:]) != c.magic || !Magic(good) {
				t.Fatalf("file magics %q…%q, want %s", good[:4], good[len(good)-4:], c.magic)
			}
			var keys sealed.KeySource
			if c.ks != nil {
				keys = c.ks
			}
			if _, _, err := ParquetToCSV(ctx, pq, filepath.Join(dir, c.name+".csv"), keys); err != nil {
				t.Fatalf("intact file: %v", err)
			}
			for _, off := range []int{0, 3} {
				bad := bytes.Clone(good)
				bad[off] ^= 0x01
				p := filepath.Join(dir, "bad-"+c.name+".parquet")
				os.WriteFile(p, bad, 0o600)
				out := filepath.Join(dir, "bad.csv")
				_, _, err := ParquetToCSV(ctx, p, out, keys)
				if err == nil || !strings.Contains(err.Error(), "leading magic") || !strings.Contains(err.Error(), "does not match the footer magic \""+c.magic+"\" (file modified)") {
					t.Fatalf("byte %d flipped: %v", off, err)
				}
				if _, err := os.Stat(out); err == nil {
					t.Fatal("output written despite the error")
				}
				if _, err := Inspect(ctx, p, keys); err == nil || !strings.Contains(err.Error(), "leading magic") {
					t.Fatalf("inspect with byte %d flipped: %v", off, err)
				}
				if _, err := Inspect(ctx, p, nil); err == nil || !strings.Contains(err.Error(), "leading magic") {
					t.Fatalf("inspect without keys, byte %d flipped: %v", off, err)
				}
			}
		})
	}
}
