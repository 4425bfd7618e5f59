package run

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/childlog"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/ml/safetensors"
)

// The kill tests run every party as a separate OS process: this test
// binary re-executed with partyEnv naming the party (as quickstart runs
// the teeml binary), so SIGKILL hits a real process and a restart really
// starts from the files on disk.
const (
	partyEnv = "TEEML_FLRUN_TEST_PARTY" // "aggregator" or a collaborator name
	wsEnv    = "TEEML_FLRUN_TEST_WS"
)

func TestMain(m *testing.M) {
	if party := os.Getenv(partyEnv); party != "" {
		os.Exit(runParty(party, os.Getenv(wsEnv)))
	}
	os.Exit(m.Run())
}

func runParty(party, ws string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := context.Background()
	var err error
	if party == "aggregator" {
		err = RunAggregator(ctx, AggregatorOptions{Workspace: ws, Out: os.Stdout, Logger: log})
	} else {
		err = RunCollaborator(ctx, CollaboratorOptions{Workspace: ws, Name: party, ConnectTimeout: time.Minute, Out: os.Stdout, Logger: log})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// proc is a party process.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr lockedBuf
	done           chan struct{}
	err            error
	started        time.Time
}

func startParty(t *testing.T, ws, party string) *proc {
	t.Helper()
	p := &proc{name: party, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), partyEnv+"="+party, wsEnv+"="+ws)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	childlog.OrphanProof(p.cmd)
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// kill sends SIGKILL (no chance to clean up: a crash) and waits.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// wait waits for a clean exit.
func (p *proc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s still running after %s\nstdout:\n%s\nstderr (tail):\n%s", p.name, d, p.stdout.String(), tail(p.stderr.String(), 30))
	}
	if p.err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr (tail):\n%s", p.name, p.err, p.stdout.String(), tail(p.stderr.String(), 30))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, d, what, cond)
}

// editPlan changes the workspace's plan and freezes it again (new hash,
// new initial weights), as `teeml fl plan init` after an edit.
func editPlan(t *testing.T, ws string, edit func(p *plan.Plan)) {
	t.Helper()
	path := filepath.Join(ws, filepath.FromSlash(workspace.PlanFile))
	p, err := plan.LoadUnfrozen(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(p)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, p.Canonical(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.InitPlan(ws, ""); err != nil {
		t.Fatal(err)
	}
}

var logTime = regexp.MustCompile(`time=(\S+)`)

// logLineTime returns the time of the first log line containing s.
func logLineTime(log, s string) (time.Time, bool) {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			if m := logTime.FindStringSubmatch(l); m != nil {
				if ts, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
					return ts, true
				}
			}
		}
	}
	return time.Time{}, false
}

// roundLines returns the round numbers of the "round N/M:" lines of out.
func roundLines(out string) []int {
	var rs []int
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "round "); ok {
			if i := strings.IndexByte(rest, '/'); i > 0 {
				if r, err := strconv.Atoi(rest[:i]); err == nil {
					rs = append(rs, r)
				}
			}
		}
	}
	return rs
}

// TestKillCollaboratorMidRound: three collaborator processes; col-3 is
// killed (SIGKILL) while it works on round 2. Under the cutoff policy the
// round closes at the cutoff with the other two, the remaining rounds do
// too, and the federation completes.
func TestKillCollaboratorMidRound(t *testing.T) {
	ws := setup(t, 3, 3)
	const cutoff = 3 * time.Second
	editPlan(t, ws, func(p *plan.Plan) {
		p.Collaborator.EpochsPerRound = 2
		p.StragglerHandling = plan.StragglerPolicy{Policy: plan.StragglerCutoffTime, CutoffTime: cutoff, MinimumReporting: 2}
	})
	agg := startParty(t, ws, "aggregator")
	cols := []*proc{startParty(t, ws, "col-1"), startParty(t, ws, "col-2"), startParty(t, ws, "col-3")}
	waitFor(t, 2*time.Minute, "col-3 to start round 2", func() bool {
		return strings.Contains(agg.stderr.String(), `msg="model sent" component=aggregator collaborator=col-3 round=2`)
	})
	killed := time.Now()
	cols[2].kill(t)
	agg.wait(t, 2*time.Minute)
	cols[0].wait(t, 30*time.Second)
	cols[1].wait(t, 30*time.Second)
	log, out := agg.stderr.String(), agg.stdout.String()
	if got := roundLines(out); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("round lines %v, want [1 2 3]:\n%s", got, out)
	}
	// col-3 was killed during round 2; in the rare case that it had already
	// uploaded, round 2 closed with everyone and round 3 is the first
	// without it.
	first := 2
	closed, ok := logLineTime(log, "round 2 closes by straggler policy (cutoff) with 2 of 3 updates; stragglers: col-3")
	if !ok {
		first = 3
		t.Logf("col-3 finished round 2 before the kill landed")
	}
	if _, ok := logLineTime(log, "round 3 closes by straggler policy (cutoff) with 2 of 3 updates; stragglers: col-3"); !ok {
		t.Fatalf("round 3 did not close by the cutoff policy:\n%s", tail(log, 40))
	}
	closed, _ = logLineTime(log, fmt.Sprintf("round %d closes by straggler policy (cutoff)", first))
	opened, _ := logLineTime(log, fmt.Sprintf(`msg="round open" component=aggregator round=%d`, first))
	t.Logf("col-3 killed; round %d (opened %.2f s before the kill) closed %.2f s after the kill (cutoff %s after the round opened); federation done %.1f s after the kill",
		first, killed.Sub(opened).Seconds(), closed.Sub(killed).Seconds(), cutoff, time.Since(killed).Seconds())
	if d := closed.Sub(opened); d < cutoff || d > cutoff+30*time.Second {
		t.Errorf("round %d closed %s after it opened, cutoff %s", first, d, cutoff)
	}
	if !strings.Contains(out, FinalAccuracyPrefix) {
		t.Errorf("no final model line:\n%s", out)
	}
}

// TestRestartCollaboratorMidRound: without a straggler policy every round
// waits for all collaborators. col-2's process is SIGKILLed while it works
// on round 2 and started again: it gets its round-2 task again and the
// federation completes with both collaborators in every round.
func TestRestartCollaboratorMidRound(t *testing.T) {
	ws := setup(t, 3, 2)
	editPlan(t, ws, func(p *plan.Plan) { p.Collaborator.EpochsPerRound = 2 })
	agg := startParty(t, ws, "aggregator")
	col1, col2 := startParty(t, ws, "col-1"), startParty(t, ws, "col-2")
	waitFor(t, 2*time.Minute, "col-2 to start round 2", func() bool {
		return strings.Contains(agg.stderr.String(), `msg="model sent" component=aggregator collaborator=col-2 round=2`)
	})
	col2.kill(t)
	killed := time.Now()
	again := startParty(t, ws, "col-2")
	agg.wait(t, 2*time.Minute)
	col1.wait(t, 30*time.Second)
	again.wait(t, 30*time.Second)
	if !strings.Contains(again.stderr.String(), `msg="round starts" collaborator=col-2 round=2`) {
		t.Errorf("restarted col-2 did not get its round-2 task again:\n%s", tail(again.stderr.String(), 20))
	}
	closed, _ := logLineTime(agg.stderr.String(), `msg="round closed" component=aggregator round=2 participants="[col-1 col-2]"`)
	if closed.IsZero() {
		t.Fatalf("round 2 did not close with both collaborators:\n%s", tail(agg.stderr.String(), 30))
	}
	t.Logf("round 2 closed %.2f s after col-2 was killed and restarted (process start, RA-TLS, data load and training included)", closed.Sub(killed).Seconds())
	if got := roundLines(agg.stdout.String()); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("round lines %v", got)
	}
}

// TestKillAggregatorResumes: the aggregator process is killed (SIGKILL)
// after its round-2 checkpoint; started again, it resumes at round 3, the
// collaborator processes (never restarted) rejoin on their own over a
// fresh RA-TLS certificate, and the federation completes: every round is
// printed exactly once across the two aggregator processes, the last model
// is the final checkpoint's, and FedAdam's server moments went on from
// the round-2 checkpoint instead of restarting from zero.
func TestKillAggregatorResumes(t *testing.T) {
	ws := setup(t, 3, 2)
	const eta, beta1, beta2, tau = 0.01, 0.9, 0.99, 1e-9
	editPlan(t, ws, func(p *plan.Plan) {
		p.Collaborator.EpochsPerRound = 2
		p.Aggregation.Strategy = "fedadam"
		p.Aggregation.Settings = map[string]float64{"eta": eta, "beta1": beta1, "beta2": beta2, "tau": tau}
	})
	p, err := workspace.LoadPlan(ws)
	if err != nil {
		t.Fatal(err)
	}
	hash := p.Hash()
	ckptPath := CheckpointFile(ws, hash)
	agg1 := startParty(t, ws, "aggregator")
	cols := []*proc{startParty(t, ws, "col-1"), startParty(t, ws, "col-2")}
	// Kill once round 2 is printed, i.e. committed (a kill between the
	// checkpoint write and the print would lose that one line; see
	// docs/fl-resilience.md).
	waitFor(t, 2*time.Minute, "round 2 to be committed", func() bool {
		return strings.Contains(agg1.stdout.String(), "\nround 2/3: ")
	})
	agg1.kill(t)
	killed := time.Now()
	ck2, err := protocol.ReadCheckpoint(ckptPath, hash)
	if err != nil {
		t.Fatal(err)
	}
	if ck2.Round != 2 {
		t.Fatalf("killed after round %d, want 2 (machine too slow to interrupt round 3?)", ck2.Round)
	}
	agg2 := startParty(t, ws, "aggregator")
	agg2.wait(t, 2*time.Minute)
	for _, c := range cols {
		c.wait(t, 30*time.Second)
	}
	out1, out2, log2 := agg1.stdout.String(), agg2.stdout.String(), agg2.stderr.String()
	if !strings.Contains(out2, "resuming from checkpoint: round 2 of 3 completed") {
		t.Fatalf("restarted aggregator did not announce the resume:\n%s", out2)
	}
	listening, _ := logLineTime(log2, `msg="aggregator listening"`)
	reopened, _ := logLineTime(log2, `msg="round open" component=aggregator round=3`)
	closed3, _ := logLineTime(log2, `msg="round closed" component=aggregator round=3`)
	t.Logf("restart to listening %.2f s, to round 3 open %.2f s; round 3 closed %.2f s after the kill",
		listening.Sub(agg2.started).Seconds(), reopened.Sub(agg2.started).Seconds(), closed3.Sub(killed).Seconds())
	// Each collaborator verified the restarted aggregator's new RA-TLS
	// certificate (a second handshake) and went on by itself.
	for _, c := range cols {
		log := c.stderr.String()
		if n := strings.Count(log, `policy: peer \"aggregator\" role aggregator: accepted`); n < 2 {
			t.Errorf("%s verified the aggregator %d times, want a second handshake with the restarted one:\n%s", c.name, n, tail(log, 30))
		}
	}
	// Every round printed exactly once across both processes, in order.
	if got := append(roundLines(out1), roundLines(out2)...); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("round lines %v across both aggregator processes, want [1 2 3]\nfirst:\n%s\nsecond:\n%s", got, out1, out2)
	}
	ck3, err := protocol.ReadCheckpoint(ckptPath, hash)
	if err != nil {
		t.Fatal(err)
	}
	if ck3.Round != 3 || len(ck3.History) != 3 || ck3.Strategy.Scalars["step"] != 3 {
		t.Fatalf("final checkpoint: round %d, %d summaries, FedAdam step %v (want 3, 3, 3)", ck3.Round, len(ck3.History), ck3.Strategy.Scalars["step"])
	}
	for i := range 2 {
		if ck3.History[i].Seconds != ck2.History[i].Seconds || !slices.Equal(ck3.History[i].Participants, ck2.History[i].Participants) {
			t.Errorf("summary of round %d changed after the resume", i+1)
		}
	}
	last, _, err := safetensors.ReadFile(filepath.Join(ws, filepath.FromSlash(p.Aggregator.LastStatePath)))
	if err != nil {
		t.Fatal(err)
	}
	if err := last.Compatible(ck3.Global); err != nil {
		t.Fatal(err)
	}
	for i := range last {
		if !slices.Equal(last[i].Data, ck3.Global[i].Data) {
			t.Fatalf("last model tensor %s differs from the final checkpoint's global model", last[i].Name)
		}
	}

	// FedAdam, round 3: m₃ = β₁m₂ + (1−β₁)Δ, v₃ = β₂v₂ + (1−β₂)Δ²,
	// w₃ = w₂ + η·m₃/(√v₃ + τ). Recover Δ from the saved m's and check v₃ and
	// w₃ against it: this holds only if round 3 started from the restored
	// m₂, v₂. Moments reset to zero would give v₃ = (1−β₂)(m₃/(1−β₁))².
	m2, v2 := split(t, ck2)
	m3, v3 := split(t, ck3)
	var bad, resetFits, n int
	for ti := range m3 {
		for j := range m3[ti] {
			n++
			d := (float64(m3[ti][j]) - beta1*float64(m2[ti][j])) / (1 - beta1)
			wantV := beta2*float64(v2[ti][j]) + (1-beta2)*d*d
			if !near(float64(v3[ti][j]), wantV, 1e-3) {
				bad++
			}
			w2, w3 := float64(ck2.Global[ti].Data[j]), float64(ck3.Global[ti].Data[j])
			if !near(w3, w2+eta*float64(m3[ti][j])/(math.Sqrt(float64(v3[ti][j]))+tau), 1e-4) {
				bad++
			}
			d0 := float64(m3[ti][j]) / (1 - beta1)
			if near(float64(v3[ti][j]), (1-beta2)*d0*d0, 1e-3) {
				resetFits++
			}
		}
	}
	t.Logf("FedAdam check over %d coordinates: %d mismatches; a reset of the moments would explain %d", n, bad, resetFits)
	if bad > n/1000 {
		t.Errorf("%d of %d coordinates do not follow from the round-2 moments", bad, n)
	}
	if resetFits > n/2 {
		t.Errorf("%d of %d coordinates also fit moments reset to zero: the check cannot tell", resetFits, n)
	}
}

// split returns FedAdam's m and v tensors of a checkpoint.
func split(t *testing.T, c *protocol.Checkpoint) (m, v [][]float32) {
	t.Helper()
	for _, x := range c.Strategy.Tensors {
		switch {
		case strings.HasPrefix(x.Name, "m/"):
			m = append(m, x.Data)
		case strings.HasPrefix(x.Name, "v/"):
			v = append(v, x.Data)
		}
	}
	if len(m) != len(c.Global) || len(v) != len(c.Global) {
		t.Fatalf("checkpoint of round %d: %d m and %d v tensors for %d weights", c.Round, len(m), len(v), len(c.Global))
	}
	return m, v
}

// near compares with a relative tolerance (absolute near zero).
func near(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Max(math.Abs(want), 1e-6)
}

// TestResumeRefusesBadCheckpoint: a checkpoint of another plan, or a
// corrupt one, stops the aggregator with a one-line error before anything
// is served or overwritten.
func TestResumeRefusesBadCheckpoint(t *testing.T) {
	ws := setup(t, 2, 1)
	p, err := workspace.LoadPlan(ws)
	if err != nil {
		t.Fatal(err)
	}
	hash := p.Hash()
	initial, _, err := safetensors.ReadFile(filepath.Join(ws, filepath.FromSlash(p.Aggregator.InitStatePath)))
	if err != nil {
		t.Fatal(err)
	}
	path := CheckpointFile(ws, hash)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	c := &protocol.Checkpoint{PlanHash: other, Round: 1, Rounds: 2, Global: initial,
		Strategy: strategyState(t, p), History: []protocol.RoundSummary{{Round: 1, EvalLoss: math.NaN()}}}
	if err := protocol.WriteCheckpoint(path, c); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of a checkpoint write left its temporary file.
	stale := filepath.Join(filepath.Dir(path), ".checkpoint.safetensors.tmp-123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = RunAggregator(ctx, AggregatorOptions{Workspace: ws, Logger: quietLog()})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "belongs to plan abababab…, not the frozen plan "+protocol.ShortHash(hash)) {
		t.Fatalf("foreign checkpoint: %v", err)
	}
	t.Logf("foreign checkpoint: %v", err)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("unfinished checkpoint write not removed: %v", err)
	}

	// A second aggregator of the same plan is refused while one runs.
	unlock, err := lockState(filepath.Join(filepath.Dir(path), "lock"))
	if err != nil {
		t.Fatal(err)
	}
	err = RunAggregator(ctx, AggregatorOptions{Workspace: ws, Logger: quietLog()})
	unlock()
	if err == nil || !strings.Contains(err.Error(), "another aggregator of this plan is running on this workspace") {
		t.Fatalf("second aggregator: %v", err)
	}

	c.PlanHash = hash
	if err := protocol.WriteCheckpoint(path, c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = RunAggregator(ctx, AggregatorOptions{Workspace: ws, Logger: quietLog()})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "SHA-256 mismatch") {
		t.Fatalf("corrupt checkpoint: %v", err)
	}
	t.Logf("corrupt checkpoint: %v", err)
	if after, _ := os.ReadFile(path); !slices.Equal(after, b) {
		t.Error("the corrupt checkpoint was overwritten")
	}
}

func strategyState(t *testing.T, p *plan.Plan) strategy.State {
	t.Helper()
	s, err := p.Strategy(1)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}
