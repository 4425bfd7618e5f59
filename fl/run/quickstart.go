package run

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/childlog"
	"github.com/teeml/teeml/party/partysim"
)

// Quickstart defaults.
const (
	DefaultQuickstartTemplate      = "digits_cnn"
	DefaultQuickstartRounds        = 8
	DefaultQuickstartCollaborators = 3
	DefaultQuickstartAlpha         = 0.5
	DefaultQuickstartEpochs        = 5
)

// QuickstartOptions configures Quickstart.
type QuickstartOptions struct {
	// Dir is the workspace to create (must not exist or be empty); empty
	// means a new temporary directory.
	Dir           string
	Template      string
	Rounds        int
	Collaborators int
	// EpochsPerRound is collaborator.epochs_per_round (default
	// DefaultQuickstartEpochs).
	EpochsPerRound int
	// Executable is the teeml binary the parties run as (default
	// os.Executable()).
	Executable string
	// Timeout bounds the whole federation (default 5 minutes).
	Timeout time.Duration
	Out     io.Writer
	Logger  *slog.Logger
	// Encrypted, if set, encrypts data, models and checkpoints at rest
	// under keys of a key broker (teeml quickstart --encrypted).
	Encrypted *QuickstartEncryption
}

// QuickstartResult is what a quickstart federation produced.
type QuickstartResult struct {
	Workspace string
	Model     string  // final global model (safetensors)
	Accuracy  float64 // its held-out test accuracy
	Seconds   float64
}

// SetupSimulated creates a complete simulated federation workspace in dir:
// the template's plan with one Dirichlet shard per collaborator and the given
// rounds, the aggregator at 127.0.0.1:port, policies accepting the
// simulated measurements (party/partysim), a CA (dir/ca), every party's
// sim key, identity key and certificate, the bundle and pinned root, and
// party/*.yaml. It
// returns the collaborator names.
func SetupSimulated(ctx context.Context, dir, template string, rounds, epochs, n, port int) ([]string, error) {
	return setupSimulated(ctx, dir, template, rounds, epochs, n, port, nil, "")
}

func setupSimulated(ctx context.Context, dir, template string, rounds, epochs, n, port int, enc *QuickstartEncryption, brokerAddr string) ([]string, error) {
	if err := workspace.Create(dir, template); err != nil {
		return nil, err
	}
	planPath := filepath.Join(dir, filepath.FromSlash(workspace.PlanFile))
	p, err := plan.LoadUnfrozen(planPath)
	if err != nil {
		return nil, err
	}
	p.Aggregator.RoundsToTrain = rounds
	if epochs > 0 {
		p.Collaborator.EpochsPerRound = epochs
	}
	p.DataLoader.Partitioning.Shards = n
	if p.DataLoader.Partitioning.Kind != "dirichlet" {
		p.DataLoader.Partitioning.Kind = "dirichlet"
		p.DataLoader.Partitioning.Alpha = DefaultQuickstartAlpha
	}
	p.Network.RoundTimeout = 2 * time.Minute
	enc.encryptPlan(p)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(planPath, p.Canonical(), 0o644); err != nil {
		return nil, err
	}

	// Policies: per role, accept exactly that role's simulated measurement
	// (partysim.Measurement), and simulation.
	for _, role := range []string{"aggregator", "collaborator"} {
		y := string(partysim.Policy(role))
		path := filepath.Join(dir, filepath.FromSlash(p.Attestation.Policy[role]))
		if err := atomicfile.WriteBytes(path, []byte(y), 0o644); err != nil {
			return nil, err
		}
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("col-%d", i+1)
		if err := workspace.AddCollaborator(dir, names[i], enc.dataPath(names[i], i)); err != nil {
			return nil, err
		}
	}
	if _, err := workspace.InitPlan(dir, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		return nil, err
	}
	p, err = workspace.LoadPlan(dir)
	if err != nil {
		return nil, err
	}
	pols, err := workspace.LoadPolicies(dir, p)
	if err != nil {
		return nil, err
	}

	roles := map[string]string{"aggregator": "aggregator"}
	for _, n := range names {
		roles[n] = "collaborator"
	}
	if pols, err = enc.addBroker(dir, roles, pols); err != nil {
		return nil, err
	}
	if err := partysim.Federation(ctx, dir, "quickstart", roles, pols); err != nil {
		return nil, err
	}
	if err := enc.addKMSSections(dir, brokerAddr, roles); err != nil {
		return nil, err
	}
	return names, nil
}

// freePort returns a TCP port free on 127.0.0.1 at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Quickstart is `teeml quickstart`: a complete simulated federation on this
// machine. It sets up a workspace (SetupSimulated), runs the aggregator and
// every collaborator as separate processes of Executable over loopback
// RA-TLS, relays the aggregator's progress, and returns the final model and
// accuracy. If any party fails, or ctx ends, every other party is stopped.
func Quickstart(ctx context.Context, o QuickstartOptions) (*QuickstartResult, error) {
	start := time.Now()
	if err := o.defaults(); err != nil {
		return nil, err
	}
	out := &childlog.SyncWriter{W: o.Out}
	fmt.Fprintf(out, "\n!!! %s !!!\n\n", sim.Banner)
	q, err := newQuickstartWorkspace(ctx, &o, out)
	if err != nil {
		return nil, err
	}
	dir := q.dir
	var finish func(context.Context, *QuickstartResult, io.Writer) error
	if o.Encrypted != nil {
		f, stop, err := o.Encrypted.Prepare(ctx, &EncryptedWorkspace{Dir: dir, Collaborators: q.names, BrokerAddr: q.brokerAddr, Executable: o.Executable, Out: out})
		if err != nil {
			return nil, fmt.Errorf("quickstart: %w (workspace %s)", err, dir)
		}
		defer stop()
		finish = f
	}
	model, acc, err := runQuickstartParties(ctx, &o, dir, q.names, out)
	if err != nil {
		return nil, err
	}
	res := &QuickstartResult{Workspace: dir, Model: model, Accuracy: acc, Seconds: time.Since(start).Seconds()}
	fmt.Fprintf(out, "\nfederation done in %.1f s (%d rounds, %d collaborators as separate processes over RA-TLS)\n", res.Seconds, o.Rounds, len(q.names))
	fmt.Fprintf(out, "workspace kept at %s (remove it when done)\n", dir)
	if finish != nil {
		if err := finish(ctx, res, out); err != nil {
			return nil, fmt.Errorf("quickstart: %w (workspace %s)", err, dir)
		}
	} else if p, err := workspace.LoadPlan(dir); err == nil && p.TaskRunner.Model != plan.ModelExternal {
		fmt.Fprintf(out, "evaluate again with: teeml eval --weights %s --dataset digits\n", model)
	}
	if hash, err := plan.ReadHashFile(filepath.Join(dir, filepath.FromSlash(workspace.HashFile))); err == nil {
		rd := RunDir(dir, hash)
		fmt.Fprintf(out, "metrics of every round and participant: %s\n", MetricsFile(dir, hash))
		fmt.Fprintf(out, "plot and summary table: teeml fl report %s\n", rd)
	}
	fmt.Fprintf(out, "%s%s\n", FinalModelPrefix, model)
	fmt.Fprintf(out, "final accuracy: %.4f\n", acc)
	fmt.Fprintf(out, "(%s)\n", sim.Banner)
	return res, nil
}

// defaults fills o's defaults and checks it.
func (o *QuickstartOptions) defaults() error {
	if o.Template == "" {
		o.Template = DefaultQuickstartTemplate
	}
	if o.Rounds == 0 {
		o.Rounds = DefaultQuickstartRounds
		if b, err := workspace.TemplatePlan(o.Template); err == nil {
			if p, err := plan.Parse(b, o.Template); err == nil && plan.IsTreeModel(p.TaskRunner.Model) {
				o.Rounds = 1 // trees: grow, then merge (fl/treefed)
			}
		}
	}
	if o.EpochsPerRound == 0 {
		o.EpochsPerRound = DefaultQuickstartEpochs
	}
	if o.Collaborators == 0 {
		o.Collaborators = DefaultQuickstartCollaborators
	}
	if o.Collaborators < 1 || o.Collaborators > 64 {
		return fmt.Errorf("quickstart: collaborators must be in 1..64, got %d", o.Collaborators)
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("quickstart: %w", err)
		}
		o.Executable = exe
	}
	return nil
}

// quickstartWorkspace is a set-up quickstart workspace.
type quickstartWorkspace struct {
	dir        string
	names      []string // collaborators
	brokerAddr string   // encrypted only
}

// newQuickstartWorkspace creates the workspace (SetupSimulated) with free
// loopback ports for the aggregator and the key broker.
func newQuickstartWorkspace(ctx context.Context, o *QuickstartOptions, out io.Writer) (*quickstartWorkspace, error) {
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "teeml-quickstart-")
		if err != nil {
			return nil, fmt.Errorf("quickstart: %w", err)
		}
		dir = d
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("quickstart: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("quickstart: %w", err)
	}
	q := &quickstartWorkspace{dir: dir}
	if o.Encrypted != nil {
		bp, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("quickstart: %w", err)
		}
		q.brokerAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(bp))
	}
	q.names, err = setupSimulated(ctx, dir, o.Template, o.Rounds, o.EpochsPerRound, o.Collaborators, port, o.Encrypted, q.brokerAddr)
	if err != nil {
		return nil, fmt.Errorf("quickstart: %w", err)
	}
	fmt.Fprintf(out, "workspace %s: template %s, %d collaborators (Dirichlet non-IID shards), %d rounds of %d local epochs, aggregator 127.0.0.1:%d\n",
		dir, o.Template, len(q.names), o.Rounds, o.EpochsPerRound, port)
	fmt.Fprintf(out, "PKI: CA %s; identities certified on SIMULATED evidence under the workspace policies\n", filepath.Join(dir, "ca"))
	fmt.Fprintf(out, "parties' logs: %s\n", filepath.Join(dir, "logs"))
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("quickstart: %w", err)
	}
	return q, nil
}

// quickstartRun collects what the parties' processes report.
type quickstartRun struct {
	mu       sync.Mutex
	firstErr error
	model    string
	acc      float64
}

// runQuickstartParties runs the aggregator and every collaborator as
// processes of o.Executable, relays their output and returns the final
// model and accuracy the aggregator reports. The first party to fail stops
// every other.
func runQuickstartParties(parent context.Context, o *QuickstartOptions, dir string, names []string, out io.Writer) (string, float64, error) {
	ctx, cancel := context.WithTimeout(parent, o.Timeout)
	defer cancel()
	parties := [][]string{{"aggregator", "fl", "aggregator", "start", "-w", dir}}
	for _, n := range names {
		parties = append(parties, []string{n, "fl", "collaborator", "start", "-w", dir, "-n", n})
	}
	r := &quickstartRun{acc: -1}
	var wg sync.WaitGroup
	for _, pt := range parties {
		wait, err := r.start(ctx, o, dir, pt[0], pt[1:], out, cancel)
		if err != nil {
			cancel()
			wg.Wait()
			return "", 0, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); wait() }()
	}
	wg.Wait()
	if parent.Err() != nil {
		return "", 0, fmt.Errorf("quickstart: interrupted (%w); every party was stopped (workspace %s)", context.Cause(parent), dir)
	}
	if r.firstErr != nil {
		return "", 0, fmt.Errorf("quickstart: %w (workspace %s)", r.firstErr, dir)
	}
	if r.model == "" || r.acc < 0 {
		return "", 0, fmt.Errorf("quickstart: the aggregator reported no final model (see %s)", filepath.Join(dir, "logs", "aggregator.log"))
	}
	return r.model, r.acc, nil
}

// start starts party name's process (stderr to logs/<name>.log) and
// returns the function that relays its stdout and waits for it; a failure
// is recorded and cancels the others.
func (r *quickstartRun) start(ctx context.Context, o *QuickstartOptions, dir, name string, args []string, out io.Writer, cancel func()) (func(), error) {
	logPath := filepath.Join(dir, "logs", name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("quickstart: %w", err)
	}
	cmd := childlog.Command(ctx, o.Executable, args...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("quickstart: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("quickstart: start %s: %w", name, err)
	}
	return func() {
		defer logf.Close()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.relay(name, sc.Text(), out)
		}
		if err := cmd.Wait(); err != nil {
			r.mu.Lock()
			if r.firstErr == nil {
				if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
					err = fmt.Errorf("timed out after %s", o.Timeout)
				}
				r.firstErr = fmt.Errorf("%s failed: %w%s", name, err, childlog.LastLine(logPath))
			}
			r.mu.Unlock()
			cancel() // stop every other party
		}
	}, nil
}

// relay prints a party's output line (collaborators' banners are left
// out: the aggregator's is enough) and picks up the aggregator's result.
func (r *quickstartRun) relay(name, line string, out io.Writer) {
	if name == "aggregator" {
		if s, ok := strings.CutPrefix(line, FinalModelPrefix); ok {
			r.mu.Lock()
			r.model = strings.TrimSpace(s)
			r.mu.Unlock()
		}
		if s, ok := strings.CutPrefix(line, FinalAccuracyPrefix); ok {
			if fs := strings.Fields(s); len(fs) > 0 {
				if f, err := strconv.ParseFloat(fs[0], 64); err == nil {
					r.mu.Lock()
					r.acc = f
					r.mu.Unlock()
				}
			}
		}
	}
	if name == "aggregator" || !strings.HasPrefix(line, "***") {
		fmt.Fprintf(out, "[%s] %s\n", name, line)
	}
}
