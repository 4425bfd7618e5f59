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
	fmt.Fprintf(out, "\n!!! %s !!!\n\n", SimBanner)
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
	fmt.Fprintf(out, "directory kept at %s (remove it when done)\n(%s)\n", root, SimBanner)
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

	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		fed      *split.Metrics
		model    string
		psiLine  string
	)
	addrCh := make(chan string, 1)
	start := func(role string, args []string) error {
		logPath := filepath.Join(dir, "logs", role+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, o.Executable, append([]string{"--log-level", o.LogLevel, "vfl", role, "--plan", planFile}, args...)...)
		cmd.Stderr = logf
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 5 * time.Second
		setPdeathsig(cmd)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			logf.Close()
			return err
		}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %v", role, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer logf.Close()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if a, ok := strings.CutPrefix(line, "vfl follower: listening on "); ok {
					select {
					case addrCh <- strings.Fields(a)[0]:
					default:
					}
				}
				if m, ok := parseResult(line); ok {
					mu.Lock()
					fed = &m
					mu.Unlock()
				}
				if s, ok := strings.CutPrefix(line, psiSummaryPrefix(RoleLeader)); ok && role == RoleLeader {
					mu.Lock()
					psiLine = s
					mu.Unlock()
				}
				if s, ok := strings.CutPrefix(line, "vfl leader: model "); ok {
					mu.Lock()
					model = s
					mu.Unlock()
				}
				fmt.Fprintf(out, "[%s] %s\n", role, line)
			}
			if err := cmd.Wait(); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s failed: %v%s", role, err, childlog.LastLine(logPath))
				}
				mu.Unlock()
				cancel()
			}
		}()
		return nil
	}
	if err := start(RoleFollower, []string{"--listen", "127.0.0.1:0"}); err != nil {
		cancel()
		wg.Wait()
		return nil, err
	}
	var addr string
	select {
	case addr = <-addrCh:
	case <-ctx.Done():
		wg.Wait()
		return nil, fmt.Errorf("quickstart %s: the follower never listened: %v", ds, firstErrOr(&mu, &firstErr, ctx.Err()))
	}
	if err := start(RoleLeader, []string{"--peer", addr}); err != nil {
		cancel()
		wg.Wait()
		return nil, err
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("quickstart %s: %w (directory %s)", ds, firstErr, dir)
	}
	if fed == nil {
		return nil, fmt.Errorf("quickstart %s: the leader reported no test metrics (see %s)", ds, filepath.Join(dir, "logs", "leader.log"))
	}
	if psiLine == "" {
		return nil, fmt.Errorf("quickstart %s: the leader reported no PSI summary (see %s)", ds, filepath.Join(dir, "logs", "leader.log"))
	}
	fmt.Fprintf(out, "== %s: PSI %s\n", ds, psiLine)
	fmt.Fprintf(out, "== %s: centralised baseline: the same model on the same common rows, both halves in one process\n", ds)
	l, _, err := RunInProcess(ctx, planFile, filepath.Join(dir, "centralised"), o.Logger)
	if err != nil {
		return nil, fmt.Errorf("quickstart %s: centralised baseline: %w", ds, err)
	}
	c := *l.Metrics
	fmt.Fprintf(out, "== %s: federated test AUC %.4f (accuracy %.4f, log-loss %.4f); centralised AUC %.4f (accuracy %.4f, log-loss %.4f); difference %+.2f points\n",
		ds, fed.AUC, fed.Accuracy, fed.LogLoss, c.AUC, c.Accuracy, c.LogLoss, points(fed.AUC, c.AUC))
	pl, err := plan.Load(planFile)
	if err != nil {
		return nil, err
	}
	ref, err := ReferenceJoined(ctx, pl)
	if err != nil {
		return nil, fmt.Errorf("quickstart %s: joined-table reference: %w", ds, err)
	}
	fmt.Fprintf(out, "== %s: reference: teeml's non-split %s model (GoMLX) on the joined table (same rows, split, epochs, batch, learning rate): AUC %.4f (accuracy %.4f, log-loss %.4f)\n",
		ds, refKind(pl.Model.Kind), ref.AUC, ref.Accuracy, ref.LogLoss)
	return &QuickstartRun{Dataset: ds, Plan: planFile, Federated: *fed, Centralised: c, Reference: ref, LeaderModel: model, PSI: psiLine}, nil
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
