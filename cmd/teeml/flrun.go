package main

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	flrun "github.com/teeml/teeml/fl/run"
)

// newFLAggregatorCmd is `teeml fl aggregator start`.
func newFLAggregatorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "aggregator", Short: "Run the federation's aggregator"}
	var ws, name, listen, metricsAddr, uiAddr string
	var uiLinger time.Duration
	start := &cobra.Command{
		Use:   "start",
		Short: "Serve the frozen plan's federation over RA-TLS until every round is done",
		Long: "Everything that decides trust comes from the workspace, never from flags: the frozen plan\n" +
			"(hash checked), policies/, pki/root.pem (pinned root), pki/federation.bundle, pki/NAME.crt and\n" +
			"pki/NAME-key.pem (identity), party/NAME.yaml (evidence platform: auto, gramine, tsm or sim).\n" +
			"Prints one line per round and writes the best and last global models (safetensors, loadable\n" +
			"with teeml eval). Every round's phases, bytes and metrics are appended to\n" +
			"runs/<plan hash>/metrics.jsonl (see teeml fl report); --metrics-addr also serves Prometheus /metrics,\n" +
			"--ui-addr the web dashboard of the federation and this run (HTTPS, read-only; docs/dashboard.md).\n\n" +
			"Every completed round is checkpointed (runs/<plan hash>/state/checkpoint.safetensors, written\n" +
			"atomically) before the next round opens. Started again after a crash, the aggregator resumes at\n" +
			"the next round (\"resuming from checkpoint: round 3 of 8 completed\"); collaborators reconnect\n" +
			"by themselves. Remove runs/<plan hash>/state to start the plan over. See docs/fl-resilience.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return flrun.RunAggregator(cmd.Context(), flrun.AggregatorOptions{
				Workspace: ws, Name: name, Listen: listen, MetricsAddr: metricsAddr, UIAddr: uiAddr, UILinger: uiLinger, Out: cmd.OutOrStdout(), Logger: slog.Default()})
		},
	}
	start.Flags().StringVarP(&ws, "workspace", "w", ".", "workspace directory")
	start.Flags().StringVarP(&name, "name", "n", "aggregator", "aggregator member name (its identity certificate's CN)")
	start.Flags().StringVar(&listen, "listen", "", "listen address (default: the plan's network.agg_addr:agg_port), e.g. :50051")
	start.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address, e.g. 127.0.0.1:9464 (default: off)")
	start.Flags().StringVar(&uiAddr, "ui-addr", "", "serve the web dashboard (HTTPS, read-only) on this address, e.g. 127.0.0.1:8443 (default: off)")
	start.Flags().DurationVar(&uiLinger, "ui-linger", 0, "keep the dashboard up this long after the federation ends (default: it closes with the run)")
	cmd.AddCommand(start)
	return cmd
}

// withCollaboratorStart adds `start` to the `teeml fl collaborator` command.
func withCollaboratorStart(col *cobra.Command) *cobra.Command {
	var ws, name string
	var connect time.Duration
	start := &cobra.Command{
		Use:   "start",
		Short: "Join the federation: train on this collaborator's data until the aggregator says DONE",
		Long: "Everything that decides trust comes from the workspace, never from flags: the frozen plan\n" +
			"(hash checked), policies/, pki/root.pem (pinned root), pki/federation.bundle, pki/NAME.crt and\n" +
			"pki/NAME-key.pem (identity), party/NAME.yaml (evidence platform: auto, gramine, tsm or sim).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return flrun.RunCollaborator(cmd.Context(), flrun.CollaboratorOptions{
				Workspace: ws, Name: name, ConnectTimeout: connect, Out: cmd.OutOrStdout(), Logger: slog.Default()})
		},
	}
	start.Flags().StringVarP(&ws, "workspace", "w", ".", "workspace directory")
	start.Flags().StringVarP(&name, "name", "n", "", "collaborator name (as in plan/cols.yaml and its identity certificate)")
	start.Flags().DurationVar(&connect, "connect-timeout", 2*time.Minute, "give up when the aggregator stays unreachable this long")
	_ = start.MarkFlagRequired("name")
	col.AddCommand(start)
	return col
}
