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

// TestSQLKMS: a sealed table's key comes from a running simulated broker:
// the member the release policy admits runs the query; another member is
// refused before the query, naming the table, and both are in the audit.
func TestSQLKMS(t *testing.T) {
	bin := buildTeeml(t)
	dir, admin, col1, col2 := simBrokerWithKey(t, bin, "sales")
	in, enc := filepath.Join(dir, "sales.csv"), filepath.Join(dir, "sales.csv.sealed")
	if err := os.WriteFile(in, []byte("region,amount\nnorth,10\nsouth,5\nnorth,7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run(t, bin, "data", "encrypt", "--kms", col1, "--key", "sales", "--in", in, "--out", enc); code != 0 {
		t.Fatalf("encrypt: exit %d %s %s", code, out, errOut)
	}
	q := "SELECT sum(amount) AS total FROM sales"
	out, errOut, code := run(t, bin, "sql", "run", "--kms", col1, "--table", "sales="+enc, "--query", q)
	if code != 0 || out != "total\n22\n" {
		t.Fatalf("sql run by col-1: exit %d %q %s", code, out, errOut)
	}
	out, errOut, code = run(t, bin, "sql", "run", "--kms", col2, "--table", "sales="+enc, "--query", q)
	if code != 1 || out != "" || !strings.Contains(errOut, "table sales ("+enc+")") || !strings.Contains(errOut, `member "col-2" (role collaborator) is not allowed`) {
		t.Fatalf("sql run by col-2: exit %d %q %s", code, out, errOut)
	}
	out, errOut, code = run(t, bin, "kms", "audit", "show", "--config", admin)
	if code != 0 || !strings.Contains(out, "refused unwrap col-2 key=sales") || !strings.Contains(out, "granted unwrap col-1 key=sales") {
		t.Fatalf("audit show: exit %d\n%s%s", code, out, errOut)
	}
}
