package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest/ear"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/dashboard/wsdash"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/store"
)

func newKMSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "kms", Short: "Key broker: data keys released only to attested TEEs, with a verifiable audit log"}
	cmd.AddCommand(newKMSServeCmd(), newKMSSetupSimCmd(), newKMSRootKeyCmd(), newKMSKeyCmd(), newKMSDataKeyCmd(),
		newKMSUnwrapCmd("unwrap", "Unwrap a wrapped data key (only if this party satisfies the key's release policy)"),
		newKMSUnwrapCmd("rewrap", "Re-encrypt a wrapped data key under the key's newest version"),
		newKMSAuditCmd())
	return cmd
}

func newKMSServeCmd() *cobra.Command {
	var config, uiAddr string
	var adopt bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the key broker over mutual RA-TLS (gRPC) until interrupted",
		Long: "Reads everything from the configuration file (see docs/kms.md): listen address, identity,\n" +
			"federation bundle and pinned root, the connection policy for callers, the evidence platform,\n" +
			"the store (sqlite or postgres) and the root key. Simulation is announced on stdout and in the log.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := kms.LoadConfig(config)
			if err != nil {
				return err
			}
			so := kms.ServeOptions{Out: cmd.OutOrStdout(), Logger: slog.Default(), RootKeyOpener: kms.OpenRootKey, AdoptHead: adopt}
			if uiAddr != "" {
				so.UI = func(ctx context.Context, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (func(), error) {
					ui, err := wsdash.StartBroker(ctx, wsdash.BrokerOptions{KMSConfig: config, Addr: uiAddr, GetCertificate: getCert,
						Out: cmd.OutOrStdout(), Logger: slog.Default()})
					if err != nil {
						return nil, err
					}
					return func() { ui.Close() }, nil
				}
			}
			return kms.Serve(cmd.Context(), c, so)
		},
	}
	cmd.Flags().StringVar(&config, "config", "kms.yaml", "broker configuration file")
	cmd.Flags().StringVar(&uiAddr, "ui-addr", "", "also serve the web dashboard of the broker (keys, policies, audit log and its verification; HTTPS, read-only), e.g. 127.0.0.1:8444")
	cmd.Flags().BoolVar(&adopt, "adopt-audit-head", false, "accept a store with audit entries but no audit anchor yet (new replica, upgrade) and anchor its head; check the head against a witness first")
	return cmd
}

func newKMSSetupSimCmd() *cobra.Command {
	var dir, listen, dsn, schema string
	var clients []string
	cmd := &cobra.Command{
		Use:   "setup-sim",
		Short: "Write a SIMULATED key broker deployment (CA, identities, policies, configurations) for trying it out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := kms.SetupOptions{Listen: listen, Clients: clients}
			if dsn != "" {
				o.Store = store.Config{Driver: "postgres", DSN: dsn, Schema: schema}
			}
			if err := kms.SetupSimulated(cmd.Context(), dir, o); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "*** %s ***\n", sim.Banner)
			fmt.Fprintf(out, "wrote %s: broker kms.yaml, clients admin.yaml %s, release policy release.yaml\n", dir, joinYAML(clients))
			fmt.Fprintf(out, "next: teeml kms serve --config %s/kms.yaml\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create (must not exist or be empty)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7443", "broker address")
	cmd.Flags().StringSliceVar(&clients, "client", []string{"col-1"}, "client member names (role collaborator)")
	cmd.Flags().StringVar(&dsn, "postgres-dsn", "", "use this PostgreSQL database instead of SQLite")
	cmd.Flags().StringVar(&schema, "postgres-schema", "", "PostgreSQL schema (default teeml_kms)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func joinYAML(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += " "
		}
		s += n + ".yaml"
	}
	return s
}

// clientFlags are the flags every client verb shares.
type clientFlags struct {
	config  string
	timeout time.Duration
}

func (f *clientFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "", "client configuration file (identity, federation, policy for the broker)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline for the whole operation")
	_ = cmd.MarkFlagRequired("config")
}

// with dials the broker and runs f within the timeout.
func (f *clientFlags) with(cmd *cobra.Command, fn func(ctx context.Context, c *kms.Client) error) error {
	cfg, err := kms.LoadConfig(f.config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	c, err := kms.Dial(ctx, cfg, slog.Default())
	if err != nil {
		return err
	}
	defer c.Close()
	if c.Simulated {
		fmt.Fprintf(cmd.ErrOrStderr(), "*** %s ***\n", sim.Banner)
	}
	if err := fn(ctx, c); err != nil {
		if st, ok := status.FromError(err); ok {
			return errors.New(st.Message())
		}
		return err
	}
	return nil
}

func printAudit(w io.Writer, a *kmsv1.AuditRef) {
	if a != nil {
		fmt.Fprintf(w, "audit: %s\n", audit.Head{Seq: a.Seq, Hash: a.Hash})
	}
}

func printKey(w io.Writer, k *kmsv1.KeyInfo) {
	fmt.Fprintf(w, "key %s: %s, version %d, release policy sha256 %s\n", k.KeyId, k.State, k.CurrentVersion, k.ReleasePolicySha256)
}

func newKMSKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage primary keys (admin)"}
	var cf clientFlags
	var id, policyFile, desc string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a primary key with a release policy (YAML: members, roles, attestation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := yamlx.ReadFile(policyFile, "release policy", 0)
			if err != nil {
				return err
			}
			if _, err := kms.ParseReleasePolicy(string(pol)); err != nil {
				return fmt.Errorf("%s: %w", policyFile, err)
			}
			return cf.with(cmd, func(ctx context.Context, c *kms.Client) error {
				r, err := c.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: id, ReleasePolicy: string(pol), Description: desc})
				if err != nil {
					return err
				}
				printKey(cmd.OutOrStdout(), r.Key)
				printAudit(cmd.OutOrStdout(), r.Audit)
				return nil
			})
		},
	}
	cf.add(create)
	create.Flags().StringVar(&id, "key", "", "key id")
	create.Flags().StringVar(&policyFile, "policy", "", "release policy file")
	create.Flags().StringVar(&desc, "description", "", "description")
	_ = create.MarkFlagRequired("key")
	_ = create.MarkFlagRequired("policy")

	var lf clientFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List keys (metadata only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return lf.with(cmd, func(ctx context.Context, c *kms.Client) error {
				r, err := c.ListKeys(ctx, &kmsv1.ListKeysRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tSTATE\tVERSION\tPOLICY SHA256\tUPDATED\tDESCRIPTION")
				for _, k := range r.Keys {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%.16s…\t%s\t%s\n", k.KeyId, k.State, k.CurrentVersion, k.ReleasePolicySha256,
						time.Unix(k.UpdatedUnix, 0).UTC().Format(time.RFC3339), k.Description)
				}
				tw.Flush()
				printAudit(cmd.OutOrStdout(), r.Audit)
				return nil
			})
		},
	}
	lf.add(list)
	cmd.AddCommand(create, list)
	for _, v := range []struct {
		use, short string
		call       func(kmsv1.KeyBrokerClient) func(context.Context, *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error)
	}{
		{"rotate", "Add a new key version (old wrapped keys still unwrap; teeml kms rewrap moves them)", func(c kmsv1.KeyBrokerClient) func(context.Context, *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) {
			return func(ctx context.Context, r *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) { return c.RotateKey(ctx, r) }
		}},
		{"disable", "Refuse every data key operation on the key until enabled", func(c kmsv1.KeyBrokerClient) func(context.Context, *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) {
			return func(ctx context.Context, r *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) {
				return c.DisableKey(ctx, r)
			}
		}},
		{"enable", "Enable a disabled key", func(c kmsv1.KeyBrokerClient) func(context.Context, *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) {
			return func(ctx context.Context, r *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) { return c.EnableKey(ctx, r) }
		}},
		{"destroy", "Erase every version of the key: its wrapped data keys become undecryptable (needs --yes)", func(c kmsv1.KeyBrokerClient) func(context.Context, *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) {
			return func(ctx context.Context, r *kmsv1.KeyRequest) (*kmsv1.KeyResponse, error) {
				return c.DestroyKey(ctx, r)
			}
		}},
	} {
		var f clientFlags
		var key string
		var yes bool
		sub := &cobra.Command{
			Use:   v.use,
			Short: v.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				if v.use == "destroy" && !yes {
					return fmt.Errorf("kms key destroy %s: irreversible; pass --yes", key)
				}
				return f.with(cmd, func(ctx context.Context, c *kms.Client) error {
					r, err := v.call(c.KeyBrokerClient)(ctx, &kmsv1.KeyRequest{KeyId: key})
					if err != nil {
						return err
					}
					printKey(cmd.OutOrStdout(), r.Key)
					printAudit(cmd.OutOrStdout(), r.Audit)
					return nil
				})
			},
		}
		f.add(sub)
		sub.Flags().StringVar(&key, "key", "", "key id")
		_ = sub.MarkFlagRequired("key")
		if v.use == "destroy" {
			sub.Flags().BoolVar(&yes, "yes", false, "confirm destruction")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func newKMSDataKeyCmd() *cobra.Command {
	var cf clientFlags
	var key, out, plainOut, dctx, result string
	cmd := &cobra.Command{
		Use:   "datakey",
		Short: "Generate an AES-256 data key: write it wrapped (and, if asked and allowed, in plaintext)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := readAttestationResult(result)
			if err != nil {
				return err
			}
			return cf.with(cmd, func(ctx context.Context, c *kms.Client) error {
				r, err := c.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, Context: []byte(dctx), WithPlaintext: plainOut != "", AttestationResult: tok})
				if err != nil {
					return err
				}
				if err := atomicfile.WriteBytes(out, r.Wrapped, 0o644); err != nil {
					return err
				}
				if plainOut != "" {
					if err := atomicfile.WriteBytes(plainOut, r.Plaintext, 0o600); err != nil {
						return err
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "data key under %s version %d: wrapped %s", r.KeyId, r.KeyVersion, out)
				if plainOut != "" {
					fmt.Fprintf(cmd.OutOrStdout(), ", plaintext %s (0600)", plainOut)
				}
				fmt.Fprintln(cmd.OutOrStdout())
				printAudit(cmd.OutOrStdout(), r.Audit)
				return nil
			})
		},
	}
	cf.add(cmd)
	cmd.Flags().StringVar(&key, "key", "", "primary key id")
	cmd.Flags().StringVar(&out, "out", "", "file for the wrapped data key")
	cmd.Flags().StringVar(&plainOut, "plaintext-out", "", "file for the plaintext data key (0600); omitted: not requested")
	cmd.Flags().StringVar(&dctx, "context", "", "authenticated context bound to the wrapped key (needed again to unwrap)")
	cmd.Flags().StringVar(&result, "attestation-result", "", attestationResultUsage)
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

const attestationResultUsage = "file with an EAR token (teeml attest verify --output ear) from a verifier the broker trusts, bound to this member's identity key, sent instead of relying on the connection's evidence (keys with accept_ear)"

// readAttestationResult reads an EAR token file ("" for none).
func readAttestationResult(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--attestation-result: %w", err)
	}
	if len(b) > ear.MaxTokenSize {
		return "", fmt.Errorf("--attestation-result %s: %d bytes, at most %d", path, len(b), ear.MaxTokenSize)
	}
	tok := strings.TrimSpace(string(b))
	if strings.Count(tok, ".") != 2 {
		return "", fmt.Errorf("--attestation-result %s: not a JWT (three dot-separated parts)", path)
	}
	return tok, nil
}

func newKMSUnwrapCmd(use, short string) *cobra.Command {
	var cf clientFlags
	var in, out, dctx, result string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := os.ReadFile(in)
			if err != nil {
				return fmt.Errorf("wrapped key: %w", err)
			}
			if _, err := kms.ParseWrapped(w); err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			tok, err := readAttestationResult(result)
			if err != nil {
				return err
			}
			return cf.with(cmd, func(ctx context.Context, c *kms.Client) error {
				req := &kmsv1.UnwrapRequest{Wrapped: w, Context: []byte(dctx), AttestationResult: tok}
				if use == "unwrap" {
					r, err := c.Unwrap(ctx, req)
					if err != nil {
						return err
					}
					if err := atomicfile.WriteBytes(out, r.Plaintext, 0o600); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "data key under %s version %d: plaintext %s (0600)\n", r.KeyId, r.KeyVersion, out)
					printAudit(cmd.OutOrStdout(), r.Audit)
					return nil
				}
				r, err := c.Rewrap(ctx, req)
				if err != nil {
					return err
				}
				if err := atomicfile.WriteBytes(out, r.Wrapped, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "data key rewrapped under %s version %d: %s\n", r.KeyId, r.KeyVersion, out)
				printAudit(cmd.OutOrStdout(), r.Audit)
				return nil
			})
		},
	}
	cf.add(cmd)
	cmd.Flags().StringVar(&in, "in", "", "wrapped data key file")
	cmd.Flags().StringVar(&out, "out", "", "output file")
	cmd.Flags().StringVar(&dctx, "context", "", "the context given when the key was generated")
	cmd.Flags().StringVar(&result, "attestation-result", "", attestationResultUsage)
	_ = cmd.MarkFlagRequired("in")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newKMSAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the broker's hash-chained audit log"}
	var sf clientFlags
	var from uint64
	var asJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print audit entries (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return sf.with(cmd, func(ctx context.Context, c *kms.Client) error {
				return c.StreamAudit(ctx, from, func(e audit.Entry) error {
					if asJSON {
						_, err := fmt.Fprintf(cmd.OutOrStdout(), "{\"seq\":%d,\"hash\":\"%s\",\"entry\":%s}\n", e.Seq, hex.EncodeToString(e.Hash), e.Body)
						return err
					}
					r, err := audit.Decode(e.Body)
					if err != nil {
						return fmt.Errorf("audit entry %d: %w", e.Seq, err)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%d %s %s %s %s", e.Seq, r.Time, r.Decision, r.Op, orDash(r.Caller.Name))
					if r.KeyID != "" {
						fmt.Fprintf(cmd.OutOrStdout(), " key=%s/v%d", r.KeyID, r.KeyVersion)
					}
					if r.Evidence != nil {
						fmt.Fprintf(cmd.OutOrStdout(), " tee=%s measurement=%.16s… simulated=%v debug=%v", r.Evidence.TEE, r.Evidence.Measurement, r.Evidence.Simulated, r.Evidence.Debug)
					}
					if r.Reason != "" {
						b, _ := json.Marshal(r.Reason)
						fmt.Fprintf(cmd.OutOrStdout(), " reason=%s", b)
					}
					fmt.Fprintln(cmd.OutOrStdout())
					return nil
				}, nil)
			})
		},
	}
	sf.add(show)
	show.Flags().Uint64Var(&from, "from", 1, "first entry")
	show.Flags().BoolVar(&asJSON, "json", false, "one JSON object per entry")

	var vf clientFlags
	var witnesses []string
	var local bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit chain: detects edited, inserted, deleted and truncated entries",
		Long: "By default the chain is fetched from the broker (admin) and verified here; the broker checks the\n" +
			"head's MAC under its root key. With --local, --config is the broker's configuration and the store\n" +
			"is opened read-only (the root key checks the head MAC) and compared with the broker's audit anchor\n" +
			"(audit_anchor): wiped, truncated or older stores are refused. --witness seq:hash (printed as\n" +
			"\"audit:\" by every client verb, and as \"witness to keep\" here) must still be in the chain: this\n" +
			"detects a rollback of the whole database together with its anchor.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ws []audit.Head
			for _, w := range witnesses {
				h, err := audit.ParseHead(w)
				if err != nil {
					return err
				}
				ws = append(ws, h)
			}
			if local {
				return verifyLocal(cmd, vf.config, ws)
			}
			return vf.with(cmd, func(ctx context.Context, c *kms.Client) error {
				v := audit.NewVerifier(ws...)
				var head *kmsv1.AuditHead
				if err := c.StreamAudit(ctx, 1, v.Add, func(h *kmsv1.AuditHead) { head = h }); err != nil {
					return err
				}
				if head == nil {
					return errors.New("audit chain: the broker sent no head")
				}
				if !head.MacOk {
					return fmt.Errorf("audit chain: the broker reports the stored head %s is not authenticated by its MAC: the head row was edited", audit.Head{Seq: head.Seq, Hash: head.Hash})
				}
				if err := v.Finish(&audit.Head{Seq: head.Seq, Hash: head.Hash}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "audit chain OK: %d entries (%d granted, %d refused), head %s, head MAC verified by the broker\n",
					v.Head().Seq, v.Granted, v.Refused, v.Head())
				return nil
			})
		},
	}
	verify.Flags().StringVar(&vf.config, "config", "", "client configuration (or, with --local, the broker's)")
	verify.Flags().DurationVar(&vf.timeout, "timeout", 5*time.Minute, "deadline")
	verify.Flags().StringSliceVar(&witnesses, "witness", nil, "audit head seen earlier, seq:hash (repeatable)")
	verify.Flags().BoolVar(&local, "local", false, "read the broker's store directly")
	_ = verify.MarkFlagRequired("config")
	cmd.AddCommand(show, verify)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func verifyLocal(cmd *cobra.Command, config string, ws []audit.Head) error {
	c, err := kms.LoadConfig(config)
	if err != nil {
		return err
	}
	if c.RootKey == "" {
		return errors.New("kms audit verify --local: the configuration has no root_key (use the broker's configuration)")
	}
	root, err := kms.OpenRootKey(c.RootKey)
	if err != nil {
		return err
	}
	defer root.Close()
	st, err := store.OpenReadOnly(cmd.Context(), c.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	anchor := c.AnchorPath()
	rep, err := kms.VerifyStoreAnchored(cmd.Context(), st, root, anchor, ws...)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "audit chain OK: %d entries (%d granted, %d refused), head %s, head MAC verified under %s\n",
		rep.Head.Seq, rep.Granted, rep.Refused, rep.Head, root.Describe())
	if rep.Anchored != nil {
		fmt.Fprintf(out, "audit anchor %s: entry %d, reached by the store\n", anchor, rep.Anchored.Seq)
	} else {
		fmt.Fprintf(out, "audit anchor %s: none yet (empty store)\n", anchor)
	}
	fmt.Fprintf(out, "witness to keep off this host (detects a rollback of store and anchor together): %s\n", rep.Head)
	return nil
}
