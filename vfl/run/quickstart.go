package run

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/childlog"
	"github.com/teeml/teeml/vfl/plan"
	"github.com/teeml/teeml/vfl/split"
)

// QuickstartOptions configures Quickstart.
type QuickstartOptions struct {
	// Dir is where each dataset's directory is created (default: a new
	// temporary directory).
	Dir string
	// Datasets to run (default breast_cancer and credit).
	Datasets []string
	Kind     split.Kind
	Epochs   int // default: 10 for breast_cancer, 5 for credit
	// Executable is the teeml binary the parties run as (default
	// os.Executable()).
	Executable string
	Timeout    time.Duration // per dataset (default 5 minutes)
	// LogLevel of the parties (default info).
	LogLevel string
	Out      io.Writer
	Logger   *slog.Logger
}

// QuickstartRun is one dataset's outcome.
type QuickstartRun struct {
	Dataset     string
	Plan        string
	Federated   split.Metrics // leader and follower as processes over RA-TLS
	Centralised split.Metrics // same model and rows, both halves in one process
	Reference   split.Metrics // teeml's non-split model of the family on the joined table
	LeaderModel string
	// PSI is the leader's PSI summary line (set sizes, intersection, IDs/s,
	// bytes) of the federated run.
	PSI string
}

// Quickstart is `teeml vfl quickstart`: for each dataset it writes a
// simulated two-party setup (SetupSimulated), runs the follower and the
// leader as separate processes of Executable over loopback RA-TLS, and then
// trains the same plan in one process (the centralised baseline: same
// architecture, rows and code, no network) and prints both results.
func Quickstart(ctx context.Context, o QuickstartOptions) ([]QuickstartRun, error) {
	if len(o.Datasets) == 0 {
		o.Datasets = []string{"breast_cancer", "credit"}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Executable = exe
	}
	out := &childlog.SyncWriter{W: o.Out}
	fmt.Fprintf(out, "\n!!! %s !!!\n\n", sim.Banner)
	root := o.Dir
	if root == "" {
		d, err := os.MkdirTemp("", "teeml-vfl-quickstart-")
		if err != nil {
			return nil, err
		}
		root = d
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	var runs []QuickstartRun
	for _, ds := range o.Datasets {
		r, err := quickstartOne(ctx, o, out, root, ds)
		if err != nil {
			return runs, err
		}
		runs = append(runs, *r)
	}
	fmt.Fprintf(out, "\n%-14s %-9s %-10s %-10s %-10s %-10s\n", "dataset", "model", "AUC fed.", "AUC cent.", "diff (pts)", "AUC ref.")
	for _, r := range runs {
		fmt.Fprintf(out, "%-14s %-9s %-10.4f %-10.4f %-+10.2f %-10.4f\n", r.Dataset, kindOr(o.Kind), r.Federated.AUC, r.Centralised.AUC,
			points(r.Federated.AUC, r.Centralised.AUC), r.Reference.AUC)
	}
	fmt.Fprintln(out, "AUC fed.: leader and follower as processes over RA-TLS, rows aligned by ECDH-PSI; cent.: the same split model, both halves in one process\n(its own PSI over an in-process pipe); ref.: teeml's non-split model of the same family (GoMLX) trained on the joined table")
	for _, r := range runs {
		fmt.Fprintf(out, "PSI %-14s %s\n", r.Dataset, r.PSI)
	}
	fmt.Fprintf(out, "directory kept at %s (remove it when done)\n(%s)\n", root, sim.Banner)
	return runs, nil
}

func kindOr(k split.Kind) split.Kind {
	if k == "" {
		return split.KindWideDeep
	}
	return k
}

func quickstartOne(ctx context.Context, o QuickstartOptions, out io.Writer, root, ds string) (*QuickstartRun, error) {
	dir := filepath.Join(root, ds)
	epochs := o.Epochs
	if epochs == 0 {
		epochs = 10
		if ds == "credit" {
			epochs = 5
		}
	}
	planFile, err := SetupSimulated(SetupOptions{Dir: dir, Dataset: ds, Kind: o.Kind, Epochs: epochs})
	if err != nil {
		return nil, fmt.Errorf("quickstart %s: %w", ds, err)
	}
	fmt.Fprintf(out, "== %s: plan %s; follower and leader as separate processes over loopback RA-TLS (logs in %s)\n",
		ds, planFile, filepath.Join(dir, "logs"))
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	qp := &quickstartParties{ctx: ctx, cancel: cancel, o: o, out: out, dir: dir, planFile: planFile, addrCh: make(chan string, 1)}
	if err := qp.run(ds); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "== %s: PSI %s\n", ds, qp.psiLine)
	r := &QuickstartRun{Dataset: ds, Plan: planFile, Federated: *qp.fed, LeaderModel: qp.model, PSI: qp.psiLine}
	if err := quickstartBaselines(ctx, o, out, dir, r); err != nil {
		return nil, err
	}
	return r, nil
}

// quickstartBaselines trains r's plan centralised (both halves in one
// process) and as teeml's non-split reference model on the joined table,
// filling r.Centralised and r.Reference.
func quickstartBaselines(ctx context.Context, o QuickstartOptions, out io.Writer, dir string, r *QuickstartRun) error {
	ds, fed := r.Dataset, &r.Federated
	fmt.Fprintf(out, "== %s: centralised baseline: the same model on the same common rows, both halves in one process\n", ds)
	l, _, err := RunInProcess(ctx, r.Plan, filepath.Join(dir, "centralised"), o.Logger)
	if err != nil {
		return fmt.Errorf("quickstart %s: centralised baseline: %w", ds, err)
	}
	c := *l.Metrics
	fmt.Fprintf(out, "== %s: federated test AUC %.4f (accuracy %.4f, log-loss %.4f); centralised AUC %.4f (accuracy %.4f, log-loss %.4f); difference %+.2f points\n",
		ds, fed.AUC, fed.Accuracy, fed.LogLoss, c.AUC, c.Accuracy, c.LogLoss, points(fed.AUC, c.AUC))
	pl, err := plan.Load(r.Plan)
	if err != nil {
		return err
	}
	ref, err := ReferenceJoined(ctx, pl)
	if err != nil {
		return fmt.Errorf("quickstart %s: joined-table reference: %w", ds, err)
	}
	fmt.Fprintf(out, "== %s: reference: teeml's non-split %s model (GoMLX) on the joined table (same rows, split, epochs, batch, learning rate): AUC %.4f (accuracy %.4f, log-loss %.4f)\n",
		ds, refKind(pl.Model.Kind), ref.AUC, ref.Accuracy, ref.LogLoss)
	r.Centralised, r.Reference = c, ref
	return nil
}

// quickstartParties runs the follower and the leader of one quickstart
// dataset as child processes (`teeml vfl follower|leader`), echoes their
// output and collects what they report. The first failure cancels ctx,
// stopping the other.
type quickstartParties struct {
	ctx           context.Context
	cancel        context.CancelFunc
	o             QuickstartOptions
	out           io.Writer
	dir, planFile string
	addrCh        chan string // the follower's listening address

	wg       sync.WaitGroup
	mu       sync.Mutex // guards the fields below
	firstErr error
	fed      *split.Metrics // the leader's test metrics
	model    string         // the leader's exported model line
	psiLine  string         // the leader's PSI summary
}

// run starts the follower, then the leader dialling it, waits for both and
// checks the leader reported its metrics and PSI summary.
func (qp *quickstartParties) run(ds string) error {
	if err := qp.start(RoleFollower, []string{"--listen", "127.0.0.1:0"}); err != nil {
		qp.cancel()
		qp.wg.Wait()
		return err
	}
	var addr string
	select {
	case addr = <-qp.addrCh:
	case <-qp.ctx.Done():
		qp.wg.Wait()
		return fmt.Errorf("quickstart %s: the follower never listened: %w", ds, firstErrOr(&qp.mu, &qp.firstErr, qp.ctx.Err()))
	}
	if err := qp.start(RoleLeader, []string{"--peer", addr}); err != nil {
		qp.cancel()
		qp.wg.Wait()
		return err
	}
	qp.wg.Wait()
	leaderLog := filepath.Join(qp.dir, "logs", "leader.log")
	switch {
	case qp.firstErr != nil:
		return fmt.Errorf("quickstart %s: %w (directory %s)", ds, qp.firstErr, qp.dir)
	case qp.fed == nil:
		return fmt.Errorf("quickstart %s: the leader reported no test metrics (see %s)", ds, leaderLog)
	case qp.psiLine == "":
		return fmt.Errorf("quickstart %s: the leader reported no PSI summary (see %s)", ds, leaderLog)
	}
	return nil
}

// start launches role's process, its stderr to logs/ROLE.log, its stdout
// watched by a goroutine.
func (qp *quickstartParties) start(role string, args []string) error {
	logPath := filepath.Join(qp.dir, "logs", role+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := childlog.Command(qp.ctx, qp.o.Executable, append([]string{"--log-level", qp.o.LogLevel, "vfl", role, "--plan", qp.planFile}, args...)...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", role, err)
	}
	qp.wg.Add(1)
	go qp.watch(role, cmd, stdout, logf, logPath)
	return nil
}

// watch echoes and parses role's stdout until it exits; a failed exit is
// recorded (the first one) and cancels the run.
func (qp *quickstartParties) watch(role string, cmd *exec.Cmd, stdout io.Reader, logf *os.File, logPath string) {
	defer qp.wg.Done()
	defer logf.Close()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		qp.line(role, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		qp.mu.Lock()
		if qp.firstErr == nil {
			qp.firstErr = fmt.Errorf("%s failed: %w%s", role, err, childlog.LastLine(logPath))
		}
		qp.mu.Unlock()
		qp.cancel()
	}
}

// line handles one stdout line of role: the follower's address, the
// leader's results, and the echo "[role] line".
func (qp *quickstartParties) line(role, line string) {
	if a, ok := strings.CutPrefix(line, "vfl follower: listening on "); ok {
		select {
		case qp.addrCh <- strings.Fields(a)[0]:
		default:
		}
	}
	qp.mu.Lock()
	if m, ok := parseResult(line); ok {
		qp.fed = &m
	}
	if s, ok := strings.CutPrefix(line, psiSummaryPrefix(RoleLeader)); ok && role == RoleLeader {
		qp.psiLine = s
	}
	if s, ok := strings.CutPrefix(line, "vfl leader: model "); ok {
		qp.model = s
	}
	qp.mu.Unlock()
	fmt.Fprintf(qp.out, "[%s] %s\n", role, line)
}

func firstErrOr(mu *sync.Mutex, e *error, def error) error {
	mu.Lock()
	defer mu.Unlock()
	if *e != nil {
		return *e
	}
	return def
}

// parseResult parses the leader's ResultPrefix line.
func parseResult(line string) (split.Metrics, bool) {
	s, ok := strings.CutPrefix(line, ResultPrefix)
	if !ok {
		return split.Metrics{}, false
	}
	f := strings.Fields(s)
	var m split.Metrics
	var err error
	if len(f) < 4 {
		return m, false
	}
	if m.AUC, err = strconv.ParseFloat(f[0], 64); err != nil {
		return m, false
	}
	vals := map[string]*float64{"accuracy": &m.Accuracy, "log_loss": &m.LogLoss}
	for _, kv := range f[1:3] {
		k, v, _ := strings.Cut(kv, "=")
		if p := vals[k]; p != nil {
			if *p, err = strconv.ParseFloat(v, 64); err != nil {
				return m, false
			}
		}
	}
	n := strings.TrimSuffix(strings.TrimPrefix(f[3], "(n="), ")")
	m.N, _ = strconv.Atoi(n)
	if math.IsNaN(m.AUC) {
		return m, false
	}
	return m, true
}

// points is a-b in percentage points, without a negative zero.
func points(a, b float64) float64 {
	d := 100 * (a - b)
	if d == 0 {
		return 0
	}
	return d
}

func refKind(k split.Kind) string {
	if k == split.KindLR {
		return "logreg"
	}
	return "widedeep"
}
