package main

import (
	"fmt"

	"github.com/spf13/cobra"

	flencrypted "github.com/teeml/teeml/fl/encrypted"
	flrun "github.com/teeml/teeml/fl/run"
)

func newQuickstartCmd() *cobra.Command {
	var o flrun.QuickstartOptions
	var encrypted bool
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run a complete SIMULATED federation locally: aggregator + collaborators as processes over RA-TLS",
		Long: "Creates a workspace (template digits_cnn), a CA and one identity per party certified on SIMULATED\n" +
			"evidence under policies written to accept it, splits digits non-IID (Dirichlet) between the\n" +
			"collaborators, and runs the aggregator and every collaborator as separate teeml processes over\n" +
			"loopback RA-TLS. No TEE hardware is involved: never use this for real data.\n\n" +
			"--encrypted also runs a key broker (teeml kms serve, SIMULATED root key) as a federation member,\n" +
			"creates a data key whose release policy admits exactly the aggregator and the collaborators,\n" +
			"seals every collaborator's shard from memory, has the aggregator write its models and checkpoint\n" +
			"sealed, and prints the broker's audit log (which keys were released to whom) and verifies it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			if encrypted {
				_, err := flencrypted.Quickstart(cmd.Context(), o)
				return err
			}
			_, err := flrun.Quickstart(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "workspace directory to create and keep (default: a new temporary directory)")
	f.IntVar(&o.Rounds, "rounds", 0, fmt.Sprintf("federated rounds (0: %d; 1 for the tree templates digits_rf, digits_gbdt)", flrun.DefaultQuickstartRounds))
	f.IntVar(&o.Collaborators, "collaborators", flrun.DefaultQuickstartCollaborators, "number of collaborators")
	f.IntVar(&o.EpochsPerRound, "epochs", flrun.DefaultQuickstartEpochs, "local epochs per round")
	f.StringVar(&o.Template, "template", flrun.DefaultQuickstartTemplate, "workspace template")
	f.DurationVar(&o.Timeout, "timeout", 0, "stop every party after this long (default 5m)")
	f.BoolVar(&encrypted, "encrypted", false, "encrypt data, models and checkpoints at rest under keys of an attested key broker")
	return cmd
}
