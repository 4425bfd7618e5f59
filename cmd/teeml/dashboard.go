package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/dashboard/wsdash"
)

func newDashboardCmd() *cobra.Command {
	var o wsdash.Options
	cmd := &cobra.Command{
		Use:   "dashboard -w WORKSPACE [--party dashboard.yaml] [--kms-config broker.yaml] [--addr ADDR]",
		Short: "web dashboard (read-only, HTTPS): federation, attestation, FL runs, key broker",
		Long: "Serve a read-only web dashboard of a workspace's files: the federation's members and revocations, each\n" +
			"peer's attestation, the FL runs (live: a finished round appears on open pages), and with --kms-config a key\n" +
			"broker's keys, release policies and audit log with its chain verification. Access needs a federation\n" +
			"member's certificate as a client certificate, or the one-time login address printed at start (docs/dashboard.md).\n" +
			"The pages are served under the RA-TLS certificate of the dashboard's own party (--party, role dashboard):\n" +
			"check it with teeml attest verify-server ADDR --role dashboard.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out, o.Logger = cmd.OutOrStdout(), slog.Default()
			return wsdash.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Workspace, "workspace", "w", "", "the workspace to show")
	f.StringVar(&o.PartyConfig, "party", "", "the dashboard's party configuration (attestation only, role dashboard; default WORKSPACE/party/dashboard.yaml)")
	f.StringVar(&o.KMSConfig, "kms-config", "", "a key broker's configuration: show its keys and verify its audit log (read-only)")
	f.StringVar(&o.Addr, "addr", wsdash.DefaultAddr, "HTTPS address")
	f.StringVar(&o.CertFile, "tls-cert", "", "an operator's server certificate (PEM) instead of the party's RA-TLS certificate")
	f.StringVar(&o.KeyFile, "tls-key", "", "server key (PEM)")
	f.StringVar(&o.MetricsAddr, "metrics", "", "Prometheus /metrics, /healthz, /readyz address (plain HTTP)")
	f.BoolVar(&o.NoToken, "no-token", false, "no one-time login token: federation client certificates only")
	cmd.MarkFlagRequired("workspace")
	return cmd
}
