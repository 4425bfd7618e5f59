package engine

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sliceRows struct {
	rows [][]string
	err  error // returned after the rows instead of io.EOF
}

func (s *sliceRows) Next() ([]string, error) {
	if len(s.rows) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	r := s.rows[0]
	s.rows = s.rows[1:]
	return r, nil
}

func open(t *testing.T) *Engine {
	t.Helper()
	e, err := Open(t.Context(), Options{MemoryLimit: "512MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestLoadInferQuery(t *testing.T) {
	e := open(t)
	n, err := e.Load(t.Context(), "t", []Column{{Name: "id"}, {Name: "x"}, {Name: "d"}, {Name: "s"}, {Name: "m", Type: "DECIMAL(15,2)"}},
		&sliceRows{rows: [][]string{{"1", "1.5", "2024-01-02", "a", "10.25"}, {"2", "", "2024-02-03", "b", "0.10"}}})
	if err != nil || n != 2 {
		t.Fatalf("Load = %d, %v", n, err)
	}
	r, err := e.Query(t.Context(), "SELECT typeof(id), typeof(x), typeof(d), typeof(s), sum(m), max(d), count(x), sum(m) - 10.35, min(m) FROM t GROUP BY ALL")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, v := range r.Rows[0] {
		got = append(got, v.Text)
	}
	want := "BIGINT,DOUBLE,DATE,VARCHAR,10.35,2024-02-03,1,0.00,0.10"
	if strings.Join(got, ",") != want {
		t.Fatalf("got %s, want %s", strings.Join(got, ","), want)
	}
}

func TestLoadErrorLeavesNoTable(t *testing.T) {
	e := open(t)
	_, err := e.Load(t.Context(), "t", []Column{{Name: "a"}}, &sliceRows{rows: [][]string{{"1"}}, err: io.ErrUnexpectedEOF})
	if err == nil || !strings.Contains(err.Error(), "table t") {
		t.Fatalf("err = %v, want one naming table t", err)
	}
	if _, err := e.Query(t.Context(), "SELECT * FROM t"); err == nil {
		t.Fatal("table t exists after a failed load")
	}
	if _, err := e.Query(t.Context(), "SELECT * FROM __stage_t"); err == nil {
		t.Fatal("staging table left after a failed load")
	}
}

func TestLoadRefusesBadNames(t *testing.T) {
	e := open(t)
	for _, c := range []struct{ table, col, typ string }{
		{`t"; DROP`, "a", ""}, {"t", "1a", ""}, {"t", "a", "VARCHAR); DROP TABLE x; --"},
	} {
		if _, err := e.Load(t.Context(), c.table, []Column{{Name: c.col, Type: c.typ}}, &sliceRows{}); err == nil {
			t.Errorf("Load(%q, %q, %q) accepted", c.table, c.col, c.typ)
		}
	}
}

// TestLockdown: the engine cannot write or read files, cannot spill, and SQL
// cannot undo any of it.
func TestLockdown(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	secret := filepath.Join(dir, "secret.csv")
	if err := os.WriteFile(secret, []byte("a\n1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := open(t)
	ctx := context.Background()
	for name, want := range map[string]string{
		"enable_external_access": "false", "temp_directory": "", "max_temp_directory_size": "0 bytes",
		"lock_configuration": "true", "autoload_known_extensions": "false",
	} {
		got, err := e.Setting(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	out := filepath.Join(dir, "out.csv")
	for _, q := range []string{
		"COPY (SELECT 42) TO '" + out + "'",
		"SELECT * FROM read_csv('" + secret + "')",
		"SELECT * FROM '" + secret + "'",
		"ATTACH '" + filepath.Join(dir, "x.db") + "' AS x",
		"SET enable_external_access = true",
		"SET temp_directory = '" + dir + "'",
		"SET lock_configuration = false",
		"INSTALL httpfs",
		"EXPORT DATABASE '" + dir + "'",
		"IMPORT DATABASE '" + dir + "'",
		"COPY t FROM '" + secret + "'",
		"SELECT * FROM read_text('" + secret + "')",
		"SELECT * FROM read_blob('" + secret + "')",
		"SELECT * FROM glob('" + dir + "/*')",
		"SELECT * FROM sniff_csv('" + secret + "')",
		"SELECT getenv('HOME')",
		"LOAD '" + filepath.Join(dir, "x.duckdb_extension") + "'",
		"SET profiling_output = '" + filepath.Join(dir, "profile.json") + "'",
		"SET memory_limit = '100GB'",
		"RESET enable_external_access",
	} {
		// DuckDB itself refuses each (the statement filter of Query is
		// bypassed here), and Query refuses it too.
		if _, err := e.conn.ExecContext(ctx, q); err == nil {
			t.Errorf("%s: DuckDB accepted it", q)
		}
		if _, err := e.Query(ctx, q); err == nil {
			t.Errorf("%s: Query accepted it", q)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		if en.Name() != "secret.csv" {
			t.Errorf("engine left %s in the working directory", en.Name())
		}
	}
}

// TestQueryOnlySelect: Query runs one SELECT and nothing else — not a
// PRAGMA the lockdown lets through (profiling prints plans to stdout), not a
// table change, not several statements (the first would run unchecked).
func TestQueryOnlySelect(t *testing.T) {
	e := open(t)
	ctx := t.Context()
	if _, err := e.Load(ctx, "t", []Column{{Name: "a"}}, &sliceRows{rows: [][]string{{"1"}, {"2"}}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT sum(a) FROM t", "WITH x AS (SELECT a FROM t) SELECT sum(a) FROM x", "FROM t SELECT sum(a)"} {
		r, err := e.Query(ctx, q)
		if err != nil || r.Rows[0][0].Text != "3" {
			t.Errorf("%s: %v, %v", q, r, err)
		}
	}
	for q, want := range map[string]string{
		"PRAGMA enable_profiling":             "PRAGMA",
		"DELETE FROM t":                       "DELETE",
		"INSERT INTO t VALUES (9)":            "INSERT",
		"CREATE TABLE u AS SELECT * FROM t":   "CREATE",
		"DROP TABLE t":                        "DROP",
		"EXPLAIN SELECT * FROM t":             "EXPLAIN",
		"CALL pragma_version()":               "CALL",
		"SET VARIABLE x = 1":                  "SET",
		"DELETE FROM t; SELECT sum(a) FROM t": "",
		"SELECT 1; SELECT sum(a) FROM t":      "",
	} {
		_, err := e.Query(ctx, q)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want a refusal naming %q", q, err, want)
		}
	}
	if r, err := e.Query(ctx, "SELECT count(*) FROM t"); err != nil || r.Rows[0][0].Text != "2" {
		t.Fatalf("table changed by a refused statement: %v, %v", r, err)
	}
}

func TestQueryErrorsOneLine(t *testing.T) {
	e := open(t)
	if _, err := e.Load(t.Context(), "t", []Column{{Name: "a"}}, &sliceRows{rows: [][]string{{"1"}}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT nosuch FROM t", "SELEC 1", "SELECT * FROM nosuch"} {
		_, err := e.Query(t.Context(), q)
		if err == nil || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%s: %q", q, err)
		}
	}
	// A value that does not cast to the declared type: one line, naming the table.
	_, err := e.Load(t.Context(), "u", []Column{{Name: "d", Type: "DATE"}}, &sliceRows{rows: [][]string{{"not a date"}}})
	if err == nil || !strings.HasPrefix(err.Error(), "table u: ") || strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("bad cast: %q", err)
	}
}

func TestQueryNamedBindsValuesNotText(t *testing.T) {
	ctx := context.Background()
	e, err := Open(ctx, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.QueryNamed(ctx, "SELECT $a + 1 AS x, $s AS s, $d AS d", map[string]any{"a": int64(41), "s": "' OR 1=1 --", "d": time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Rows[0][0].Text + "|" + res.Rows[0][1].Text; got != "42|' OR 1=1 --" {
		t.Fatalf("row %v", res.Rows[0])
	}
	if !strings.HasPrefix(res.Rows[0][2].Text, "2024-02-29") {
		t.Fatalf("date %q", res.Rows[0][2].Text)
	}
	if _, err := e.QueryNamed(ctx, "SELECT $a AS x", nil); err == nil {
		t.Fatal("unbound parameter accepted")
	}
}
