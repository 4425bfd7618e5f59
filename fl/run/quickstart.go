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
	"os/exec"
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

	// Policies: accept exactly the simulated measurement, and simulation.
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
	if o.Template == "" {
		o.Template = DefaultQuickstartTemplate
	}
	if o.Rounds == 0 {
		o.Rounds = DefaultQuickstartRounds
	}
	if o.EpochsPerRound == 0 {
		o.EpochsPerRound = DefaultQuickstartEpochs
	}
	if o.Collaborators == 0 {
		o.Collaborators = DefaultQuickstartCollaborators
	}
	if o.Collaborators < 1 || o.Collaborators > 64 {
		return nil, fmt.Errorf("quickstart: collaborators must be in 1..64, got %d", o.Collaborators)
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
			return nil, err
		}
		o.Executable = exe
	}
	out := &childlog.SyncWriter{W: o.Out}
	fmt.Fprintf(out, "\n!!! %s !!!\n\n", sim.Banner)
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "teeml-quickstart-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	brokerAddr := ""
	if o.Encrypted != nil {
		bp, err := freePort()
		if err != nil {
			return nil, err
		}
		brokerAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(bp))
	}
	names, err := setupSimulated(ctx, dir, o.Template, o.Rounds, o.EpochsPerRound, o.Collaborators, port, o.Encrypted, brokerAddr)
	if err != nil {
		return nil, fmt.Errorf("quickstart: %w", err)
	}
	fmt.Fprintf(out, "workspace %s: template %s, %d collaborators (Dirichlet non-IID shards), %d rounds of %d local epochs, aggregator 127.0.0.1:%d\n",
		dir, o.Template, len(names), o.Rounds, o.EpochsPerRound, port)
	fmt.Fprintf(out, "PKI: CA %s; identities certified on SIMULATED evidence under the workspace policies\n", filepath.Join(dir, "ca"))
	fmt.Fprintf(out, "parties' logs: %s\n", filepath.Join(dir, "logs"))
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	var finish func(context.Context, *QuickstartResult, io.Writer) error
	if o.Encrypted != nil {
		f, stop, err := o.Encrypted.Prepare(ctx, &EncryptedWorkspace{Dir: dir, Collaborators: names, BrokerAddr: brokerAddr, Executable: o.Executable, Out: out})
		if err != nil {
			return nil, fmt.Errorf("quickstart: %w (workspace %s)", err, dir)
		}
		defer stop()
		finish = f
	}

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	type party struct {
		name string
		args []string
	}
	parties := []party{{"aggregator", []string{"fl", "aggregator", "start", "-w", dir}}}
	for _, n := range names {
		parties = append(parties, party{n, []string{"fl", "collaborator", "start", "-w", dir, "-n", n}})
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		model    string
		acc      = -1.0
	)
	for _, pt := range parties {
		logPath := filepath.Join(dir, "logs", pt.name+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		cmd := exec.CommandContext(ctx, o.Executable, pt.args...)
		cmd.Stderr = logf
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 5 * time.Second
		setPdeathsig(cmd)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			logf.Close()
			cancel()
			wg.Wait()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			logf.Close()
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("quickstart: start %s: %v", pt.name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer logf.Close()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if pt.name == "aggregator" {
					if s, ok := strings.CutPrefix(line, FinalModelPrefix); ok {
						mu.Lock()
						model = strings.TrimSpace(s)
						mu.Unlock()
					}
					if s, ok := strings.CutPrefix(line, FinalAccuracyPrefix); ok {
						if f, err := strconv.ParseFloat(strings.Fields(s)[0], 64); err == nil {
							mu.Lock()
							acc = f
							mu.Unlock()
						}
					}
				}
				if pt.name == "aggregator" || !strings.HasPrefix(line, "***") {
					fmt.Fprintf(out, "[%s] %s\n", pt.name, line)
				}
			}
			err := cmd.Wait()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
						err = fmt.Errorf("timed out after %s", o.Timeout)
					}
					firstErr = fmt.Errorf("%s failed: %v%s", pt.name, err, childlog.LastLine(logPath))
				}
				mu.Unlock()
				cancel() // stop every other party
			}
		}()
	}
	wg.Wait()
	if parent.Err() != nil {
		return nil, fmt.Errorf("quickstart: interrupted (%v); every party was stopped (workspace %s)", context.Cause(parent), dir)
	}
	if firstErr != nil {
		return nil, fmt.Errorf("quickstart: %w (workspace %s)", firstErr, dir)
	}
	if model == "" || acc < 0 {
		return nil, fmt.Errorf("quickstart: the aggregator reported no final model (see %s)", filepath.Join(dir, "logs", "aggregator.log"))
	}
	res := &QuickstartResult{Workspace: dir, Model: model, Accuracy: acc, Seconds: time.Since(start).Seconds()}
	fmt.Fprintf(out, "\nfederation done in %.1f s (%d rounds, %d collaborators as separate processes over RA-TLS)\n", res.Seconds, o.Rounds, len(names))
	fmt.Fprintf(out, "workspace kept at %s (remove it when done)\n", dir)
	if finish != nil {
		if err := finish(parent, res, out); err != nil {
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
