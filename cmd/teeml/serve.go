package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/serve"
	"github.com/teeml/teeml/serve/client"
	"github.com/teeml/teeml/serve/queue"
	"github.com/teeml/teeml/serve/quickstart"
)

func newServeCmd() *cobra.Command {
	var o serve.RunOptions
	cmd := &cobra.Command{
		Use:   "serve --repository serving.yaml (-w WORKSPACE -n NAME | --party CONFIG) --http ADDR [--grpc ADDR] [--tokens F]",
		Short: "attested inference server: Open Inference Protocol v2 over RA-TLS (REST and gRPC), dynamic batching",
		Long: "Serve the models of a repository (serving YAML; sealed models are opened in memory with keys from the\n" +
			"party's key broker, released after the server's own attestation). Clients verify the server's RA-TLS\n" +
			"evidence before sending input (teeml infer; teeml attest verify-server prints a pin for curl).\n" +
			"SIGINT/SIGTERM drains: no new requests, the accepted ones are answered (docs/serving.md).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out, o.Log = cmd.OutOrStdout(), slog.Default()
			return serve.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Repository, "repository", "", "serving YAML (models, versions, batching, access)")
	f.StringVarP(&o.Workspace, "workspace", "w", "", "workspace holding the server's party files")
	f.StringVarP(&o.Name, "name", "n", "", "the server's member name in the workspace")
	f.StringVar(&o.PartyConfig, "party", "", "attestation-only party configuration (instead of -w/-n)")
	f.StringVar(&o.HTTPListen, "http", "", "REST address (https, RA-TLS), e.g. 127.0.0.1:8443")
	f.StringVar(&o.GRPCListen, "grpc", "", "gRPC address (RA-TLS)")
	f.StringVar(&o.MetricsListen, "metrics", "", "Prometheus /metrics, /healthz, /readyz address (plain HTTP)")
	f.StringVar(&o.UIAddr, "ui-addr", "", "web dashboard address (HTTPS, read-only: requests, refusals, latency per model), e.g. 127.0.0.1:8445")
	f.StringVar(&o.Tokens, "tokens", "", "API tokens file (teeml serve token)")
	f.BoolVar(&o.Anonymous, "anonymous", false, "accept requests without a token")
	f.StringVar(&o.ClientPolicy, "client-policy", "", "attestation policy (a role per client role) for federation members authenticating by mutual RA-TLS instead of a token (needs -w/-n)")
	cmd.MarkFlagRequired("repository")
	cmd.AddCommand(newServeTokenCmd(), newServeQuickstartCmd(), newServeQueueCmd())
	return cmd
}

func newServeTokenCmd() *cobra.Command {
	var file, name string
	cmd := &cobra.Command{
		Use:   "token --tokens F --name NAME",
		Short: "make an API token (printed once; the file keeps its SHA-256)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := serve.NewToken(file, name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "tokens", "", "tokens file (created if missing)")
	cmd.Flags().StringVar(&name, "name", "", "the token's name (used in access lists)")
	cmd.MarkFlagRequired("tokens")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newServeQuickstartCmd() *cobra.Command {
	var dir string
	var n int
	cmd := &cobra.Command{
		Use:   "quickstart [--dir D]",
		Short: "train, seal under a key broker, serve from its own process, query from a client that verifies the server (SIMULATED attestation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, dir, err := quickstartEnv(dir, "teeml-serve-")
			if err != nil {
				return err
			}
			_, err = quickstart.Run(cmd.Context(), quickstart.Options{Dir: dir, Exe: exe, Requests: n, Out: cmd.OutOrStdout()})
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "workspace, empty or missing (default: a new temporary directory, kept)")
	cmd.Flags().IntVar(&n, "requests", 200, "latency requests per concurrency level")
	return cmd
}

func newInferCmd() *cobra.Command {
	var t client.Trust
	var url, token, model, input string
	cmd := &cobra.Command{
		Use:   "infer --server https://HOST:PORT (--party CLIENT.yaml | -w WORKSPACE -n MEMBER) --policy SERVER-POLICY.yaml --model M --input ROWS.csv [--token T]",
		Short: "send rows to a teeml server after verifying its attestation; print one output row per input row",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows, err := readRows(input)
			if err != nil {
				return err
			}
			if token == "" {
				token = os.Getenv("TEEML_TOKEN")
			}
			t.Log = slog.Default()
			c, err := client.Dial(url, token, t)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.Infer(cmd.Context(), model, rows)
			if err != nil {
				return err
			}
			w := csv.NewWriter(cmd.OutOrStdout())
			for _, r := range out {
				rec := make([]string, len(r))
				for i, v := range r {
					rec[i] = strconv.FormatFloat(float64(v), 'g', -1, 32)
				}
				w.Write(rec)
			}
			w.Flush()
			return w.Error()
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "server", "", "server URL, https://HOST:PORT")
	f.StringVar(&t.PartyConfig, "party", "", "this client's party configuration (evidence verifier, trusted simulation keys)")
	f.StringVarP(&t.Workspace, "workspace", "w", "", "workspace of this client as a federation member (with -n: presents its identity, no token needed)")
	f.StringVarP(&t.Name, "name", "n", "", "this client's member name in the workspace")
	f.StringVar(&t.Policy, "policy", "", "attestation policy the server must satisfy")
	f.StringVar(&t.Role, "role", "serving", "the policy role of the server")
	f.StringVar(&token, "token", "", "API token (default $TEEML_TOKEN)")
	f.StringVar(&model, "model", "", "model name")
	f.StringVar(&input, "input", "", "CSV of feature rows (a header row and id/label columns are skipped); - for stdin")
	cmd.MarkFlagsOneRequired("party", "workspace")
	cmd.MarkFlagsMutuallyExclusive("party", "workspace")
	cmd.MarkFlagsRequiredTogether("workspace", "name")
	for _, n := range []string{"server", "policy", "model", "input"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

// readRows reads numeric CSV rows; a non-numeric first row is a header,
// whose id, label and target columns are dropped.
func readRows(path string) ([][]float32, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		defer f.Close()
		r = f
	}
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("input %s: no rows", path)
	}
	drop := map[int]bool{}
	if _, err := strconv.ParseFloat(recs[0][0], 64); err != nil {
		for i, h := range recs[0] {
			switch strings.ToLower(strings.TrimSpace(h)) {
			case "id", "label", "target", "y":
				drop[i] = true
			}
		}
		recs = recs[1:]
	}
	var rows [][]float32
	for li, rec := range recs {
		row := make([]float32, 0, len(rec))
		for i, cell := range rec {
			if drop[i] {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(cell), 32)
			if err != nil {
				return nil, fmt.Errorf("input %s: row %d, column %d: %q is not a number", path, li+1, i+1, cell)
			}
			row = append(row, float32(v))
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, errors.New("input " + path + ": no data rows")
	}
	return rows, nil
}

func newAttestVerifyServerCmd() *cobra.Command {
	var t client.Trust
	cmd := &cobra.Command{
		Use:   "verify-server HOST:PORT --party CLIENT.yaml --policy SERVER-POLICY.yaml",
		Short: "check a server's RA-TLS evidence against a policy; print the verdict and the key pin for curl",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t.Log = slog.Default()
			v, err := client.VerifyServer(cmd.Context(), args[0], t)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "accepted: %s %s, tcb %s, debug %v, simulated %v\n", v.TEE, v.Measurement, v.TCBStatus, v.Debug, v.Simulated)
			fmt.Fprintf(out, "pin: %s\n", v.Pin)
			fmt.Fprintf(out, "curl: curl -k --pinnedpubkey '%s' https://%s/v2/health/ready\n", v.Pin, strings.TrimPrefix(args[0], "https://"))
			return nil
		},
	}
	cmd.Flags().StringVar(&t.PartyConfig, "party", "", "this client's party configuration")
	cmd.Flags().StringVar(&t.Policy, "policy", "", "attestation policy the server must satisfy")
	cmd.Flags().StringVar(&t.Role, "role", "serving", "the policy role of the server")
	cmd.MarkFlagRequired("party")
	cmd.MarkFlagRequired("policy")
	return cmd
}

func newServeQueueCmd() *cobra.Command {
	var o queue.ServeOptions
	var tokens string
	cmd := &cobra.Command{
		Use:   "queue --repository serving.yaml (-w WORKSPACE -n NAME | --party CONFIG) (--nats URL [--nats-ca F --nats-cert F --nats-key F --nats-creds F] | --store DIR [--listen ADDR]) [--tokens F | --anonymous]",
		Short: "queue mode: answer requests from a NATS JetStream stream (embedded by default), results by request id, at least once, answered once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokens != "" {
				t, err := serve.LoadTokens(tokens)
				if err != nil {
					return err
				}
				o.Tokens = t
			}
			o.Out, o.Log = cmd.OutOrStdout(), slog.Default()
			return queue.Serve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Repository, "repository", "", "serving YAML")
	f.StringVar(&o.URL, "nats", "", "external NATS URL (default: an embedded server)")
	f.StringVar(&o.StoreDir, "store", "", "embedded JetStream store directory")
	f.StringVar(&o.Listen, "listen", "127.0.0.1:4222", "embedded NATS address (loopback only)")
	f.StringVarP(&o.Workspace, "workspace", "w", "", "workspace holding the server's party files")
	f.StringVarP(&o.Name, "name", "n", "", "the server's member name in the workspace")
	f.StringVar(&o.PartyConfig, "party", "", "attestation-only party configuration (instead of -w/-n)")
	f.StringVar(&o.Auth.CA, "nats-ca", "", "PEM CAs the external NATS servers' certificates must chain to (requires TLS)")
	f.StringVar(&o.Auth.Cert, "nats-cert", "", "PEM client certificate for the external NATS cluster (mutual TLS; with --nats-key)")
	f.StringVar(&o.Auth.Key, "nats-key", "", "PEM key of --nats-cert")
	f.StringVar(&o.Auth.Creds, "nats-creds", "", "NATS credentials file (user JWT and NKey seed)")
	f.StringVar(&tokens, "tokens", "", "API tokens file (requests carry Authorization: Bearer in a header)")
	f.BoolVar(&o.Anonymous, "anonymous", false, "accept requests without a token")
	cmd.MarkFlagRequired("repository")
	return cmd
}
