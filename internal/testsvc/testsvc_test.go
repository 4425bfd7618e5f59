package testsvc

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgresAnswers proves the CI PostgreSQL service is up and is
// version 15, as the key broker's PostgreSQL backend is tested against it.
func TestPostgresAnswers(t *testing.T) {
	dsn := PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("server: %s", version)
	if !strings.HasPrefix(version, "PostgreSQL 15.") {
		t.Fatalf("server is %q, want PostgreSQL 15", version)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db != "teeml_test" {
		t.Fatalf("connected to database %q, want teeml_test", db)
	}
}

func TestSoftHSMModuleExists(t *testing.T) {
	p := SoftHSMModule(t)
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("module %s: %v", p, err)
	}
}

// TestMissingServiceFailsUnderCI checks the rule that makes CI honest: with
// CI=true an unset service fails the test instead of skipping it.
func TestMissingServiceFailsUnderCI(t *testing.T) {
	t.Setenv(PostgresDSNEnv, "")
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		r := &recorder{}
		func() {
			defer func() { _ = recover() }() // Fatalf/Skipf stop via panic in the recorder
			PostgresDSN(r)
		}()
		if ci == "true" && (!r.failed || r.skipped) {
			t.Errorf("CI=true: failed=%v skipped=%v, want a failure", r.failed, r.skipped)
		}
		if ci == "" && (r.failed || !r.skipped) {
			t.Errorf("CI unset: failed=%v skipped=%v, want a skip", r.failed, r.skipped)
		}
	}
}

// recorder is a testing.TB that records Fatal/Skip instead of stopping the
// real test.
type recorder struct {
	testing.TB
	failed, skipped bool
}

type stop struct{}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(stop{}) }
func (r *recorder) Skipf(string, ...any)  { r.skipped = true; panic(stop{}) }

func TestSoftHSMTokenIsPrivate(t *testing.T) {
	SoftHSMToken(t, "first")
	conf1 := os.Getenv("SOFTHSM2_CONF")
	t.Run("second", func(t *testing.T) {
		SoftHSMToken(t, "second")
		if os.Getenv("SOFTHSM2_CONF") == conf1 {
			t.Fatal("second token shares the first one's configuration")
		}
	})
}

func TestPostgresDatabaseIsFreshAndDropped(t *testing.T) {
	base := PostgresDSN(t)
	var dsn string
	t.Run("use", func(t *testing.T) {
		dsn = PostgresDatabase(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "CREATE TABLE k (id int PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	name := dsn[strings.LastIndex(dsn, "/")+1:]
	if i := strings.Index(name, "?"); i >= 0 {
		name = name[:i]
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}
