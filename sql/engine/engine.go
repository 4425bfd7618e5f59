// Package engine runs SQL inside the attested party on DuckDB (embedded
// through duckdb-go, cgo). It knows nothing of where tables come from
// (package sql/tables reads them, decrypting in memory) nor of who may see a
// result (the caller's output policy): it opens an in-memory database that
// cannot touch the file system, loads rows it is handed, and answers queries.
//
// Locked down at open, before any table or query:
//
//   - in-memory database, no database file;
//   - temp_directory empty and max_temp_directory_size 0: nothing spills to disk —
//     a query that does not fit memory_limit fails instead of writing plaintext
//     pages to a temp file;
//   - enable_external_access false: no COPY … TO, no read_csv/read_parquet of
//     local files, no ATTACH, no httpfs;
//   - autoload/autoinstall of extensions off, community extensions off;
//   - lock_configuration true: SQL cannot SET any of these back;
//
// and Query runs exactly one SELECT, refusing every other statement type.
package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Options size the engine. Zero values mean: DuckDB's default memory limit
// (80 % of physical memory), threads = GOMAXPROCS.
type Options struct {
	MemoryLimit string // DuckDB size, e.g. "4GB"; "" for DuckDB's default
	Threads     int
	Log         *slog.Logger
}

// Engine is one locked-down DuckDB session.
type Engine struct {
	db   *sql.DB
	conn *sql.Conn
	log  *slog.Logger
}

var sizeRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$`)

// lockdown is applied in this order; lock_configuration must be last.
func lockdown(o Options) []string {
	stmts := []string{
		"SET temp_directory = ''",
		"SET max_temp_directory_size = '0B'",
		fmt.Sprintf("SET threads = %d", o.Threads),
	}
	if o.MemoryLimit != "" {
		stmts = append(stmts, "SET memory_limit = '"+o.MemoryLimit+"'")
	}
	return append(stmts,
		"SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false",
		"SET allow_community_extensions = false",
		"SET enable_external_access = false",
		"SET lock_configuration = true",
	)
}

// Open starts an in-memory DuckDB and locks it down (see the package comment).
func Open(ctx context.Context, o Options) (*Engine, error) {
	if o.MemoryLimit != "" && !sizeRE.MatchString(o.MemoryLimit) {
		return nil, fmt.Errorf("sql engine: memory limit %q: want a size such as 4GB", o.MemoryLimit)
	}
	if o.Threads <= 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, fmt.Errorf("sql engine: open DuckDB: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sql engine: connect: %w", err)
	}
	e := &Engine{db: db, conn: conn, log: o.Log}
	for _, s := range lockdown(o) {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			e.Close()
			return nil, fmt.Errorf("sql engine: lock down (%s): %w", s, err)
		}
	}
	var version string
	if err := conn.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
		e.Close()
		return nil, fmt.Errorf("sql engine: %w", err)
	}
	limit, err := e.Setting(ctx, "memory_limit")
	if err != nil {
		e.Close()
		return nil, err
	}
	o.Log.Info("sql engine open", "duckdb", version, "memory_limit", limit, "threads", o.Threads,
		"spill", "off", "external_access", "off")
	return e, nil
}

// Close releases the database (all tables are in memory and vanish).
func (e *Engine) Close() error {
	var errs []error
	if e.conn != nil {
		errs = append(errs, e.conn.Close())
	}
	errs = append(errs, e.db.Close())
	return errors.Join(errs...)
}

// Setting returns the current value of a DuckDB setting.
func (e *Engine) Setting(ctx context.Context, name string) (string, error) {
	var v sql.NullString
	err := e.conn.QueryRowContext(ctx, "SELECT current_setting(?)", name).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("sql engine: setting %s: %w", name, err)
	}
	return v.String, nil
}

// Column is one column of a table to load: its name and DuckDB type
// ("" means: infer from the values, see Load).
type Column struct {
	Name string
	Type string
}

// Rows is a source of string rows (CSV fields). Next returns io.EOF at the
// end; any other error aborts the load. An empty field with Null set is NULL.
type Rows interface {
	Next() ([]string, error)
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ValidIdent reports whether s may name a table or column: an SQL
// identifier of letters, digits and underscores (quoted anyway).
func ValidIdent(s string) error {
	if !identRE.MatchString(s) {
		return fmt.Errorf("%q is not a valid name (letters, digits, _; at most 63; not starting with a digit)", s)
	}
	return nil
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

var typeRE = regexp.MustCompile(`^(BIGINT|INTEGER|DOUBLE|VARCHAR|DATE|BOOLEAN|DECIMAL\([0-9]{1,2},[0-9]{1,2}\))$`)

// Load creates table name from rows: the fields are appended as VARCHAR
// into a staging table (through duckdb-go's Appender, or Arrow batches with
// the duckdb_arrow build tag: LoadPath), then cast in one
// vectorised statement to the columns' types (a column without a type gets
// the narrowest of BIGINT, DOUBLE, DATE, VARCHAR that all its non-empty
// values cast to). Empty fields are NULL. On any error — including one from
// rows at the very end, such as a sealed table failing authentication — the
// table is not created and the staging rows are dropped. It returns the
// number of rows loaded.
func (e *Engine) Load(ctx context.Context, name string, cols []Column, rows Rows) (int64, error) {
	if err := ValidIdent(name); err != nil {
		return 0, fmt.Errorf("table %s: %w", name, err)
	}
	if len(cols) == 0 {
		return 0, fmt.Errorf("table %s: no columns", name)
	}
	seen := map[string]bool{}
	for _, c := range cols {
		if err := ValidIdent(c.Name); err != nil {
			return 0, fmt.Errorf("table %s: column %w", name, err)
		}
		if seen[strings.ToLower(c.Name)] {
			return 0, fmt.Errorf("table %s: column %s appears twice", name, c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		if c.Type != "" && !typeRE.MatchString(c.Type) {
			return 0, fmt.Errorf("table %s: column %s: unsupported type %q", name, c.Name, c.Type)
		}
	}
	stage := "__stage_" + name
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = quote(c.Name) + " VARCHAR"
	}
	if _, err := e.conn.ExecContext(ctx, "CREATE TEMP TABLE "+quote(stage)+" ("+strings.Join(defs, ", ")+")"); err != nil {
		return 0, fmt.Errorf("table %s: %w", name, err)
	}
	defer e.conn.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+quote(stage))

	n, err := e.append(ctx, stage, len(cols), rows)
	if err != nil {
		return 0, fmt.Errorf("table %s: %w", name, oneLine(err))
	}
	types := make([]string, len(cols))
	for i, c := range cols {
		types[i] = c.Type
		if types[i] == "" {
			t, err := e.infer(ctx, stage, c.Name)
			if err != nil {
				return 0, fmt.Errorf("table %s: column %s: %w", name, c.Name, err)
			}
			types[i] = t
		}
	}
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = "CAST(" + quote(c.Name) + " AS " + types[i] + ") AS " + quote(c.Name)
	}
	q := "CREATE TABLE " + quote(name) + " AS SELECT " + strings.Join(sel, ", ") + " FROM " + quote(stage)
	if _, err := e.conn.ExecContext(ctx, q); err != nil {
		return 0, fmt.Errorf("table %s: %w", name, oneLine(err))
	}
	e.log.Debug("table loaded", "table", name, "rows", n)
	return n, nil
}

// infer picks the narrowest type every non-NULL value of col casts to.
func (e *Engine) infer(ctx context.Context, stage, col string) (string, error) {
	c := quote(col)
	q := fmt.Sprintf(`SELECT
	count(*) FILTER (WHERE %[1]s IS NOT NULL AND (NOT regexp_full_match(%[1]s, '\s*[+-]?[0-9]+\s*') OR TRY_CAST(%[1]s AS BIGINT) IS NULL)),
	count(*) FILTER (WHERE %[1]s IS NOT NULL AND TRY_CAST(%[1]s AS DOUBLE) IS NULL),
	count(*) FILTER (WHERE %[1]s IS NOT NULL AND TRY_CAST(%[1]s AS DATE) IS NULL),
	count(%[1]s)
	FROM %[2]s`, c, quote(stage))
	var notInt, notDouble, notDate, nonNull int64
	if err := e.conn.QueryRowContext(ctx, q).Scan(&notInt, &notDouble, &notDate, &nonNull); err != nil {
		return "", err
	}
	switch {
	case nonNull == 0:
		return "VARCHAR", nil
	case notInt == 0:
		return "BIGINT", nil
	case notDouble == 0:
		return "DOUBLE", nil
	case notDate == 0:
		return "DATE", nil
	}
	return "VARCHAR", nil
}

// Result is a query's answer, every value rendered as text (NULL as
// Null=true) so that it can be printed, compared or written sealed the same
// way.
type Result struct {
	Columns []string
	Rows    [][]Value
}

// Value is one rendered cell.
type Value struct {
	Text string
	Null bool
}

// Query runs one read-only statement — exactly one SELECT (a WITH … SELECT
// or FROM … shorthand included) — and returns its rows. Anything else (SET,
// PRAGMA, COPY, ATTACH, CREATE, INSERT, CALL, EXPLAIN, several statements) is
// refused before it runs, on top of the lockdown, which already keeps a
// SELECT away from files.
func (e *Engine) Query(ctx context.Context, q string) (*Result, error) {
	return e.QueryNamed(ctx, q, nil)
}

// QueryNamed is Query with named parameters ($name in q) bound to args by
// the prepared statement: values never become SQL text.
func (e *Engine) QueryNamed(ctx context.Context, q string, args map[string]any) (*Result, error) {
	names := make([]string, 0, len(args))
	for n := range args {
		names = append(names, n)
	}
	sort.Strings(names)
	nv := make([]driver.NamedValue, len(names))
	for i, n := range names {
		nv[i] = driver.NamedValue{Name: n, Ordinal: i + 1, Value: args[n]}
	}
	var res *Result
	err := e.conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		// Prepare (not PrepareContext): it refuses a text of several
		// statements instead of running all but the last.
		ps, err := c.Prepare(q)
		if err != nil {
			return err
		}
		defer ps.Close()
		st, ok := ps.(*duckdb.Stmt)
		if !ok {
			return fmt.Errorf("unexpected driver statement %T", ps)
		}
		typ, err := st.StatementType()
		if err != nil {
			return err
		}
		if typ != duckdb.STATEMENT_TYPE_SELECT {
			return fmt.Errorf("only one SELECT statement may run (this is a %s statement)", stmtName(typ))
		}
		rows, err := st.QueryContext(ctx, nv)
		if err != nil {
			return err
		}
		defer rows.Close()
		res = &Result{Columns: rows.Columns()}
		dest := make([]driver.Value, len(res.Columns))
		for {
			err := rows.Next(dest)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			row := make([]Value, len(dest))
			for i, v := range dest {
				row[i] = render(v)
			}
			res.Rows = append(res.Rows, row)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("query: %w", oneLine(err))
	}
	return res, nil
}

// oneLine keeps err (for errors.Is/As) but prints it on one line: DuckDB's
// messages span lines (the query text, a caret, candidate bindings).
func oneLine(err error) error {
	if !strings.ContainsAny(err.Error(), "\r\n") {
		return err
	}
	return &flatError{err}
}

type flatError struct{ err error }

func (f *flatError) Error() string { return strings.Join(strings.Fields(f.err.Error()), " ") }
func (f *flatError) Unwrap() error { return f.err }

var stmtNames = map[duckdb.StmtType]string{
	duckdb.STATEMENT_TYPE_INSERT: "INSERT", duckdb.STATEMENT_TYPE_UPDATE: "UPDATE", duckdb.STATEMENT_TYPE_EXPLAIN: "EXPLAIN",
	duckdb.STATEMENT_TYPE_DELETE: "DELETE", duckdb.STATEMENT_TYPE_CREATE: "CREATE", duckdb.STATEMENT_TYPE_ALTER: "ALTER",
	duckdb.STATEMENT_TYPE_COPY: "COPY", duckdb.STATEMENT_TYPE_VARIABLE_SET: "SET VARIABLE", duckdb.STATEMENT_TYPE_DROP: "DROP",
	duckdb.STATEMENT_TYPE_EXPORT: "EXPORT", duckdb.STATEMENT_TYPE_PRAGMA: "PRAGMA", duckdb.STATEMENT_TYPE_CALL: "CALL",
	duckdb.STATEMENT_TYPE_SET: "SET", duckdb.STATEMENT_TYPE_LOAD: "LOAD", duckdb.STATEMENT_TYPE_ATTACH: "ATTACH",
	duckdb.STATEMENT_TYPE_DETACH: "DETACH", duckdb.STATEMENT_TYPE_TRANSACTION: "transaction",
}

func stmtName(t duckdb.StmtType) string {
	if n, ok := stmtNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

// Drop removes a loaded table.
func (e *Engine) Drop(ctx context.Context, name string) error {
	if err := ValidIdent(name); err != nil {
		return fmt.Errorf("table %s: %w", name, err)
	}
	return e.exec(ctx, "DROP TABLE IF EXISTS "+quote(name))
}

// exec runs an internal statement (lockdown, loading); never a caller's.
func (e *Engine) exec(ctx context.Context, q string) error {
	if _, err := e.conn.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("sql: %w", err)
	}
	return nil
}

// render turns a scanned DuckDB value into its text: integers and decimals
// exactly, doubles in the shortest form that reads back the same, dates as
// YYYY-MM-DD.
func render(v any) Value {
	switch x := v.(type) {
	case nil:
		return Value{Null: true}
	case string:
		return Value{Text: x}
	case []byte:
		return Value{Text: string(x)}
	case float64:
		return Value{Text: strconv.FormatFloat(x, 'f', -1, 64)}
	case float32:
		return Value{Text: strconv.FormatFloat(float64(x), 'f', -1, 32)}
	case time.Time:
		if x.Hour() == 0 && x.Minute() == 0 && x.Second() == 0 && x.Nanosecond() == 0 {
			return Value{Text: x.Format(time.DateOnly)}
		}
		return Value{Text: x.Format(time.RFC3339Nano)}
	case duckdb.Decimal:
		return Value{Text: decimalText(x.Value, int(x.Scale))}
	case *big.Int:
		return Value{Text: x.String()}
	}
	return Value{Text: fmt.Sprint(v)}
}

// decimalText renders v × 10^-scale with exactly scale decimals (DuckDB's
// own rendering: 48521.00, not 48521).
func decimalText(v *big.Int, scale int) string {
	s := new(big.Int).Abs(v).String()
	if scale == 0 {
		if v.Sign() < 0 {
			return "-" + s
		}
		return s
	}
	for len(s) <= scale {
		s = "0" + s
	}
	out := s[:len(s)-scale] + "." + s[len(s)-scale:]
	if v.Sign() < 0 {
		out = "-" + out
	}
	return out
}
