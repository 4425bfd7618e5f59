// Package encrypted runs the quickstart federation with data at rest
// encrypted end to end (`teeml quickstart --encrypted`): a key broker (package
// kms) runs as its own process and federation member "kms"; a data key's
// release policy admits exactly the aggregator and the collaborators, with
// the quickstart's (simulated) attestation policy; every collaborator's
// shard is sealed from memory under that key by the collaborator itself; the
// plan's encryption section makes the aggregator write its models and
// checkpoints sealed; and at the end the broker's audit log shows which data
// keys were released to whom, and its hash chain is verified.
//
// It composes two services — horizontal FL (fl/run) and the key broker
// (kms) — which by teeml's import rules (see docs/architecture.md) never
// import each other; this demo package is where they meet.
package encrypted

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	flrun "github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/childlog"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/sealed"
)

// KeyID is the key broker key the encrypted quickstart's plan names.
const KeyID = "fl-data"

// Files of the broker inside the quickstart workspace.
const (
	BrokerConfigFile = "kms.yaml"       // the broker's configuration
	AdminConfigFile  = "kms-admin.yaml" // its administrator's client configuration
	// AggregatorConfigFile is the aggregator's client configuration, for
	// `teeml data decrypt --kms` / `teeml eval --kms` of the sealed models
	// (the administrator is not in the key's release policy).
	AggregatorConfigFile = "kms-aggregator.yaml"
	ReleasePolicy        = "kms/release-fl-data.yaml"
)

// Quickstart is `teeml quickstart --encrypted`.
func Quickstart(ctx context.Context, o flrun.QuickstartOptions) (*flrun.QuickstartResult, error) {
	o.Encrypted = &flrun.QuickstartEncryption{KeyID: KeyID, Prepare: prepare}
	return flrun.Quickstart(ctx, o)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// prepare writes the broker's configuration, starts it, creates the key
// and seals every collaborator's shard and the initial weights.
func prepare(ctx context.Context, q *flrun.EncryptedWorkspace) (func(context.Context, *flrun.QuickstartResult, io.Writer) error, func(), error) {
	dir := q.Dir
	if err := writeConfigs(dir, q.BrokerAddr); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(q.Out, "key broker: member %q (role kms) at %s, configuration %s, SIMULATED root key %s\n",
		flrun.BrokerMember, q.BrokerAddr, filepath.Join(dir, BrokerConfigFile), filepath.Join(dir, "kms", "root.key"))
	stop, err := startBroker(ctx, q.Executable, dir, q.Out)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			stop()
		}
	}()
	members := append([]string{"aggregator"}, q.Collaborators...)
	if err := createKey(ctx, dir, members); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(q.Out, "key %q created; release policy %s: members %s, SIMULATED quickstart measurement\n",
		KeyID, filepath.Join(dir, ReleasePolicy), strings.Join(members, ", "))
	if err := sealShards(ctx, dir, q.Collaborators, q.Out); err != nil {
		return nil, nil, err
	}
	if err := sealInitialWeights(ctx, dir); err != nil {
		return nil, nil, err
	}
	ok = true
	finish := func(ctx context.Context, res *flrun.QuickstartResult, out io.Writer) error {
		return report(ctx, dir, res, out)
	}
	return finish, stop, nil
}

// writeConfigs writes the broker's configuration (its identity, the
// federation, which roles may connect, its evidence platform, a SQLite
// store and a simulated root key) and its administrator's.
func writeConfigs(dir, addr string) error {
	hdr := []byte(partysim.Header("Key broker configuration of the encrypted quickstart (see kms.Config)."))
	if err := os.MkdirAll(filepath.Join(dir, "kms"), 0o700); err != nil {
		return err
	}
	clients := filepath.Join(dir, "policies", "kms-clients.yaml")
	if err := atomicfile.WriteBytes(clients, partysim.Policy("aggregator", "collaborator"), 0o644); err != nil {
		return err
	}
	for _, m := range []struct{ name, file string }{{flrun.BrokerMember, BrokerConfigFile}, {flrun.BrokerAdminMember, AdminConfigFile}, {"aggregator", AggregatorConfigFile}} {
		pc, err := party.LoadConfig(party.ConfigFile(dir, m.name))
		if err != nil {
			return err
		}
		pc.KMS = nil
		c := kms.Config{Name: m.name, Platform: *pc}
		c.Identity.Cert, c.Identity.Key = "pki/"+m.name+".crt", "pki/"+m.name+"-key.pem"
		c.Federation.Root, c.Federation.Bundle = party.RootFile, party.BundleFile
		if m.name == flrun.BrokerMember {
			c.Listen, c.Policy, c.RootKey, c.Admins = addr, "policies/kms-clients.yaml", "file:kms/root.key", []string{flrun.BrokerAdminMember}
			c.Store = store.Config{Driver: "sqlite", Path: "kms/kms.db"}
		} else {
			c.Broker, c.Policy = addr, flrun.BrokerPolicyFile
		}
		b, err := yaml.Marshal(&c)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, m.file), append(hdr, b...), 0o600); err != nil {
			return err
		}
	}
	return rootkey.CreateFile(filepath.Join(dir, "kms", "root.key"))
}

// startBroker runs `teeml kms serve` as its own process (log in
// logs/kms.log, stdout lines copied to out) and waits until it serves;
// stop interrupts it and waits.
func startBroker(ctx context.Context, exe, dir string, out io.Writer) (func(), error) {
	logPath := filepath.Join(dir, "logs", "kms.log")
	p, err := childlog.Start(exe, logPath, "kms", out, "kms", "serve", "--config", filepath.Join(dir, BrokerConfigFile))
	if err != nil {
		return nil, fmt.Errorf("key broker: %w", err)
	}
	if _, err := p.WaitLine(ctx, kms.ServingPrefix, 60*time.Second); err != nil {
		return nil, fmt.Errorf("key broker %w (see %s)", err, logPath)
	}
	return p.Stop, nil
}

// Admin dials the broker as its administrator.
func Admin(ctx context.Context, dir string) (*kms.Client, error) {
	cfg, err := kms.LoadConfig(filepath.Join(dir, AdminConfigFile))
	if err != nil {
		return nil, err
	}
	return kms.Dial(ctx, cfg, quietLog())
}

// ReleasePolicyFor is the release policy of the quickstart's key: the named
// members, running the simulated measurement of the aggregator or of a
// collaborator (party/partysim).
func ReleasePolicyFor(keyID string, members []string) string {
	return partysim.Header("Release policy of key "+keyID+": who may receive its plaintext data keys.") +
		fmt.Sprintf("members: [%s]\n", strings.Join(members, ", ")) + partysim.Attestation("", "aggregator", "collaborator")
}

func createKey(ctx context.Context, dir string, members []string) error {
	src := ReleasePolicyFor(KeyID, members)
	if err := atomicfile.WriteBytes(filepath.Join(dir, ReleasePolicy), []byte(src), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := Admin(ctx, dir)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: KeyID, ReleasePolicy: src, Description: "teeml quickstart --encrypted: collaborators' data, models, checkpoints"}); err != nil {
		return fmt.Errorf("create key %s: %w", KeyID, err)
	}
	return nil
}

// sealShards writes each collaborator's partition of the plan's dataset as
// a sealed CSV, sealed by the collaborator itself (its identity, its
// broker connection) from memory: no plaintext shard reaches the disk.
func sealShards(ctx context.Context, dir string, names []string, out io.Writer) error {
	p, err := workspace.LoadPlan(dir)
	if err != nil {
		return err
	}
	rawTrain, _, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		return err
	}
	parts, err := workspace.Partition(p, rawTrain)
	if err != nil {
		return err
	}
	for i, name := range names {
		if err := SealShard(ctx, dir, name, "collaborator", KeyID, name, parts[i]); err != nil {
			return fmt.Errorf("seal %s's shard: %w", name, err)
		}
		fmt.Fprintf(out, "sealed %s's shard (%d rows) as %s under key %q\n", name, parts[i].N, flrun.EncryptedDataPath(name), KeyID)
	}
	return nil
}

// SealShard writes ds as member name's sealed data file (EncryptedDataPath)
// under key keyID, with data keys released to sealer (role role) by its key
// broker.
func SealShard(ctx context.Context, dir, sealer, role, keyID, name string, ds *datasets.Dataset) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ks, closeKS, err := flrun.PartyKeySource(ctx, dir, sealer, role, quietLog())
	if err != nil {
		return err
	}
	defer closeKS()
	path := filepath.Join(dir, filepath.FromSlash(flrun.EncryptedDataPath(name)))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return sealTo(ctx, path, ks, keyID, func(w io.Writer) error { return workspace.WriteShardCSV(w, ds) })
}

func sealTo(ctx context.Context, path string, ks sealed.KeySource, keyID string, enc func(io.Writer) error) error {
	return sealed.WriteFile(ctx, path, 0o600, ks, keyID, enc)
}

// sealInitialWeights seals the plan's initial weights as the aggregator
// (they hold no data, but then no model file in the workspace is
// plaintext).
func sealInitialWeights(ctx context.Context, dir string) error {
	p, err := workspace.LoadPlan(dir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, filepath.FromSlash(p.Aggregator.InitStatePath))
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ks, closeKS, err := flrun.PartyKeySource(ctx, dir, "aggregator", "aggregator", quietLog())
	if err != nil {
		return err
	}
	defer closeKS()
	return sealTo(ctx, path, ks, KeyID, func(w io.Writer) error { _, err := w.Write(b); return err })
}

// Decision is one audit log entry, as reported.
type Decision struct {
	Seq                         uint64
	Caller, Role, Op, Key       string
	Decision, Reason, Simulated string
}

// ReadAudit reads the broker's whole audit log as its administrator and
// verifies its hash chain up to the stored head (whose MAC the broker
// checks).
func ReadAudit(ctx context.Context, dir string) ([]Decision, *audit.Verifier, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := Admin(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	recs, v, err := c.VerifiedAudit(ctx)
	if err != nil {
		return nil, nil, err
	}
	ds := make([]Decision, len(recs))
	for i, r := range recs {
		ds[i] = Decision{Seq: uint64(i + 1), Caller: r.Caller.Name, Role: r.Caller.Role, Op: r.Op, Key: r.KeyID, Decision: r.Decision, Reason: r.Reason}
		if r.Evidence != nil && r.Evidence.Simulated {
			ds[i].Simulated = "SIMULATED"
		}
	}
	return ds, v, nil
}

// report prints which keys were released to whom, verifies the audit
// chain, and says where the sealed model is and how to use it.
func report(ctx context.Context, dir string, res *flrun.QuickstartResult, out io.Writer) error {
	ds, v, err := ReadAudit(ctx, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nkey broker audit log: which keys were released to whom (%s)\n", filepath.Join(dir, "kms", "kms.db"))
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  SEQ\tCALLER\tROLE\tOPERATION\tKEY\tDECISION\tEVIDENCE\tREASON")
	for _, d := range ds {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, dash(d.Caller), dash(d.Role), d.Op, dash(d.Key), d.Decision, dash(d.Simulated), dash(d.Reason))
	}
	tw.Flush()
	fmt.Fprintf(out, "audit chain OK: %d entries (%d granted, %d refused), head %s, head MAC verified by the broker\n",
		v.Head().Seq, v.Granted, v.Refused, v.Head())
	released := map[string]bool{}
	for _, d := range ds {
		if d.Decision == audit.Granted && (d.Op == kms.OpGenerate || d.Op == kms.OpUnwrap) {
			released[d.Caller] = true
		}
	}
	who := slices.Sorted(func(yield func(string) bool) {
		for k := range released {
			if !yield(k) {
				return
			}
		}
	})
	fmt.Fprintf(out, "data keys of %q were released to: %s\n", KeyID, strings.Join(who, ", "))
	fmt.Fprintf(out, "sealed final model: %s (key %q)\n", res.Model, KeyID)
	if p, err := workspace.LoadPlan(dir); err == nil {
		fmt.Fprintf(out, "evaluate it (the broker must run: teeml kms serve --config %s): teeml eval --kms %s --weights %s --dataset %s\n",
			filepath.Join(dir, BrokerConfigFile), filepath.Join(dir, AggregatorConfigFile), res.Model, p.DataLoader.Dataset)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// IsSealed reports whether b starts with the sealed magic.
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, []byte(sealed.Magic)) }
