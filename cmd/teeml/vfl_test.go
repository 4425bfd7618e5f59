package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/party/partysim"
	vflrun "github.com/teeml/teeml/vfl/run"
	"github.com/teeml/teeml/vfl/split"
)

// proc is a running teeml process whose stdout and stderr are collected.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan error
}

func startTeeml(t *testing.T, bin string, onLine func(string), args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				p.mu.Lock()
				p.out.WriteString(sc.Text() + "\n")
				p.mu.Unlock()
				if onLine != nil {
					onLine(sc.Text())
				}
			}
		}()
	}
	go func() { wg.Wait(); p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// startFollower starts a vfl follower process (args after the binary) and
// returns once it prints "vfl follower: listening on", so the leader can
// dial it at once.
func startFollower(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	listening := make(chan struct{})
	var once sync.Once
	p := startTeeml(t, bin, func(line string) {
		if strings.HasPrefix(line, "vfl follower: listening on ") {
			once.Do(func() { close(listening) })
		}
	}, args...)
	select {
	case <-listening:
	case err := <-p.done:
		t.Fatalf("follower exited before listening: %v\n%s", err, p.output())
	case <-time.After(time.Minute):
		t.Fatalf("follower not listening after 1m:\n%s", p.output())
	}
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(d):
		p.cmd.Process.Kill()
		t.Fatalf("process did not finish in %s:\n%s", d, p.output())
		return nil
	}
}

type card struct {
	Iterations     int64 `json:"iterations"`
	AppliedUpdates int64 `json:"applied_updates"`
	Resumes        int   `json:"resumes"`
}

func readCard(t *testing.T, path string) card {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c card
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestVFLFollowerKilledMidTrainingResumes kills the follower process
// (SIGKILL) right after its checkpoint at iteration 40, restarts it, and
// checks that both sides resume from their last common checkpoint, finish
// with exactly the planned number of iterations, applied once each (the
// counter in the checkpoints and model cards), and end with bit-identical
// weights to an uninterrupted run.
func TestVFLFollowerKilledMidTrainingResumes(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	plan, err := vflrun.SetupSimulated(vflrun.SetupOptions{Dir: dir, Dataset: "credit", Kind: split.KindWideDeep, Epochs: 3, CheckpointEvery: 20})
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	killAt := regexp.MustCompile(`checkpoint written.*iter_id=40\b`)
	var follower *proc
	killed := make(chan struct{})
	var once sync.Once
	follower = startTeeml(t, bin, func(line string) {
		if killAt.MatchString(line) {
			once.Do(func() {
				follower.cmd.Process.Kill()
				close(killed)
			})
		}
	}, "--log-level", "debug", "vfl", "follower", "--plan", plan, "--listen", addr)
	leader := startTeeml(t, bin, nil, "vfl", "leader", "--plan", plan, "--peer", addr)
	select {
	case <-killed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("follower never reached iteration 40:\n%s", follower.output())
	}
	if err := follower.wait(t, 10*time.Second); err == nil {
		t.Fatal("killed follower exited cleanly")
	}
	// The leader keeps trying to reconnect; restart the follower.
	follower2 := startTeeml(t, bin, nil, "vfl", "follower", "--plan", plan, "--listen", addr)
	if err := follower2.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("restarted follower: %v\n%s", err, follower2.output())
	}
	if err := leader.wait(t, time.Minute); err != nil {
		t.Fatalf("leader: %v\n%s", err, leader.output())
	}
	lout, fout := leader.output(), follower2.output()
	resumeRe := regexp.MustCompile(`resuming from checkpoint at iteration (\d+)`)
	lm, fm := resumeRe.FindStringSubmatch(lout), resumeRe.FindStringSubmatch(fout)
	if lm == nil || fm == nil || lm[1] != fm[1] {
		t.Fatalf("no common resume point:\nleader:\n%s\nfollower:\n%s", lout, fout)
	}
	t.Logf("both sides resumed from iteration %s", lm[1])
	if it, _ := strconv.Atoi(lm[1]); it < 40 {
		t.Fatalf("resumed from %d, but both had checkpoint 40", it)
	}
	if !strings.Contains(lout, "bridge channel lost; reconnecting") {
		t.Fatalf("leader did not log the reconnect:\n%s", lout)
	}
	state := filepath.Join(dir, "runs")
	var cards []card
	for _, role := range []string{"leader", "follower"} {
		m, _ := filepath.Glob(filepath.Join(state, "*", role, "model", role+".model-card.json"))
		if len(m) != 1 {
			t.Fatalf("%s model card: %v", role, m)
		}
		cards = append(cards, readCard(t, m[0]))
	}
	for i, c := range cards {
		if c.Iterations == 0 || c.AppliedUpdates != c.Iterations || c.Resumes != 1 {
			t.Fatalf("card %d: %+v: want every iteration applied exactly once and one resume", i, c)
		}
	}
	if cards[0].Iterations != cards[1].Iterations {
		t.Fatalf("leader %d iterations, follower %d", cards[0].Iterations, cards[1].Iterations)
	}
	// The PSI ran once, before the kill; the restarted follower reused the
	// stored alignment (same session at both sides, named in the Hello).
	if strings.Count(lout, "vfl leader: PSI ecdh-psi ristretto255") != 1 || strings.Contains(fout, ": PSI ecdh-psi") {
		t.Fatalf("want exactly one PSI (before the kill):\nleader:\n%s\nrestarted follower:\n%s", lout, fout)
	}
	// The same plan and the same PSI alignment (the stored session files,
	// copied) without the kill, in one process: identical halves.
	inproc := t.TempDir()
	for _, role := range []string{"leader", "follower"} {
		for _, name := range []string{"aligned-ids.txt", "session.json"} {
			b, err := os.ReadFile(firstGlob(t, filepath.Join(state, "*", role, "psi", name)))
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(inproc, role, "psi"), 0o700)
			if err := os.WriteFile(filepath.Join(inproc, role, "psi", name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, f, err := vflrun.RunInProcess(ctx, plan, inproc, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{
		{l.Model, firstGlob(t, filepath.Join(state, "*", "leader", "model", "leader.safetensors"))},
		{f.Model, firstGlob(t, filepath.Join(state, "*", "follower", "model", "follower.safetensors"))},
	} {
		if err := sameWeights(pair[0], pair[1]); err != nil {
			t.Fatalf("killed-and-resumed run differs from an uninterrupted one: %v", err)
		}
	}
}

func firstGlob(t *testing.T, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(pattern)
	if len(m) != 1 {
		t.Fatalf("%s: %v", pattern, m)
	}
	return m[0]
}

func sameWeights(a, b string) error {
	wa, _, err := safetensors.ReadFile(a)
	if err != nil {
		return err
	}
	wb, _, err := safetensors.ReadFile(b)
	if err != nil {
		return err
	}
	if len(wa) != len(wb) {
		return fmt.Errorf("%d vs %d tensors", len(wa), len(wb))
	}
	for i := range wa {
		for j := range wa[i].Data {
			if wa[i].Data[j] != wb[i].Data[j] {
				return fmt.Errorf("%s[%d]: %v vs %v", wa[i].Name, j, wa[i].Data[j], wb[i].Data[j])
			}
		}
	}
	return nil
}

func TestVFLQuickstartBreastCancer(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	out, errOut, code := run(t, bin, "--log-level", "warn", "vfl", "quickstart", "--dataset", "breast_cancer", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out, errOut)
	}
	m := regexp.MustCompile(`breast_cancer: federated test AUC ([0-9.]+) .*centralised AUC ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no result line:\n%s", out)
	}
	fed, _ := strconv.ParseFloat(m[1], 64)
	cen, _ := strconv.ParseFloat(m[2], 64)
	if fed < 0.97 || fed < cen-0.01 {
		t.Fatalf("federated AUC %.4f, centralised %.4f: want ≥ 0.97 and within 1 point", fed, cen)
	}
	// The independent non-split implementation on the joined table agrees
	// within a point too.
	r := regexp.MustCompile(`breast_cancer: reference: .* AUC ([0-9.]+)`).FindStringSubmatch(out)
	if r == nil {
		t.Fatalf("no reference line:\n%s", out)
	}
	if ref, _ := strconv.ParseFloat(r[1], 64); fed < ref-0.01 {
		t.Fatalf("federated AUC %.4f more than 1 point below the joined-table reference %.4f", fed, ref)
	}
	if !strings.Contains(out, "SIMULATION") {
		t.Fatal("quickstart output does not announce simulation")
	}
	// The rows were aligned by the PSI: about 5% of the IDs are missing at
	// each side, so the intersection is smaller than both sets.
	p := regexp.MustCompile(`breast_cancer: PSI ecdh-psi ristretto255 \(mode both, session [0-9a-f]+\): (\d+) IDs here, (\d+) at the peer, (\d+) in common; \d+ IDs/s .* (\d+) bytes sent, (\d+) received`).FindStringSubmatch(out)
	if p == nil {
		t.Fatalf("no PSI summary:\n%s", out)
	}
	own, _ := strconv.Atoi(p[1])
	peer, _ := strconv.Atoi(p[2])
	common, _ := strconv.Atoi(p[3])
	if !(common < own && common < peer && common > 450 && own < 569 && peer < 569) {
		t.Fatalf("PSI sizes leader %d follower %d common %d (breast_cancer has 569 rows)", own, peer, common)
	}

	// Joint prediction with the exported halves, as two processes.
	plan := filepath.Join(dir, "breast_cancer", "plan.yaml")
	addr := freeAddr(t)
	follower := startFollower(t, bin, "--log-level", "warn", "vfl", "predict", "--plan", plan, "--role", "follower", "--listen", addr)
	csvPath := filepath.Join(t.TempDir(), "preds.csv")
	pout, perr, code := run(t, bin, "--log-level", "warn", "vfl", "predict", "--plan", plan, "--role", "leader", "--peer", addr, "--out", csvPath)
	if code != 0 {
		t.Fatalf("leader predict exit %d:\n%s\n%s", code, pout, perr)
	}
	if err := follower.wait(t, time.Minute); err != nil {
		t.Fatalf("follower predict: %v\n%s", err, follower.output())
	}
	b, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(b)), "\n")
	if rows[0] != "id,probability,label" || len(rows) != 1+514 || !strings.Contains(pout, "vfl leader predict: 514 rows") {
		t.Fatalf("predictions: %d lines, header %q; output:\n%s", len(rows), rows[0], pout)
	}
}

func TestVFLBadPlanIsOneLine(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	plan, err := vflrun.SetupSimulated(vflrun.SetupOptions{Dir: dir, Dataset: "breast_cancer"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(plan)
	os.WriteFile(plan, []byte(strings.Replace(string(b), "batch_size: 32", "batch_size: 0", 1)), 0o644)
	_, errOut, code := run(t, bin, "vfl", "follower", "--plan", plan, "--listen", "127.0.0.1:0")
	if code == 0 || !regexp.MustCompile(`plan\.yaml:\d+: training\.batch_size: 0 outside 1\.\.65536`).MatchString(errOut) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestVFLWrongMeasurementRefusedWithOneLine: a follower whose enclave
// measurement is not in the plan's follower policy is refused by the
// leader, which exits non-zero with one line naming the check.
func TestVFLWrongMeasurementRefusedWithOneLine(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	plan, err := vflrun.SetupSimulated(vflrun.SetupOptions{Dir: dir, Dataset: "breast_cancer", Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The follower's party directory: same plan and policies, but its
	// evidence claims another MRENCLAVE.
	fdir := t.TempDir()
	for _, rel := range []string{"party/follower.yaml", "party/follower-sim-key.pem", "party/sim-trusted.pem"} {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if rel == "party/follower.yaml" {
			mr, _ := partysim.MeasurementHex("follower")
			if !strings.Contains(string(b), mr) {
				t.Fatalf("party/follower.yaml does not claim the simulated follower measurement %s", mr)
			}
			b = []byte(strings.Replace(string(b), mr, strings.Repeat("cd", 32), 1))
		}
		os.MkdirAll(filepath.Join(fdir, "party"), 0o700)
		if err := os.WriteFile(filepath.Join(fdir, rel), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	follower := startFollower(t, bin, "vfl", "follower", "--plan", plan, "--party-dir", fdir, "--listen", addr)
	defer follower.cmd.Process.Kill()
	_, errOut, code := run(t, bin, "--log-level", "error", "vfl", "leader", "--plan", plan, "--peer", addr)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	last := lines[len(lines)-1]
	if code == 0 || !strings.HasPrefix(last, "teeml: vfl leader: RA-TLS refused: ") ||
		!strings.Contains(last, "mr_enclave "+strings.Repeat("cd", 32)+" not in accepted list") || !strings.HasSuffix(last, "(policy)") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}
