package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKMSAuditVerifyLocalRefusesWipedMissingAndEmptyStores reproduces issue
// 23 defects 1 and 2 through the CLI: `kms audit verify --local` on a
// missing or empty store path created a fresh database and said OK, and
// wiping every audit row and the head row passed verification and let the
// broker restart its chain at entry 1.
func TestKMSAuditVerifyLocalRefusesWipedMissingAndEmptyStores(t *testing.T) {
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "kms")
	addr := freeAddr(t)
	if out, errOut, code := run(t, bin, "kms", "setup-sim", "--dir", dir, "--listen", addr); code != 0 {
		t.Fatalf("setup-sim exit %d: %s %s", code, out, errOut)
	}
	cfg := filepath.Join(dir, "kms.yaml")
	cli := func(args ...string) (string, string, int) {
		return run(t, bin, append(append([]string{"kms"}, args...), "--log-level", "error")...)
	}
	b := startBroker(t, bin, cfg)
	if out, errOut, code := cli("key", "create", "--config", filepath.Join(dir, "admin.yaml"), "--key", "model", "--policy", filepath.Join(dir, "release.yaml")); code != 0 {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not stop on SIGTERM")
	}

	out, errOut, code := cli("audit", "verify", "--local", "--config", cfg)
	if code != 0 || !strings.Contains(out, "audit chain OK: 1 entries") || !strings.Contains(out, "audit anchor "+filepath.Join(dir, "audit.anchor")+": entry 1") {
		t.Fatalf("local verify of the intact store: exit %d %s %s", code, out, errOut)
	}
	if !regexp.MustCompile(`witness to keep off this host .*: 1:[0-9a-f]{64}\n`).MatchString(out) {
		t.Errorf("no witness line in %q", out)
	}

	// Defect 2: a missing, an empty-named and a zero-length store are
	// refused, and nothing is created.
	orig, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	withStore := func(name, path string) string {
		c := strings.Replace(string(orig), "path: kms.db", "path: "+path, 1)
		if c == string(orig) {
			t.Fatalf("no store path in %s", orig)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oneLineRefusal := func(what, errOut string, code int, want string) {
		t.Helper()
		if code != 1 || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q, want one line containing %q", what, code, errOut, want)
		}
	}
	_, errOut, code = cli("audit", "verify", "--local", "--config", withStore("missing.yaml", "missing.db"))
	oneLineRefusal("missing store", errOut, code, "missing.db: no such file")
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("verify of a missing store created it")
	}
	_, errOut, code = cli("audit", "verify", "--local", "--config", withStore("noname.yaml", `""`))
	oneLineRefusal("empty store path", errOut, code, "sqlite: no path")
	if err := os.WriteFile(filepath.Join(dir, "empty.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = cli("audit", "verify", "--local", "--config", withStore("empty.yaml", "empty.db"))
	oneLineRefusal("zero-length store", errOut, code, "empty (0 bytes)")
	if fi, err := os.Stat(filepath.Join(dir, "empty.db")); err != nil || fi.Size() != 0 {
		t.Errorf("verify wrote to the empty store: %v %v", fi, err)
	}

	// Defect 1: wipe every audit row and the head row.
	db, err := sql.Open("sqlite", filepath.Join(dir, "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DELETE FROM kms_audit`, `DELETE FROM kms_audit_head`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	_, errOut, code = cli("audit", "verify", "--local", "--config", cfg)
	oneLineRefusal("verify of the wiped store", errOut, code, "the store has no audit head row: the audit log was wiped")
	_, errOut, code = run(t, bin, "kms", "serve", "--config", cfg, "--log-level", "error")
	oneLineRefusal("broker start on the wiped store", errOut, code, "the store holds 1 keys but its audit log is empty: the audit log was wiped")
}
