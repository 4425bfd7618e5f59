package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/kms/store"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// broker is a running `teeml kms serve` process.
type broker struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
}

// startBroker runs `teeml kms serve --config config` and waits for its
// serving line.
func startBroker(t *testing.T, bin, config string) *broker {
	t.Helper()
	cmd := exec.Command(bin, "kms", "serve", "--config", config, "--log-level", "warn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = &lockedBuf{b: b.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), kms.ServingPrefix) {
				ready <- sc.Text()
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { b.kill() })
	select {
	case <-ready:
	case <-b.done:
		t.Fatalf("broker exited before serving: %s", b.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("broker did not start: %s", b.stderr)
	}
	return b
}

func (b *broker) kill() {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
}

type lockedBuf struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestKMSCLI(t *testing.T) {
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "kms")
	addr := freeAddr(t)
	out, errOut, code := run(t, bin, "kms", "setup-sim", "--dir", dir, "--listen", addr)
	if code != 0 || !strings.Contains(out, "SIMULATION") {
		t.Fatalf("setup-sim exit %d: %s %s", code, out, errOut)
	}
	metrics := freeAddr(t)
	appendFile(t, filepath.Join(dir, "kms.yaml"), "metrics_listen: "+metrics+"\n")
	b := startBroker(t, bin, filepath.Join(dir, "kms.yaml"))
	admin, col := filepath.Join(dir, "admin.yaml"), filepath.Join(dir, "col-1.yaml")
	cli := func(args ...string) (string, string, int) {
		return run(t, bin, append(append([]string{"kms"}, args...), "--log-level", "error")...)
	}
	if out, errOut, code = cli("key", "create", "--config", admin, "--key", "model", "--policy", filepath.Join(dir, "release.yaml")); code != 0 || !strings.Contains(out, "key model: enabled, version 1") {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	wrapped, plain, again := filepath.Join(dir, "dk.wrapped"), filepath.Join(dir, "dk.key"), filepath.Join(dir, "dk2.key")
	if out, errOut, code = cli("datakey", "--config", col, "--key", "model", "--out", wrapped, "--plaintext-out", plain, "--context", "round-1"); code != 0 {
		t.Fatalf("datakey: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code = cli("unwrap", "--config", col, "--in", wrapped, "--out", again, "--context", "round-1"); code != 0 {
		t.Fatalf("unwrap: exit %d %s %s", code, out, errOut)
	}
	p1, _ := os.ReadFile(plain)
	p2, _ := os.ReadFile(again)
	if len(p1) != 32 || !bytes.Equal(p1, p2) {
		t.Fatal("unwrapped data key differs from the generated one")
	}
	if st, _ := os.Stat(again); st.Mode().Perm() != 0o600 {
		t.Errorf("plaintext key file mode %v, want 0600", st.Mode().Perm())
	}
	// The admin is not in the release policy: refused, one line, exit 1,
	// nothing written.
	_, errOut, code = cli("unwrap", "--config", admin, "--in", wrapped, "--out", filepath.Join(dir, "stolen.key"), "--context", "round-1")
	if code != 1 || !strings.Contains(errOut, `teeml: kms: unwrap refused: key "model": member "admin" (role aggregator) is not allowed`) {
		t.Fatalf("unwrap by admin: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "stolen.key")); err == nil {
		t.Fatal("refused unwrap wrote a file")
	}
	// Disabled key: refused.
	if _, errOut, code = cli("key", "disable", "--config", admin, "--key", "model"); code != 0 {
		t.Fatalf("disable: %s", errOut)
	}
	if _, errOut, code = cli("unwrap", "--config", col, "--in", wrapped, "--out", again, "--context", "round-1"); code != 1 || !strings.Contains(errOut, `key "model" is disabled`) {
		t.Fatalf("unwrap of disabled key: exit %d %s", code, errOut)
	}
	// Bad input.
	if _, errOut, code = cli("key", "destroy", "--config", admin, "--key", "model"); code != 1 || !strings.Contains(errOut, "pass --yes") {
		t.Fatalf("destroy without --yes: exit %d %s", code, errOut)
	}
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("members: [col-1]\n"), 0o644)
	if _, errOut, code = cli("key", "create", "--config", admin, "--key", "k2", "--policy", filepath.Join(dir, "bad.yaml")); code != 1 || !strings.Contains(errOut, `missing key "attestation"`) {
		t.Fatalf("bad release policy: exit %d %s", code, errOut)
	}
	os.WriteFile(filepath.Join(dir, "junk.wrapped"), []byte("not a key"), 0o644)
	if _, errOut, code = cli("unwrap", "--config", col, "--in", filepath.Join(dir, "junk.wrapped"), "--out", again); code != 1 || !strings.Contains(errOut, "bad magic") {
		t.Fatalf("junk wrapped key: exit %d %s", code, errOut)
	}
	// Audit: shows the refusals, verifies remotely; witness kept.
	out, errOut, code = cli("audit", "show", "--config", admin)
	if code != 0 || !strings.Contains(out, "refused unwrap admin key=model/v1") || !strings.Contains(out, `is disabled`) {
		t.Fatalf("audit show: exit %d %s %s", code, out, errOut)
	}
	out, errOut, code = cli("audit", "verify", "--config", admin)
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify: exit %d %s %s", code, out, errOut)
	}
	m := regexp.MustCompile(`head (\d+:[0-9a-f]{64}),`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no head in %q", out)
	}
	witness := m[1]
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `teeml_kms_decisions_total{decision="refused",op="unwrap"} 2`) {
		t.Errorf("metrics lack the 2 refused unwraps (admin, disabled key):\n%s", body)
	}
	// Graceful shutdown on SIGTERM: exit 0.
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not stop on SIGTERM")
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("broker exit %d after SIGTERM: %s", code, b.stderr)
	}

	// Offline verification of the store, then an edited row breaks it.
	local := func(extra ...string) (string, string, int) {
		return cli(append([]string{"audit", "verify", "--local", "--config", filepath.Join(dir, "kms.yaml"), "--witness", witness}, extra...)...)
	}
	if out, errOut, code = local(); code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("local verify: exit %d %s %s", code, out, errOut)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE kms_audit SET body = CAST(REPLACE(CAST(body AS TEXT), '"refused"', '"granted"') AS BLOB) WHERE seq = 4`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, errOut, code = local(); code != 1 || !strings.Contains(errOut, "audit chain: entry 4: stored hash") || !strings.Contains(errOut, "edited") {
		t.Fatalf("edited row: exit %d %s", code, errOut)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func quietLog() *slog.Logger { return testlog.Discard() }

// ack is an acknowledged key creation and data key.
type ack struct {
	id             string
	wrapped, plain []byte
}

// burst creates keys (and one data key each) through the given client
// configurations until stop is closed, and returns what was acknowledged.
func burst(t *testing.T, admins, cols []*kms.Config, workers int, stop <-chan struct{}, acked *atomic.Int64) ([]ack, int) {
	t.Helper()
	var mu sync.Mutex
	var acks []ack
	failed := 0
	release, err := os.ReadFile(filepath.Join(admins[0].Dir(), "release.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a, err := kms.Dial(ctx, admins[w%len(admins)], quietLog())
			if err != nil {
				t.Error(err)
				return
			}
			defer a.Close()
			c, err := kms.Dial(ctx, cols[w%len(cols)], quietLog())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("k-%d-%d-%s", w, i, randHex(3))
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := a.CreateKey(cctx, &kmsv1.CreateKeyRequest{KeyId: id, ReleasePolicy: string(release)})
				var g *kmsv1.GenerateDataKeyResponse
				if err == nil {
					g, err = c.GenerateDataKey(cctx, &kmsv1.GenerateDataKeyRequest{KeyId: id, WithPlaintext: true})
				}
				ccancel()
				mu.Lock()
				if err != nil {
					failed++ // the broker died mid-call: not acknowledged
				} else {
					acks = append(acks, ack{id: id, wrapped: g.Wrapped, plain: g.Plaintext})
					acked.Add(1)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return acks, failed
}

// killAfterAcks is how many operations a burst acknowledges before the
// kill tests SIGKILL a broker.
const killAfterAcks = 20

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// checkAcks unwraps every acknowledged data key through cols.
func checkAcks(t *testing.T, cols []*kms.Config, acks []ack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var clients []*kms.Client
	for _, c := range cols {
		cl, err := kms.Dial(ctx, c, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients = append(clients, cl)
	}
	for i, a := range acks {
		u, err := clients[i%len(clients)].Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: a.wrapped})
		if err != nil {
			t.Fatalf("acknowledged key %s: %v", a.id, err)
		}
		if !bytes.Equal(u.Plaintext, a.plain) {
			t.Fatalf("acknowledged key %s: unwrapped plaintext differs", a.id)
		}
	}
}

func loadCfg(t *testing.T, path string) *kms.Config {
	t.Helper()
	c, err := kms.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKMSKillDuringBurstSQLite: SIGKILL the broker while clients create keys
// and data keys; after a restart every acknowledged key unwraps, the SQLite
// file passes integrity_check and the audit chain verifies.
func TestKMSKillDuringBurstSQLite(t *testing.T) {
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "kms")
	addr := freeAddr(t)
	if _, errOut, code := run(t, bin, "kms", "setup-sim", "--dir", dir, "--listen", addr); code != 0 {
		t.Fatal(errOut)
	}
	b := startBroker(t, bin, filepath.Join(dir, "kms.yaml"))
	admin, col := loadCfg(t, filepath.Join(dir, "admin.yaml")), loadCfg(t, filepath.Join(dir, "col-1.yaml"))
	stop := make(chan struct{})
	var acked atomic.Int64
	go func() {
		// Mid-burst, no warning: once the burst is well under way. (If
		// it never gets there, the kill still comes and the test fails
		// below on too few acknowledgements.)
		testenv.WaitFor(time.Minute, func() bool { return acked.Load() >= killAfterAcks })
		b.cmd.Process.Signal(syscall.SIGKILL)
		close(stop)
	}()
	acks, failed := burst(t, []*kms.Config{admin}, []*kms.Config{col}, 4, stop, &acked)
	<-b.done
	t.Logf("acknowledged %d key creations + data keys before SIGKILL; %d calls cut off", len(acks), failed)
	if len(acks) < 4 {
		t.Fatalf("only %d acknowledged operations before the kill: burst too short to test anything", len(acks))
	}
	startBroker(t, bin, filepath.Join(dir, "kms.yaml"))
	checkAcks(t, []*kms.Config{col}, acks)
	st, err := store.Open(context.Background(), store.Config{Driver: "sqlite", Path: filepath.Join(dir, "kms.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if res, err := st.IntegrityCheck(context.Background()); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
	out, errOut, code := run(t, bin, "kms", "audit", "verify", "--local", "--config", filepath.Join(dir, "kms.yaml"), "--log-level", "error")
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify after kill: exit %d %s %s", code, out, errOut)
	}
}

// TestKMSKillDuringBurstPostgresReplicas: two broker processes share one
// PostgreSQL schema; clients burst against both; one replica is SIGKILLed
// mid-burst and restarted. Every acknowledged key unwraps at both replicas
// and the shared audit chain verifies.
func TestKMSKillDuringBurstPostgresReplicas(t *testing.T) {
	dsn := os.Getenv("TEEML_TEST_POSTGRES_DSN")
	if dsn == "" {
		testenv.MustRun(t, "TEEML_TEST_POSTGRES_DSN not set: no PostgreSQL to test against")
	}
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "kms")
	addrA, addrB := freeAddr(t), freeAddr(t)
	schema := "kms_kill_" + randHex(5)
	if _, errOut, code := run(t, bin, "kms", "setup-sim", "--dir", dir, "--listen", addrA, "--postgres-dsn", dsn, "--postgres-schema", schema); code != 0 {
		t.Fatal(errOut)
	}
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", dsn); err == nil {
			db.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
			db.Close()
		}
	})
	// Replica b: same identity, store and root key, another address.
	y, err := os.ReadFile(filepath.Join(dir, "kms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yb := strings.Replace(string(y), "listen: "+addrA, "listen: "+addrB+"\nreplica: b", 1)
	if err := os.WriteFile(filepath.Join(dir, "kms-b.yaml"), []byte(yb), 0o600); err != nil {
		t.Fatal(err)
	}
	ra := startBroker(t, bin, filepath.Join(dir, "kms.yaml"))
	startBroker(t, bin, filepath.Join(dir, "kms-b.yaml"))
	cfgs := func(name string) []*kms.Config {
		a, b := loadCfg(t, filepath.Join(dir, name)), loadCfg(t, filepath.Join(dir, name))
		b.Broker = addrB
		return []*kms.Config{a, b}
	}
	admins, cols := cfgs("admin.yaml"), cfgs("col-1.yaml")
	stop := make(chan struct{})
	var acks []ack
	var acked atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Workers on replica a stop at the kill; those on b run on.
		var failed int
		acks, failed = burst(t, admins, cols, 4, stop, &acked)
		t.Logf("acknowledged %d operations; %d calls cut off by the kill", len(acks), failed)
	}()
	testenv.WaitFor(time.Minute, func() bool { return acked.Load() >= killAfterAcks })
	ra.cmd.Process.Signal(syscall.SIGKILL)
	<-ra.done
	// Replica b keeps acknowledging after a's death (its workers run on).
	atKill := acked.Load()
	testenv.Eventually(t, time.Minute, "replica b acknowledges operations after replica a was killed",
		func() bool { return acked.Load() >= atKill+killAfterAcks/2 })
	close(stop)
	<-done
	if len(acks) < 4 {
		t.Fatalf("only %d acknowledged operations: burst too short", len(acks))
	}
	startBroker(t, bin, filepath.Join(dir, "kms.yaml"))
	checkAcks(t, cols, acks)
	out, errOut, code := run(t, bin, "kms", "audit", "verify", "--local", "--config", filepath.Join(dir, "kms.yaml"), "--log-level", "error")
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify after kill: exit %d %s %s", code, out, errOut)
	}
}
