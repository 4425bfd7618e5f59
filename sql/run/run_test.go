package run

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sealed/sealedparquet"
	"github.com/teeml/teeml/sql/engine"
	"github.com/teeml/teeml/sql/tables"
)

const sentinel = "SENTINEL-7f3a9c"

func keys(t *testing.T, id string) *sealed.LocalKeys {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	ks, err := sealed.NewLocalKeys(map[string][]byte{id: k})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// people is a CSV table whose names carry the sentinel.
func people(n int) string {
	var b strings.Builder
	b.WriteString("id,name,amount\n")
	for i := range n {
		b.WriteString(strings.Join([]string{itoa(i), sentinel + "-" + itoa(i), itoa(i * 10)}, ","))
		b.WriteString("\n")
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func seal(t *testing.T, path string, ks sealed.KeySource, id, plain string) {
	t.Helper()
	err := sealed.WriteFile(context.Background(), path, 0o600, ks, id, func(w io.Writer) error {
		_, err := io.WriteString(w, plain)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func query(t *testing.T, ks sealed.KeySource, pol tables.Policy, q string, specs ...string) (*engine.Result, error) {
	t.Helper()
	req := Request{Query: q, Keys: ks, Policy: pol, Engine: engine.Options{MemoryLimit: "256MB", Threads: 1}}
	for _, s := range specs {
		sp, err := tables.ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		req.Tables = append(req.Tables, sp)
	}
	res, _, err := Query(t.Context(), req)
	return res, err
}

func csvOf(t *testing.T, r *engine.Result) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteCSV(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSealedEqualsPlain: the same query over the sealed and the plaintext
// copy of a table gives the same answer; the sealed run leaves no plaintext
// anywhere in the work directory (the sentinel is searched in every file).
func TestSealedEqualsPlain(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	ks := keys(t, "k1")
	plain := people(5000)
	sealedPath := filepath.Join(dir, "people.csv.sealed")
	seal(t, sealedPath, ks, "k1", plain)
	const q = "SELECT count(*), sum(amount), max(name) FROM people"

	got, err := query(t, ks, tables.Policy{}, q, "people="+sealedPath)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "result.sealed")
	if err := WriteSealed(t.Context(), out, ks, "k1", got); err != nil {
		t.Fatal(err)
	}
	scanNoSentinel(t, dir)

	plainDir := t.TempDir()
	plainPath := filepath.Join(plainDir, "people.csv")
	if err := os.WriteFile(plainPath, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := query(t, nil, tables.Policy{AllowPlaintext: true}, q, "people="+plainPath+":csv")
	if err != nil {
		t.Fatal(err)
	}
	if csvOf(t, got) != csvOf(t, want) {
		t.Fatalf("sealed %q != plain %q", csvOf(t, got), csvOf(t, want))
	}
	if !strings.Contains(csvOf(t, got), "5000,124975000,"+sentinel) {
		t.Fatalf("unexpected answer %q", csvOf(t, got))
	}
	// The sealed result decrypts to the printed result.
	var dec bytes.Buffer
	f, _ := os.Open(out)
	defer f.Close()
	r, err := sealed.Open(t.Context(), f, ks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(&dec, r); err != nil {
		t.Fatal(err)
	}
	if dec.String() != csvOf(t, got) {
		t.Fatalf("sealed result %q, printed %q", dec.String(), csvOf(t, got))
	}
}

func scanNoSentinel(t *testing.T, dir string) {
	t.Helper()
	found, n := findSentinel(t, dir)
	if n == 0 {
		t.Fatal("scanned no file: the scan itself is broken")
	}
	for _, p := range found {
		t.Errorf("plaintext row in %s", p)
	}
}

// findSentinel returns the files below dir holding the sentinel, and how
// many files it read.
func findSentinel(t *testing.T, dir string) (found []string, n int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if bytes.Contains(b, []byte(sentinel)) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, n
}

// TestScanFindsPlaintext: the scan can fail — it finds a plaintext copy.
func TestScanFindsPlaintext(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o700)
	os.WriteFile(filepath.Join(dir, "sub", "x.csv"), []byte(people(3)), 0o600)
	if found, _ := findSentinel(t, dir); len(found) != 1 {
		t.Fatalf("found %v, want the one plaintext file", found)
	}
}

func TestTamperRefusedNamingTable(t *testing.T) {
	dir := t.TempDir()
	ks := keys(t, "k1")
	ok := filepath.Join(dir, "ok.sealed")
	seal(t, ok, ks, "k1", "a\n1\n")
	path := filepath.Join(dir, "people.sealed")
	seal(t, path, ks, "k1", people(20000))
	b, _ := os.ReadFile(path)
	for _, off := range []int{20, len(b) / 2, len(b) - 1} { // header, body, last byte
		c := bytes.Clone(b)
		c[off] ^= 1
		bad := filepath.Join(dir, "bad.sealed")
		os.WriteFile(bad, c, 0o600)
		_, err := query(t, ks, tables.Policy{}, "SELECT count(*) FROM people", "ok="+ok, "people="+bad)
		if err == nil {
			t.Fatalf("flipped byte at %d: query ran", off)
		}
		if !strings.Contains(err.Error(), "table people ("+bad+")") {
			t.Fatalf("flipped byte at %d: error %q does not name the table", off, err)
		}
	}
}

func TestWrongKeyRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "people.sealed")
	seal(t, path, keys(t, "k1"), "k1", people(10))
	_, err := query(t, keys(t, "k1"), tables.Policy{}, "SELECT 1", "people="+path)
	if err == nil || !strings.Contains(err.Error(), "table people") {
		t.Fatalf("wrong key: err = %v", err)
	}
	_, err = query(t, keys(t, "other"), tables.Policy{}, "SELECT 1", "people="+path)
	var ke *sealed.KeyError
	if err == nil || !strings.Contains(err.Error(), "table people") || !errors.As(err, &ke) {
		t.Fatalf("unknown key ID: err = %v", err)
	}
}

func TestPlaintextRefusedByPolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.csv")
	os.WriteFile(path, []byte(people(3)), 0o600)
	for _, s := range []string{"p=" + path, "p=" + path + ":csv"} {
		if _, err := query(t, nil, tables.Policy{}, "SELECT 1", s); err == nil || !strings.Contains(err.Error(), "plaintext table refused") {
			t.Fatalf("%s: err = %v", s, err)
		}
	}
	// A sealed file named as csv is not read as text.
	sp := filepath.Join(dir, "s.sealed")
	seal(t, sp, keys(t, "k"), "k", "a\n1\n")
	if _, err := query(t, nil, tables.Policy{AllowPlaintext: true}, "SELECT 1", "s="+sp+":csv"); err == nil {
		t.Fatal("sealed file loaded as csv")
	}
}

// TestQueryCannotReadFiles: even with the tables loaded, the query cannot
// reach the sealed file's neighbours or write a result file itself.
func TestQueryCannotReadFiles(t *testing.T) {
	dir := t.TempDir()
	ks := keys(t, "k1")
	path := filepath.Join(dir, "people.sealed")
	seal(t, path, ks, "k1", people(10))
	plain := filepath.Join(dir, "plain.csv")
	os.WriteFile(plain, []byte(people(3)), 0o600)
	for _, q := range []string{
		"SELECT * FROM read_csv('" + plain + "')",
		"COPY people TO '" + filepath.Join(dir, "leak.csv") + "'",
	} {
		if _, err := query(t, ks, tables.Policy{}, q, "people="+path); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "leak.csv")); err == nil {
		t.Error("COPY wrote a file")
	}
}

// TestEncryptedParquet: the same table as encrypted Parquet answers like the
// sealed CSV; plaintext Parquet is refused by default; a flipped byte or a
// wrong key is refused naming the table; no plaintext in the work directory.
func TestEncryptedParquet(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	ks := keys(t, "k1")
	plainDir := t.TempDir()
	csvPath := filepath.Join(plainDir, "people.csv")
	if err := os.WriteFile(csvPath, []byte(people(3000)), 0o600); err != nil {
		t.Fatal(err)
	}
	pq := filepath.Join(dir, "people.parquet")
	if _, err := sealedparquet.CSVToParquet(t.Context(), csvPath, pq, ks, sealedparquet.WriteOptions{Keys: sealedparquet.Keys{Default: "k1"}}); err != nil {
		t.Fatal(err)
	}
	sealedCSV := filepath.Join(dir, "people.csv.sealed")
	seal(t, sealedCSV, ks, "k1", people(3000))
	const q = "SELECT count(*), sum(amount), max(name), typeof(max(id)) FROM people"
	got, err := query(t, ks, tables.Policy{}, q, "people="+pq)
	if err != nil {
		t.Fatal(err)
	}
	want, err := query(t, ks, tables.Policy{}, q, "people="+sealedCSV)
	if err != nil {
		t.Fatal(err)
	}
	if csvOf(t, got) != csvOf(t, want) {
		t.Fatalf("parquet %q != sealed csv %q", csvOf(t, got), csvOf(t, want))
	}
	scanNoSentinel(t, dir)

	plainPQ := filepath.Join(plainDir, "plain.parquet")
	if _, err := sealedparquet.CSVToParquet(t.Context(), csvPath, plainPQ, nil, sealedparquet.WriteOptions{Plaintext: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := query(t, nil, tables.Policy{}, q, "people="+plainPQ); err == nil || !strings.Contains(err.Error(), "plaintext Parquet refused") {
		t.Fatalf("plaintext parquet: %v", err)
	}
	if _, err := query(t, keys(t, "k1"), tables.Policy{}, q, "people="+pq); err == nil || !strings.Contains(err.Error(), "table people ("+pq+")") {
		t.Fatalf("wrong key: %v", err)
	}
	b, _ := os.ReadFile(pq)
	for _, off := range []int{len(b) / 3, len(b) - 40} {
		c := bytes.Clone(b)
		c[off] ^= 1
		bad := filepath.Join(dir, "bad.parquet")
		os.WriteFile(bad, c, 0o600)
		if _, err := query(t, ks, tables.Policy{}, q, "people="+bad+":parquet"); err == nil || !strings.Contains(err.Error(), "table people ("+bad+")") {
			t.Fatalf("flipped byte at %d: %v", off, err)
		}
	}
}
