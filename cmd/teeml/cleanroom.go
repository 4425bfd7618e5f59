package main

import (
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/cleanroom"
	"github.com/teeml/teeml/cleanroomml"
	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/pki"
)

func newCleanroomCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cleanroom",
		Short: "Data clean room: owners' sealed tables, a signed contract, attested analytics (docs/cleanroom.md)",
		Long: "A data clean room. Each owner seals its tables under its own key broker key, bound to a contract\n" +
			"that every owner signs. The brokers release keys only to the contract's attested analytics party,\n" +
			"for one of its query templates, within each owner's ε budget; results leave only aggregated,\n" +
			"small groups suppressed, noised where the contract says, sealed to the recipients.",
	}
	cmd.AddCommand(newCleanroomQuickstartCmd(), newCleanroomQueryCmd(), newCleanroomOpenCmd(), newCleanroomSignCmd(),
		newCleanroomVerifyCmd(), newCleanroomKeygenCmd(), newCleanroomOwnerCmd())
	return cmd
}

func newCleanroomQuickstartCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "quickstart [--dir D]",
		Short: "two owners (bank, retailer) with their key brokers and an analytics party, as separate processes (SIMULATED attestation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, dir, err := quickstartEnv(dir, "teeml-cleanroom-")
			if err != nil {
				return err
			}
			_, err = cleanroom.Quickstart(cmd.Context(), cleanroom.QuickstartOptions{Dir: dir, Exe: exe, Out: cmd.OutOrStdout()})
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "workspace directory, empty or missing (default: a new temporary directory, kept)")
	return cmd
}

// quickstartEnv is a quickstart's own executable (its parties run it) and
// its workspace: dir, or a new temporary directory (kept).
func quickstartEnv(dir, prefix string) (exe, ws string, err error) {
	if exe, err = os.Executable(); err != nil {
		return "", "", err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", prefix); err != nil {
			return "", "", err
		}
	}
	return exe, dir, nil
}

// kvFlags parses repeated name=value flags.
func kvFlags(what string, list []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range list {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want name=value", what, s)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--%s %s given twice", what, k)
		}
		m[k] = v
	}
	return m, nil
}

func newCleanroomQueryCmd() *cobra.Command {
	var o cleanroom.QueryOptions
	var e engineFlags
	var params, tbls, kmsList []string
	cmd := &cobra.Command{
		Use:   "query --contract C --signatures S (--template T | --sql SQL) [--param k=v]... --table t=F... --kms owner=CONFIG... --out-dir D",
		Short: "run one of the contract's templates as its analytics party; results sealed to the recipients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Params, err = kvFlags("param", params); err != nil {
				return err
			}
			if o.Tables, err = kvFlags("table", tbls); err != nil {
				return err
			}
			if o.KMS, err = kvFlags("kms", kmsList); err != nil {
				return err
			}
			if o.Template == "" && o.SQL == "" {
				return errors.New("give --template NAME or --sql TEXT")
			}
			if o.OutDir == "" {
				return errors.New("--out-dir is required (sealed results are written there)")
			}
			o.Engine, o.Out = e.options(), cmd.OutOrStdout()
			o.Trainer = cleanroomml.Trainer{} // training templates (release: the model only)
			_, err = cleanroom.Query(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Contract, "contract", "", "contract YAML (the exact bytes the owners signed)")
	f.StringVar(&o.Signatures, "signatures", "", "the owners' signatures (PEM; teeml cleanroom sign)")
	f.StringVar(&o.Template, "template", "", "template to run")
	f.StringVar(&o.SQL, "sql", "", "or the SQL text of a template (refused unless it is one)")
	f.StringArrayVar(&params, "param", nil, "template parameter `name=value` (repeatable)")
	f.StringArrayVar(&tbls, "table", nil, "sealed table file `name=path` (repeatable)")
	f.StringArrayVar(&kmsList, "kms", nil, "`owner=CONFIG`: this party's kms client configuration for the owner's key broker (repeatable)")
	f.StringVar(&o.OutDir, "out-dir", "", "directory for the sealed results")
	f.StringVar(&o.QueryID, "query-id", "", "query id (default random; a retried run with the same id is charged ε once)")
	e.register(cmd)
	cmd.MarkFlagRequired("contract")
	cmd.MarkFlagRequired("signatures")
	return cmd
}

func newCleanroomOpenCmd() *cobra.Command {
	var contractPath, key, recipient, modelOut string
	cmd := &cobra.Command{
		Use:   "open --contract C --key K --recipient NAME RESULT",
		Short: "open a sealed result as its recipient and print it as CSV (a training template's model: --model-out)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := cleanroom.OpenResult(args[0], contractPath, key, recipient)
			if err != nil {
				return err
			}
			if r.Model != nil {
				if modelOut == "" {
					return fmt.Errorf("%s holds a model (query %s): give --model-out FILE", args[0], r.QueryID)
				}
				if err := atomicfile.WriteBytes(modelOut, r.Model, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "contract %s (sha256 %.16s…), query %s %s: model written to %s (LightGBM text; teeml predict reads it)\n",
					r.Contract, r.ContractSHA256, r.QueryID, r.Query, modelOut)
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "contract %s (sha256 %.16s…), query %s %s: %d groups, %d suppressed (k=%d)\n",
				r.Contract, r.ContractSHA256, r.QueryID, r.Query, len(r.Rows), r.Suppressed, r.MinGroupSize)
			if r.Epsilon > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "noised (ε=%g): %s\n", r.Epsilon, strings.Join(r.Noised, ", "))
			}
			w := csv.NewWriter(cmd.OutOrStdout())
			w.Write(r.Columns)
			for _, row := range r.Values() {
				rec := make([]string, len(row))
				for i, v := range row {
					rec[i] = v.Text
				}
				w.Write(rec)
			}
			w.Flush()
			return w.Error()
		},
	}
	cmd.Flags().StringVar(&contractPath, "contract", "", "the contract the result was computed under")
	cmd.Flags().StringVar(&key, "key", "", "the recipient's HPKE private key (teeml cleanroom keygen)")
	cmd.Flags().StringVar(&recipient, "recipient", "", "the recipient's member name")
	cmd.Flags().StringVar(&modelOut, "model-out", "", "where to write a training template's model (model.txt)")
	for _, n := range []string{"contract", "key", "recipient"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newCleanroomSignCmd() *cobra.Command {
	var contractPath, cert, key, out string
	cmd := &cobra.Command{
		Use:   "sign --contract C --cert IDENTITY.crt --key IDENTITY-key.pem --out SIG",
		Short: "sign a contract with your federation identity (concatenate the owners' signature files)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := yamlx.ReadFile(contractPath, "contract", contract.MaxSize)
			if err != nil {
				return err
			}
			c, err := contract.Parse(raw, contractPath)
			if err != nil {
				return err
			}
			crt, err := pki.LoadCertificate(cert)
			if err != nil {
				return err
			}
			k, err := pki.LoadKey(key)
			if err != nil {
				return err
			}
			sig, err := contract.Sign(raw, crt, k, time.Now())
			if err != nil {
				return err
			}
			if err := writeNew(out, sig); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s signed contract %s (sha256 %s): %s\n", crt.Subject.CommonName, c.Name, c.SHA256, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&contractPath, "contract", "", "contract YAML")
	cmd.Flags().StringVar(&cert, "cert", "", "your identity certificate")
	cmd.Flags().StringVar(&key, "key", "", "your identity key")
	cmd.Flags().StringVarP(&out, "out", "o", "", "signature file to write")
	for _, n := range []string{"contract", "cert", "key", "out"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

// writeNew writes b to a new file (refusing to overwrite) atomically.
func writeNew(path string, b []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, os.ErrExist)
	}
	return atomicfile.WriteBytes(path, b, 0o644)
}

func newCleanroomVerifyCmd() *cobra.Command {
	var contractPath, sigs, root, bundle string
	cmd := &cobra.Command{
		Use:   "verify --contract C --signatures S --root ROOT.crt --bundle FEDERATION.bundle",
		Short: "check a contract and that every owner signed it (what the brokers check before any release)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := contract.Load(contractPath)
			if err != nil {
				return err
			}
			s, err := contract.LoadSignatures(sigs)
			if err != nil {
				return err
			}
			fed, err := pki.LoadFederation(bundle, root)
			if err != nil {
				return err
			}
			ids, err := contract.VerifySignatures(c, s, fed, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "contract %s: sha256 %s\n", c.Name, c.SHA256)
			for _, o := range sortedNames(ids) {
				fmt.Fprintf(out, "  signed by owner %s (identity serial %s)\n", o, ids[o].Serial)
			}
			for _, name := range sortedNames(c.Templates) {
				t := c.Templates[name]
				noise := "no noise"
				if t.Noise != nil {
					noise = fmt.Sprintf("Laplace ε=%g", t.Noise.Epsilon)
				}
				fmt.Fprintf(out, "  template %s: tables %s, %d parameters, %s\n", name, strings.Join(t.Tables, ", "), len(t.Params), noise)
			}
			if c.Analytics.Policy.Roles[contract.AnalyticsRole].AllowSimulation {
				fmt.Fprintln(out, "  "+sim.Notice("the analytics attestation accepts simulated evidence"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&contractPath, "contract", "", "contract YAML")
	cmd.Flags().StringVar(&sigs, "signatures", "", "signatures file")
	cmd.Flags().StringVar(&root, "root", "", "the federation's pinned root certificate")
	cmd.Flags().StringVar(&bundle, "bundle", "", "the federation bundle (members, CRL)")
	for _, n := range []string{"contract", "signatures", "root", "bundle"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func newCleanroomKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out KEY",
		Short: "make a recipient's HPKE (P-256) key; put the printed public key in the contract's recipients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := cleanroom.GenerateRecipientKey(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "hpke_p256: %s\n", hex.EncodeToString(k.PublicKey().Bytes()))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "private key file to create (mode 0600)")
	cmd.MarkFlagRequired("out")
	return cmd
}

func newCleanroomOwnerCmd() *cobra.Command {
	var dir, owner string
	cmd := &cobra.Command{
		Use:    "owner --dir D --owner NAME",
		Short:  "the quickstart's data owner: create its contract-bound key, seal its synthetic table",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cleanroom.OwnerSetup(cmd.Context(), dir, owner, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "quickstart workspace")
	cmd.Flags().StringVar(&owner, "owner", "", "owner name")
	cmd.MarkFlagRequired("dir")
	cmd.MarkFlagRequired("owner")
	return cmd
}
