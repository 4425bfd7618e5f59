// Package testsvc gives tests the external services CI provides (a throwaway
// PostgreSQL 15 and SoftHSM2, set up by .ci/services.sh). Outside CI a test
// whose service is missing is skipped with a message; under CI=true it fails,
// so a broken CI service can never turn into silently skipped tests.
package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/teeml/teeml/internal/testenv"
)

// Environment variables .ci/services.sh exports.
const (
	PostgresDSNEnv   = "TEEML_TEST_POSTGRES_DSN"
	SoftHSMModuleEnv = "TEEML_TEST_SOFTHSM_MODULE"
)

// DefaultSoftHSMModule is where Debian's libsofthsm2 installs the library.
const DefaultSoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// InCI reports whether tests run under CI (CI=true), where every optional
// service must be present.
func InCI() bool { return testenv.InCI() }

// missing skips the test, or fails it under CI.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.MustRun(t, format, args...)
}

// PostgresDSN returns the DSN of a PostgreSQL server that tests may use
// freely (create and drop tables), from TEEML_TEST_POSTGRES_DSN.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(PostgresDSNEnv)
	if dsn == "" {
		missing(t, "%s is not set (run tests under .ci/run, or source .ci/services.sh, for a PostgreSQL 15 server)", PostgresDSNEnv)
	}
	return dsn
}

// SoftHSMModule returns the path of the SoftHSM2 PKCS#11 library: the one
// named by TEEML_TEST_SOFTHSM_MODULE, else Debian's default if installed.
// Tests that use it must point SOFTHSM2_CONF at their own temporary
// configuration (see SoftHSMConfig) so they never touch system tokens.
func SoftHSMModule(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(SoftHSMModuleEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", SoftHSMModuleEnv, p, err)
		}
		return p
	}
	if _, err := os.Stat(DefaultSoftHSMModule); err != nil {
		missing(t, "SoftHSM2 not installed (%s missing; apt-get install softhsm2, or set %s)", DefaultSoftHSMModule, SoftHSMModuleEnv)
	}
	return DefaultSoftHSMModule
}

// SoftHSMConfig writes a softhsm2.conf whose token directory is a fresh
// temporary directory and points SOFTHSM2_CONF at it for the rest of the
// test, so the test sees no tokens but its own. It uses t.Setenv, so the
// test cannot run in parallel with others.
func SoftHSMConfig(t testing.TB) (confPath, tokenDir string) {
	t.Helper()
	// Not t.TempDir: its name derives from the test name, and SoftHSM's
	// config parser cuts lines at the first '=', which subtest names such
	// as "sessions=4" contain.
	dir, err := os.MkdirTemp("", "teeml-softhsm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tokenDir = dir + "/tokens"
	if err := os.Mkdir(tokenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	confPath = dir + "/softhsm2.conf"
	conf := "directories.tokendir = " + tokenDir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", confPath)
	return confPath, tokenDir
}

// SoftHSMToken creates a fresh SoftHSM2 token labelled label in a private
// token directory (see SoftHSMConfig) with softhsm2-util, in a separate
// process so that this process's PKCS#11 state is untouched, and returns
// the module path and the token's user PIN. The test PINs are fixed and
// harmless; production PINs never go on a command line.
func SoftHSMToken(t testing.TB, label string) (module, userPIN string) {
	t.Helper()
	module = SoftHSMModule(t)
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		missing(t, "softhsm2-util not found (apt-get install softhsm2)")
	}
	_, tokenDir := SoftHSMConfig(t)
	userPIN = "4711-user"
	out, err := exec.Command(util, "--init-token", "--free", "--label", label,
		"--so-pin", "0815-so", "--pin", userPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	// The token must be in this test's directory: proof that SoftHSM used
	// this test's SOFTHSM2_CONF and not the system configuration.
	if ents, err := os.ReadDir(tokenDir); err != nil || len(ents) != 1 {
		t.Fatalf("softhsm: %d entries in the test token directory %s (%v), want 1", len(ents), tokenDir, err)
	}
	return module, userPIN
}

// PostgresDatabase creates a fresh, empty database on the CI PostgreSQL
// server for this test alone and returns its DSN; the database is dropped
// when the test ends. Packages' tests run in parallel processes, so tests
// that create tables should use this rather than the shared teeml_test.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	base := PostgresDSN(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresDSNEnv, err)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := "teeml_t_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("postgres: connect: %v", err)
	}
	defer conn.Close(context.Background())
	// name is generated here from hex digits, so quoting is not needed
	// for safety; Identifier.Sanitize keeps it correct anyway.
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("postgres: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("postgres: drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		// FORCE ends connections a failed test left open (PostgreSQL 13+).
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("postgres: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
