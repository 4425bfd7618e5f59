package main

import (
	"encoding/json"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/internal/buildinfo"
	"github.com/teeml/teeml/ml"
)

func newRootCmd() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:           "teeml",
		Short:         "Attested federated machine learning in trusted execution environments",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newVersionCmd(), newDatasetsCmd(), newTrainCmd(), newEvalCmd(), newPredictCmd(), newAttestCmd(), newEnclaveCmd(), newFLCmd(), newPKICmd(), newQuickstartCmd(), newKMSCmd(), newVFLCmd(), newDataCmd(), newSQLCmd(), newCleanroomCmd(), newServeCmd(), newInferCmd(), newImageCmd(), newDeployCmd(), newDashboardCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print teeml's version, Go version and build information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := buildinfo.Read()
			info.MLKernels = ml.SIMDDescription()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			return info.Write(cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
