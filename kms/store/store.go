// Package store persists the key broker's state: primary keys (metadata,
// release policy, versions of key material already wrapped under the root
// key), the hash-chained audit log and its authenticated head, in SQLite
// (embedded default: WAL, synchronous=FULL) or PostgreSQL (scale-out: several
// broker replicas share one database).
//
// One schema serves both; the dialects differ only in the blob type,
// placeholders and row locking. Every change is one transaction that also
// appends its audit entry, so a key never exists without the record of its
// creation and a crash leaves either both or neither. Audit appends are
// serialised across replicas by a row lock on the single audit-head row
// (PostgreSQL SELECT … FOR UPDATE; SQLite's database-wide write lock, taken
// at BEGIN IMMEDIATE), so the hash chain cannot fork. Key rows are locked
// before the head row, always in that order, so transactions cannot
// deadlock.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/teeml/teeml/kms/audit"
)

// Key states.
const (
	Enabled   = "enabled"
	Disabled  = "disabled"
	Destroyed = "destroyed"
)

// Errors callers distinguish.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrBudget: a clean-room query would overspend an owner's ε budget.
	ErrBudget = errors.New("privacy budget exhausted")
)

// Config selects a backend.
type Config struct {
	// Driver is "sqlite" or "postgres".
	Driver string `yaml:"driver"`
	// Path is the SQLite database file.
	Path string `yaml:"path,omitempty"`
	// DSN is the PostgreSQL connection string.
	DSN string `yaml:"dsn,omitempty"`
	// Schema is the PostgreSQL schema holding the tables (default
	// "teeml_kms"); created if missing.
	Schema string `yaml:"schema,omitempty"`
}

// Describe names the backend for logs without secrets.
func (c Config) Describe() string {
	if c.Driver == "postgres" {
		host := "?"
		if pc, err := pgx.ParseConfig(c.DSN); err == nil {
			host = fmt.Sprintf("%s:%d/%s", pc.Host, pc.Port, pc.Database)
		}
		return fmt.Sprintf("postgres %s schema %s", host, c.schema())
	}
	return "sqlite " + c.Path
}

func (c Config) schema() string {
	if c.Schema == "" {
		return "teeml_kms"
	}
	return c.Schema
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Store is an open database. It is safe for concurrent use.
type Store struct {
	db       *sql.DB
	pg       bool
	readOnly bool
	writes   sync.Mutex // SQLite only: one writer per process (the file lock does the rest)
}

// Key is a primary key's metadata.
type Key struct {
	ID          string
	State       string
	Policy      string // release policy YAML
	Description string
	Current     uint32 // newest version
	Created     time.Time
	Updated     time.Time
	RowVersion  int64 // incremented by every change
}

// Open opens (and creates or migrates) the database.
func Open(ctx context.Context, c Config) (*Store, error) {
	switch c.Driver {
	case "sqlite":
		return openSQLite(ctx, c)
	case "postgres":
		return openPostgres(ctx, c)
	case "":
		return nil, errors.New("store: no driver (want sqlite or postgres)")
	}
	return nil, fmt.Errorf("store: driver %q: want sqlite or postgres", c.Driver)
}

// OpenReadOnly opens an existing store for reading only: nothing is
// created or migrated, a missing or empty SQLite file and a PostgreSQL
// schema without the broker's tables are refused, and every transaction is
// read-only. Verification (`kms audit verify --local`) uses it.
func OpenReadOnly(ctx context.Context, c Config) (*Store, error) {
	switch c.Driver {
	case "sqlite":
		if c.Path == "" {
			return nil, errors.New("store: sqlite: no path")
		}
		fi, err := os.Stat(c.Path)
		if err != nil {
			return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("store: sqlite %s: not a regular file", c.Path)
		}
		if fi.Size() == 0 {
			return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, errEmptyFile)
		}
		q := url.Values{}
		q.Add("mode", "ro")
		q.Add("_pragma", "busy_timeout(30000)")
		db, err := sql.Open("sqlite", "file:"+c.Path+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, err)
		}
		s := &Store{db: db, readOnly: true}
		if err := s.checkTables(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, err)
		}
		return s, nil
	case "postgres":
		schema := c.schema()
		if !schemaName.MatchString(schema) {
			return nil, fmt.Errorf("store: postgres schema %q: want lower-case letters, digits and _", schema)
		}
		pc, err := pgx.ParseConfig(c.DSN)
		if err != nil {
			return nil, fmt.Errorf("store: postgres DSN: %v", oneLine(err.Error()))
		}
		pc.RuntimeParams["search_path"] = schema
		pc.RuntimeParams["default_transaction_read_only"] = "on"
		db := stdlib.OpenDB(*pc)
		db.SetMaxOpenConns(4)
		s := &Store{db: db, pg: true, readOnly: true}
		if err := s.checkTables(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("store: %s: %w", c.Describe(), err)
		}
		return s, nil
	case "":
		return nil, errors.New("store: no driver (want sqlite or postgres)")
	}
	return nil, fmt.Errorf("store: driver %q: want sqlite or postgres", c.Driver)
}

// errEmptyFile: SQLite would treat a zero-length file as a new database.
var errEmptyFile = errors.New("the file is empty (0 bytes): not a store this broker wrote (truncated?)")

// checkTables refuses a database without the broker's tables.
func (s *Store) checkTables(ctx context.Context) error {
	for _, t := range []string{"kms_keys", "kms_audit", "kms_audit_head", "kms_meta"} {
		var n int
		var err error
		if s.pg {
			err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`, t).Scan(&n)
		} else {
			err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, t).Scan(&n)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no table %s: not a key broker store", t)
		}
	}
	return nil
}

func openSQLite(ctx context.Context, c Config) (*Store, error) {
	if c.Path == "" {
		return nil, errors.New("store: sqlite: no path")
	}
	if fi, err := os.Stat(c.Path); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, errEmptyFile)
	}
	// _txlock=immediate: every transaction takes the write lock at BEGIN,
	// so read-then-write transactions never fail with SQLITE_BUSY midway.
	q := url.Values{}
	q.Add("_txlock", "immediate")
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(30000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+c.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, err)
	}
	s := &Store{db: db}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, err)
	}
	if mode != "wal" {
		db.Close()
		return nil, fmt.Errorf("store: sqlite %s: journal mode %q, want wal", c.Path, mode)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: sqlite %s: %w", c.Path, err)
	}
	return s, nil
}

func openPostgres(ctx context.Context, c Config) (*Store, error) {
	schema := c.schema()
	if !schemaName.MatchString(schema) {
		return nil, fmt.Errorf("store: postgres schema %q: want lower-case letters, digits and _", schema)
	}
	pc, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("store: postgres DSN: %v", oneLine(err.Error()))
	}
	pc.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*pc)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	s := &Store{db: db, pg: true}
	if err := s.migrate(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", c.Describe(), err)
	}
	return s, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB exposes the database handle to tests and integrity checks.
func (s *Store) DB() *sql.DB { return s.db }

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *Store) q(query string) string {
	if !s.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

func (s *Store) migrate(ctx context.Context, pgSchema ...string) error {
	blob := "BLOB"
	if s.pg {
		blob = "BYTEA"
	}
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS kms_keys (
			id TEXT PRIMARY KEY,
			state TEXT NOT NULL,
			policy TEXT NOT NULL,
			description TEXT NOT NULL,
			current_version INTEGER NOT NULL,
			created_ns BIGINT NOT NULL,
			updated_ns BIGINT NOT NULL,
			row_version BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS kms_key_versions (
			key_id TEXT NOT NULL REFERENCES kms_keys(id),
			version INTEGER NOT NULL,
			material ` + blob + `,
			created_ns BIGINT NOT NULL,
			PRIMARY KEY (key_id, version))`,
		`CREATE TABLE IF NOT EXISTS kms_audit (
			seq BIGINT PRIMARY KEY,
			prev ` + blob + ` NOT NULL,
			hash ` + blob + ` NOT NULL,
			body ` + blob + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS kms_audit_head (
			id INTEGER PRIMARY KEY CHECK (id = 1),
			seq BIGINT NOT NULL,
			hash ` + blob + ` NOT NULL,
			mac ` + blob + `)`,
		`CREATE TABLE IF NOT EXISTS kms_budgets (
			contract TEXT NOT NULL,
			owner TEXT NOT NULL,
			spent_micro BIGINT NOT NULL,
			PRIMARY KEY (contract, owner))`,
		`CREATE TABLE IF NOT EXISTS kms_budget_queries (
			contract TEXT NOT NULL,
			owner TEXT NOT NULL,
			query_id TEXT NOT NULL,
			PRIMARY KEY (contract, owner, query_id))`,
		`CREATE TABLE IF NOT EXISTS kms_meta (
			name TEXT PRIMARY KEY,
			value ` + blob + ` NOT NULL)`,
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if s.pg {
			// Replicas starting together must not race on CREATE TABLE.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7366796976)`); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS "`+pgSchema[0]+`"`); err != nil {
				return err
			}
		}
		for _, st := range stmts {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		g := audit.Genesis()
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO kms_audit_head (id, seq, hash, mac) VALUES (1, 0, ?, NULL) ON CONFLICT (id) DO NOTHING`), g.Hash)
		return err
	})
}

// tx runs f in a write transaction and commits it.
func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	if s.readOnly {
		return errors.New("store: opened read-only")
	}
	if !s.pg {
		s.writes.Lock()
		defer s.writes.Unlock()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Meta returns a metadata value, or ErrNotFound.
func (s *Store) Meta(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM kms_meta WHERE name = ?`), name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return v, err
}

// PutMetaIfAbsent stores value under name unless a value is there already,
// and returns the stored value (so concurrent replicas agree on one).
func (s *Store) PutMetaIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO kms_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`), name, value)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.Meta(ctx, name)
}

const keyCols = `id, state, policy, description, current_version, created_ns, updated_ns, row_version`

type scanner interface{ Scan(...any) error }

func scanKey(r scanner) (*Key, error) {
	var k Key
	var created, updated int64
	var cur int64
	if err := r.Scan(&k.ID, &k.State, &k.Policy, &k.Description, &cur, &created, &updated, &k.RowVersion); err != nil {
		return nil, err
	}
	k.Current = uint32(cur)
	k.Created, k.Updated = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return &k, nil
}

// Key returns key id's metadata, or ErrNotFound.
func (s *Store) Key(ctx context.Context, id string) (*Key, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, s.q(`SELECT `+keyCols+` FROM kms_keys WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("key %q: %w", id, ErrNotFound)
	}
	return k, err
}

// Keys lists all keys by id.
func (s *Store) Keys(ctx context.Context) ([]*Key, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+keyCols+` FROM kms_keys ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Material returns the wrapped material of key id version v; ErrNotFound
// when the version does not exist or was destroyed.
func (s *Store) Material(ctx context.Context, id string, v uint32) ([]byte, error) {
	var m []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT material FROM kms_key_versions WHERE key_id = ? AND version = ?`), id, int64(v)).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && m == nil) {
		return nil, fmt.Errorf("key %q version %d: %w", id, v, ErrNotFound)
	}
	return m, err
}

// Tx is a write transaction that ends by appending one audit entry.
type Tx struct {
	s   *Store
	tx  *sql.Tx
	ctx context.Context
	now time.Time
}

// Now is the transaction's timestamp.
func (t *Tx) Now() time.Time { return t.now }

// LockKey returns key id locked for update, or ErrNotFound.
func (t *Tx) LockKey(id string) (*Key, error) {
	q := `SELECT ` + keyCols + ` FROM kms_keys WHERE id = ?`
	if t.s.pg {
		q += ` FOR UPDATE`
	}
	k, err := scanKey(t.tx.QueryRowContext(t.ctx, t.s.q(q), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("key %q: %w", id, ErrNotFound)
	}
	return k, err
}

// InsertKey creates key k with version 1's wrapped material; ErrExists if
// the id is taken.
func (t *Tx) InsertKey(k *Key, material []byte) error {
	ns := t.now.UnixNano()
	res, err := t.tx.ExecContext(t.ctx, t.s.q(`INSERT INTO kms_keys (`+keyCols+`) VALUES (?, ?, ?, ?, 1, ?, ?, 1) ON CONFLICT (id) DO NOTHING`),
		k.ID, Enabled, k.Policy, k.Description, ns, ns)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("key %q: %w", k.ID, ErrExists)
	}
	_, err = t.tx.ExecContext(t.ctx, t.s.q(`INSERT INTO kms_key_versions (key_id, version, material, created_ns) VALUES (?, 1, ?, ?)`), k.ID, material, ns)
	return err
}

// AddVersion adds version k.Current+1 of locked key k.
func (t *Tx) AddVersion(k *Key, material []byte) error {
	ns := t.now.UnixNano()
	v := int64(k.Current) + 1
	if _, err := t.tx.ExecContext(t.ctx, t.s.q(`INSERT INTO kms_key_versions (key_id, version, material, created_ns) VALUES (?, ?, ?, ?)`), k.ID, v, material, ns); err != nil {
		return err
	}
	return t.update(k, `current_version = ?`, v)
}

// SetState changes locked key k's state; Destroyed also erases every
// version's material.
func (t *Tx) SetState(k *Key, state string) error {
	if state == Destroyed {
		if _, err := t.tx.ExecContext(t.ctx, t.s.q(`UPDATE kms_key_versions SET material = NULL WHERE key_id = ?`), k.ID); err != nil {
			return err
		}
	}
	return t.update(k, `state = ?`, state)
}

// Spend charges cost (micro-ε) to owner's budget under contract for query
// queryID, unless that query was already charged (several keys of one
// owner, or a retried release, pay once). A charge that would take the
// spent total above limit is refused with ErrBudget and nothing changes.
// It returns the total spent after the call and whether this call charged.
// The budget row is locked before the audit head (the same order as keys).
func (t *Tx) Spend(contract, owner, queryID string, cost, limit int64) (spent int64, charged bool, err error) {
	if _, err := t.tx.ExecContext(t.ctx, t.s.q(`INSERT INTO kms_budgets (contract, owner, spent_micro) VALUES (?, ?, 0) ON CONFLICT (contract, owner) DO NOTHING`), contract, owner); err != nil {
		return 0, false, err
	}
	q := `SELECT spent_micro FROM kms_budgets WHERE contract = ? AND owner = ?`
	if t.s.pg {
		q += ` FOR UPDATE`
	}
	if err := t.tx.QueryRowContext(t.ctx, t.s.q(q), contract, owner).Scan(&spent); err != nil {
		return 0, false, err
	}
	var n int
	if err := t.tx.QueryRowContext(t.ctx, t.s.q(`SELECT COUNT(*) FROM kms_budget_queries WHERE contract = ? AND owner = ? AND query_id = ?`), contract, owner, queryID).Scan(&n); err != nil {
		return 0, false, err
	}
	if n > 0 {
		return spent, false, nil
	}
	if spent+cost > limit {
		return spent, false, fmt.Errorf("owner %s under contract %.16s…: %w (%s of %s spent, the query needs %s)", owner, contract, ErrBudget, Micro(spent), Micro(limit), Micro(cost))
	}
	if _, err := t.tx.ExecContext(t.ctx, t.s.q(`UPDATE kms_budgets SET spent_micro = ? WHERE contract = ? AND owner = ?`), spent+cost, contract, owner); err != nil {
		return 0, false, err
	}
	if _, err := t.tx.ExecContext(t.ctx, t.s.q(`INSERT INTO kms_budget_queries (contract, owner, query_id) VALUES (?, ?, ?)`), contract, owner, queryID); err != nil {
		return 0, false, err
	}
	return spent + cost, true, nil
}

// Spent returns the ε (micro-units) owner has spent under contract.
func (s *Store) Spent(ctx context.Context, contract, owner string) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT spent_micro FROM kms_budgets WHERE contract = ? AND owner = ?`), contract, owner).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// Micro formats micro-ε as ε.
func Micro(v int64) string { return strconv.FormatFloat(float64(v)/1e6, 'f', -1, 64) }

// update changes one column of k, checking its row version (optimistic
// check on top of the lock: a lost update is an error, never silent).
func (t *Tx) update(k *Key, set string, v any) error {
	res, err := t.tx.ExecContext(t.ctx, t.s.q(`UPDATE kms_keys SET `+set+`, updated_ns = ?, row_version = row_version + 1 WHERE id = ? AND row_version = ?`),
		v, t.now.UnixNano(), k.ID, k.RowVersion)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("key %q changed concurrently (row version %d)", k.ID, k.RowVersion)
	}
	return nil
}

// Update runs f in a write transaction; when f succeeds it appends the
// audit record made by rec (called after f, so it can describe the
// outcome) and commits both together. It returns the audit entry's head.
// When f fails nothing is written and f's error is returned: the caller
// records the refusal with Append.
func (s *Store) Update(ctx context.Context, macKey []byte, f func(*Tx) error, rec func() []byte) (audit.Head, error) {
	var head audit.Head
	err := s.tx(ctx, func(tx *sql.Tx) error {
		t := &Tx{s: s, tx: tx, ctx: ctx, now: time.Now()}
		if err := f(t); err != nil {
			return err
		}
		hs, err := s.appendTx(ctx, tx, macKey, [][]byte{rec()})
		if err != nil {
			return err
		}
		head = hs[0]
		return nil
	})
	return head, err
}

// Append appends audit bodies in one transaction (group commit) and
// returns each one's head.
func (s *Store) Append(ctx context.Context, macKey []byte, bodies [][]byte) ([]audit.Head, error) {
	var heads []audit.Head
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		heads, err = s.appendTx(ctx, tx, macKey, bodies)
		return err
	})
	return heads, err
}

func (s *Store) appendTx(ctx context.Context, tx *sql.Tx, macKey []byte, bodies [][]byte) ([]audit.Head, error) {
	q := `SELECT seq, hash FROM kms_audit_head WHERE id = 1`
	if s.pg {
		q += ` FOR UPDATE`
	}
	var h audit.Head
	var seq int64
	if err := tx.QueryRowContext(ctx, q).Scan(&seq, &h.Hash); err != nil {
		return nil, fmt.Errorf("audit head: %w", err)
	}
	h.Seq = uint64(seq)
	heads := make([]audit.Head, len(bodies))
	for i, body := range bodies {
		e := audit.Next(h, body)
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO kms_audit (seq, prev, hash, body) VALUES (?, ?, ?, ?)`), int64(e.Seq), e.Prev, e.Hash, e.Body); err != nil {
			return nil, fmt.Errorf("audit append: %w", err)
		}
		h = audit.Head{Seq: e.Seq, Hash: e.Hash}
		heads[i] = h
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE kms_audit_head SET seq = ?, hash = ?, mac = ? WHERE id = 1`), int64(h.Seq), h.Hash, audit.HeadMAC(macKey, h)); err != nil {
		return nil, fmt.Errorf("audit head: %w", err)
	}
	return heads, nil
}

// Head returns the stored audit head and its MAC (nil for the empty log).
func (s *Store) Head(ctx context.Context) (audit.Head, []byte, error) {
	var h audit.Head
	var seq int64
	var mac []byte
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash, mac FROM kms_audit_head WHERE id = 1`).Scan(&seq, &h.Hash, &mac)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil, fmt.Errorf("no audit head row: %w", ErrNotFound)
	}
	h.Seq = uint64(seq)
	return h, mac, err
}

// Entries calls f for each audit entry from seq from on, in order, at most
// limit of them (0: all).
func (s *Store) Entries(ctx context.Context, from uint64, limit int, f func(audit.Entry) error) error {
	q := `SELECT seq, prev, hash, body FROM kms_audit WHERE seq >= ? ORDER BY seq`
	args := []any{int64(from)}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var e audit.Entry
		var seq int64
		if err := rows.Scan(&seq, &e.Prev, &e.Hash, &e.Body); err != nil {
			return err
		}
		e.Seq = uint64(seq)
		if err := f(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// IntegrityCheck runs SQLite's PRAGMA integrity_check ("ok" when sound);
// for PostgreSQL it returns "ok" after a trivial query.
func (s *Store) IntegrityCheck(ctx context.Context) (string, error) {
	if s.pg {
		var one int
		return "ok", s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
	}
	var res string
	err := s.db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res)
	return res, err
}
