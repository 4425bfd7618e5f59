package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSQLRunSealed(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	if _, e, code := run(t, bin, "data", "keygen", "--key-file", keys, "--key", "sales"); code != 0 {
		t.Fatalf("keygen: %s", e)
	}
	in := filepath.Join(dir, "sales.csv")
	os.WriteFile(in, []byte("region,amount\nnorth,10\nsouth,5\nnorth,7\n"), 0o600)
	enc := filepath.Join(dir, "sales.csv.sealed")
	if _, e, code := run(t, bin, "data", "encrypt", "--key-file", keys, "--in", in, "--out", enc); code != 0 {
		t.Fatalf("encrypt: %s", e)
	}
	q := "SELECT region, count(*) AS n, sum(amount) AS total FROM sales GROUP BY region ORDER BY region"
	out, e, code := run(t, bin, "sql", "run", "--key-file", keys, "--table", "sales="+enc, "--query", q)
	if code != 0 || out != "region,n,total\nnorth,2,17\nsouth,1,5\n" || !strings.Contains(e, "SIMULATION") {
		t.Fatalf("sql run: %d %q %s", code, out, e)
	}
	// Plaintext is refused unless allowed.
	if _, e, code := run(t, bin, "sql", "run", "--table", "sales="+in, "--query", q); code == 0 || !strings.Contains(e, "plaintext table refused") {
		t.Fatalf("plaintext accepted: %d %s", code, e)
	}
	// Sealed output decrypts to the printed result.
	res := filepath.Join(dir, "res.sealed")
	if out, e, code := run(t, bin, "sql", "run", "--key-file", keys, "--table", "sales="+enc, "--query", q, "--out", res); code != 0 {
		t.Fatalf("--out: %s %s", out, e)
	}
	dec := filepath.Join(dir, "res.csv")
	if _, e, code := run(t, bin, "data", "decrypt", "--key-file", keys, "--in", res, "--out", dec); code != 0 {
		t.Fatalf("decrypt: %s", e)
	}
	if b, _ := os.ReadFile(dec); string(b) != "region,n,total\nnorth,2,17\nsouth,1,5\n" {
		t.Fatalf("sealed result %q", b)
	}
	// A flipped byte: refused, naming the table, one line.
	b, _ := os.ReadFile(enc)
	b[len(b)-3] ^= 1
	os.WriteFile(enc, b, 0o600)
	_, e, code = run(t, bin, "sql", "run", "--key-file", keys, "--table", "sales="+enc, "--query", q)
	if code == 0 || !strings.Contains(e, "table sales ("+enc+")") {
		t.Fatalf("tampered table: %d %s", code, e)
	}
}
