package main

import "github.com/spf13/cobra"

// newVFLCmd is `teeml vfl`. (Minimal parent for the psi subcommand; the
// other vertical-FL subcommands join it here.)
func newVFLCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "vfl", Short: "Vertical federated learning: private set intersection, split training"}
	cmd.AddCommand(newVFLPSICmd())
	return cmd
}
