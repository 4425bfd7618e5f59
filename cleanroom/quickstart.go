package cleanroom

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/internal/childlog"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sealed/kmskeys"
	sqlcleanroom "github.com/teeml/teeml/sql/cleanroom"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Demo sizes: customers only the bank has, shared, only the retailer has.
const demoBankOnly, demoShared, demoRetailOnly = 1200, 800, 1000

// OwnerReleasePolicy is owner's key policy: the owner itself (to seal its
// table) and, through the contract only, the contract's analytics party.
func OwnerReleasePolicy(owner, contractSHA256 string) string {
	return partysim.Header("Release policy of "+owner+"'s key: the owner, and the clean-room contract.") +
		fmt.Sprintf("members: [%s]\n", owner) + partysim.Attestation("", "owner") +
		fmt.Sprintf("contracts:\n  - %s\n", contractSHA256)
}

// OwnerSetup is what owner does in the quickstart, as its broker's admin:
// create its key bound to the contract, generate its synthetic table in
// memory and seal it (no plaintext file is written).
func OwnerSetup(ctx context.Context, dir, owner string, out io.Writer) error {
	table := ""
	for _, o := range Owners {
		if o.Name == owner {
			table = o.Table
		}
	}
	if table == "" {
		return fmt.Errorf("cleanroom: %q is not an owner of the quickstart", owner)
	}
	c, err := contract.Load(filepath.Join(dir, ContractFile))
	if err != nil {
		return err
	}
	cfg, err := kms.LoadConfig(OwnerConfig(dir, owner))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := kms.Dial(ctx, cfg, quiet())
	if err != nil {
		return err
	}
	defer cl.Close()
	key := c.Owners[owner].Key
	if _, err := cl.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: key, ReleasePolicy: OwnerReleasePolicy(owner, c.SHA256),
		Description: owner + "'s clean-room table"}); err != nil {
		return fmt.Errorf("%s: create key %s: %w", owner, key, err)
	}
	bank, retail := sqlcleanroom.DemoData(20261207, demoBankOnly, demoShared, demoRetailOnly)
	data := map[string][]byte{"bank": bank, "retailer": retail}[owner]
	if err := sealed.WriteFile(ctx, TablePath(dir, table), 0o600, cl.KeySource(), key, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}); err != nil {
		return fmt.Errorf("%s: seal %s: %w", owner, table, err)
	}
	rows := bytes.Count(data, []byte("\n")) - 1
	fmt.Fprintf(out, "%s: key %s bound to contract %.16s…; sealed %s (%d synthetic customers) to %s\n", owner, key, c.SHA256, table, rows, TablePath(dir, table))
	return nil
}

func start(exe, logPath, prefix string, out io.Writer, args ...string) (*childlog.Proc, error) {
	return childlog.Start(exe, logPath, prefix, out, args...)
}

// startBroker runs owner's `teeml kms serve` and returns its address.
func startBroker(ctx context.Context, exe, dir, owner string, out io.Writer) (*childlog.Proc, string, error) {
	logPath := filepath.Join(dir, "logs", BrokerMember(owner)+".log")
	p, err := start(exe, logPath, BrokerMember(owner), out, "kms", "serve", "--config", BrokerConfig(dir, owner))
	if err != nil {
		return nil, "", err
	}
	addr, err := p.WaitLine(ctx, kms.ServingPrefix, time.Minute)
	if err != nil {
		return nil, "", fmt.Errorf("%s's key broker %w (see %s)", owner, err, logPath)
	}
	return p, strings.TrimSpace(addr), nil
}

// QuickstartOptions configure Quickstart.
type QuickstartOptions struct {
	Dir string // workspace (empty or missing)
	Exe string // the teeml binary the parties run as
	Out io.Writer
}

// Run is one analytics-party run of the quickstart.
type Run struct {
	What    string
	Args    []string
	Refused bool // the run was refused (and was expected to be)
	Files   []string
	Output  string
}

// QuickstartResult is what the quickstart did.
type QuickstartResult struct {
	Contract *contract.Contract
	Runs     []Run
	Approved *sqlcleanroom.Release // the approved join, as the bank opens it
	Audit    map[string][]*audit.Record
}

// Quickstart runs the clean room end to end (see the package comment).
func Quickstart(ctx context.Context, o QuickstartOptions) (*QuickstartResult, error) {
	out := o.Out
	fmt.Fprintln(out, sim.Banner)
	fmt.Fprintf(out, "clean room workspace: %s\n", o.Dir)
	c, err := Setup(ctx, o.Dir)
	if err != nil {
		return nil, err
	}
	res := &QuickstartResult{Contract: c, Audit: map[string][]*audit.Record{}}
	fmt.Fprintf(out, "contract %s: sha256 %s, signed by bank and retailer (%s)\n", c.Name, c.SHA256, SignatureFile)
	fmt.Fprintf(out, "  templates: spend_by_segment, noisy_spend_by_segment (Laplace, ε=1 per query), flagged_shoppers, segment_model (trains a GBDT, releases only the model); k=%d; ε budget %d per owner\n", c.MinGroupSize, QuickstartEpsilon)
	addrs := map[string]string{}
	for _, ow := range Owners {
		p, addr, err := startBroker(ctx, o.Exe, o.Dir, ow.Name, out)
		if err != nil {
			return nil, err
		}
		defer p.Stop()
		addrs[ow.Name] = addr
	}
	if err := WriteClientConfigs(o.Dir, addrs); err != nil {
		return nil, err
	}
	for _, ow := range Owners {
		p, err := start(o.Exe, filepath.Join(o.Dir, "logs", ow.Name+".log"), ow.Name, out, "cleanroom", "owner", "--dir", o.Dir, "--owner", ow.Name)
		if err != nil {
			return nil, err
		}
		if err := p.Wait(ctx); err != nil {
			return nil, fmt.Errorf("owner %s failed (see %s): %w", ow.Name, filepath.Join(o.Dir, "logs", ow.Name+".log"), err)
		}
	}
	base := []string{"cleanroom", "query", "--contract", filepath.Join(o.Dir, ContractFile), "--signatures", filepath.Join(o.Dir, SignatureFile),
		"--out-dir", filepath.Join(o.Dir, ResultsDir)}
	for _, ow := range Owners {
		base = append(base, "--table", ow.Table+"="+TablePath(o.Dir, ow.Table), "--kms", ow.Name+"="+AnalyticsConfig(o.Dir, ow.Name))
	}
	runs := []Run{
		{What: "approved join aggregate", Args: []string{"--template", "spend_by_segment", "--param", "min_balance=1000"}},
		{What: "SQL outside the contract", Args: []string{"--sql", "SELECT * FROM bank_customers"}, Refused: true},
		{What: "noisy aggregate, 1st (ε 1 of 2)", Args: []string{"--template", "noisy_spend_by_segment", "--param", "since=2023-01-01"}},
		{What: "noisy aggregate, 2nd (ε 2 of 2)", Args: []string{"--template", "noisy_spend_by_segment", "--param", "since=2023-01-01"}},
		{What: "noisy aggregate, 3rd (budget spent)", Args: []string{"--template", "noisy_spend_by_segment", "--param", "since=2023-01-01"}, Refused: true},
		{What: "training template: a GBDT on the join, only the model released", Args: []string{"--template", "segment_model"}},
	}
	for i := range runs {
		r := &runs[i]
		fmt.Fprintf(out, "\nanalytics party (a new process each time): %s\n", r.What)
		var buf bytes.Buffer
		logPath := filepath.Join(o.Dir, "logs", fmt.Sprintf("analytics-%d.log", i+1))
		p, err := start(o.Exe, logPath, Analytics, io.MultiWriter(out, &buf), append(append([]string{}, base...), r.Args...)...)
		if err != nil {
			return nil, err
		}
		err = p.Wait(ctx)
		r.Output = buf.String()
		switch {
		case err != nil && !r.Refused:
			return nil, fmt.Errorf("analytics run %q failed (see %s): %w", r.What, logPath, err)
		case err == nil && r.Refused:
			return nil, fmt.Errorf("analytics run %q was not refused", r.What)
		case err != nil:
			reason := lastError(logPath)
			fmt.Fprintf(out, "  refused: %s\n", reason)
			r.Output += reason
		}
		for _, line := range strings.Split(r.Output, "\n") {
			if _, f, ok := strings.Cut(line, ": result sealed to "); ok {
				if _, path, ok := strings.Cut(f, ": "); ok {
					r.Files = append(r.Files, strings.TrimSpace(path))
				}
			}
		}
	}
	res.Runs = runs
	if err := directRefusals(ctx, o.Dir, res, out); err != nil {
		return nil, err
	}
	// The bank opens the approved result with its own key.
	for _, f := range runs[0].Files {
		if strings.HasSuffix(f, ".bank.result") {
			rel, err := OpenResult(f, filepath.Join(o.Dir, ContractFile), RecipientKey(o.Dir, "bank"), "bank")
			if err != nil {
				return nil, err
			}
			res.Approved = rel
		}
	}
	if res.Approved == nil {
		return nil, errors.New("the approved run sealed no result for the bank")
	}
	fmt.Fprintf(out, "\nbank opens its result (%s, query %s):\n", res.Approved.Template, res.Approved.Query)
	w := csv.NewWriter(out)
	w.Write(res.Approved.Columns)
	for _, row := range res.Approved.Values() {
		rec := make([]string, len(row))
		for i, v := range row {
			rec[i] = v.Text
		}
		w.Write(rec)
	}
	w.Flush()
	fmt.Fprintf(out, "(%d group suppressed: fewer than k=%d customers)\n", res.Approved.Suppressed, res.Approved.MinGroupSize)
	for _, ow := range Owners {
		recs, err := ReadAudit(ctx, o.Dir, ow.Name)
		if err != nil {
			return nil, err
		}
		res.Audit[ow.Name] = recs
		fmt.Fprintf(out, "\n%s's key broker audit (hash chain verified, head MAC checked): clean-room decisions\n", ow.Name)
		for _, r := range recs {
			if r.CleanRoom == nil {
				continue
			}
			line := fmt.Sprintf("  %-8s %-7s %s %s", r.Decision, r.Caller.Name, r.CleanRoom.Template, r.CleanRoom.QueryID)
			if r.CleanRoom.EpsilonBudget != "" {
				line += fmt.Sprintf(" ε %s (spent %s of %s)", r.CleanRoom.Epsilon, r.CleanRoom.EpsilonSpent, r.CleanRoom.EpsilonBudget)
			}
			if r.Reason != "" {
				line += " — " + r.Reason
			}
			fmt.Fprintln(out, line)
		}
	}
	leaks, err := ScanPlaintext(o.Dir)
	if err != nil {
		return nil, err
	}
	if len(leaks) > 0 {
		return nil, fmt.Errorf("plaintext customer rows found in the workspace: %s", strings.Join(leaks, ", "))
	}
	fmt.Fprintf(out, "\nworkspace scanned: no file holds a customer row in plaintext\n")
	return res, nil
}

// directRefusals shows the brokers refusing a tampered analytics party
// that skips its own checks and asks the bank's broker directly: for a
// template the contract does not hold, and under the contract changed by
// one byte (min_group_size 5 → 1), re-signed by no one. Neither gets a key.
func directRefusals(ctx context.Context, dir string, res *QuickstartResult, out io.Writer) error {
	sigs, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return err
	}
	raw := res.Contract.Raw
	changed := bytes.Replace(raw, []byte("min_group_size: 5"), []byte("min_group_size: 1"), 1)
	type attempt struct {
		what, template string
		contract       []byte
		params         map[string]string
		owners         []string
	}
	for _, t := range []attempt{
		{"a template not in the contract (dump_customers)", "dump_customers", raw, nil, []string{"bank"}},
		{"the contract changed by one byte (min_group_size: 1)", "spend_by_segment", changed, map[string]string{"min_balance": "0"}, []string{"bank", "retailer"}},
	} {
		fmt.Fprintf(out, "\na tampered analytics party skips its own checks and asks the brokers directly, for %s\n", t.what)
		for _, owner := range t.owners {
			msg, err := askDirectly(ctx, dir, owner, &kmsv1.CleanRoomQuery{Contract: t.contract, Signatures: sigs, Template: t.template, Params: t.params, QueryId: "tampered-0001"})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "  %s's broker refused, no key released: %s\n", owner, msg)
			res.Runs = append(res.Runs, Run{What: "direct to " + owner + ": " + t.what, Refused: true, Output: msg})
		}
	}
	return nil
}

// askDirectly asks owner's broker, as the analytics party, for the key of
// owner's table under q, and returns the refusal (an error if granted).
func askDirectly(ctx context.Context, dir, owner string, q *kmsv1.CleanRoomQuery) (string, error) {
	table := ""
	for _, o := range Owners {
		if o.Name == owner {
			table = o.Table
		}
	}
	f, err := os.Open(TablePath(dir, table))
	if err != nil {
		return "", err
	}
	h, _, err := sealed.ReadHeader(f)
	f.Close()
	if err != nil {
		return "", err
	}
	cfg, err := kms.LoadConfig(AnalyticsConfig(dir, owner))
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cl, err := kms.Dial(ctx, cfg, quiet())
	if err != nil {
		return "", err
	}
	defer cl.Close()
	_, err = cl.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: h.Wrapped, Context: []byte(kmskeys.Context), Cleanroom: q})
	if err == nil {
		return "", fmt.Errorf("%s's broker released its key for template %s", owner, q.Template)
	}
	return status.Convert(err).Message(), nil
}

// lastError is the last "teeml: " (error) line of a child's log.
func lastError(logPath string) string {
	b, _ := os.ReadFile(logPath)
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(l, "teeml: "); ok {
			last = s
		}
	}
	if last == "" {
		return "(see " + logPath + ")"
	}
	return last
}

// ScanPlaintext returns the workspace files holding a demo customer ID in
// plaintext.
func ScanPlaintext(dir string) ([]string, error) {
	var leaks []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("C00000")) {
			leaks = append(leaks, p)
		}
		return nil
	})
	return leaks, err
}

// ReadAudit reads owner's broker audit log as its admin and verifies the
// hash chain up to the MAC-checked head.
func ReadAudit(ctx context.Context, dir, owner string) ([]*audit.Record, error) {
	cfg, err := kms.LoadConfig(OwnerConfig(dir, owner))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cl, err := kms.Dial(ctx, cfg, quiet())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	recs, _, err := cl.VerifiedAudit(ctx)
	if err != nil {
		return nil, err
	}
	return recs, nil
}
