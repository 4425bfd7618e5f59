package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/fl/report"
)

// newFLReportCmd is `teeml fl report RUN_DIR`.
func newFLReportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Plot accuracy and loss per round (report.png) and tabulate rounds and participants (report.md) from a run's metrics.jsonl",
		Long: "RUN_DIR is an aggregator's run directory, <workspace>/runs/<plan hash>/, which holds metrics.jsonl\n" +
			"(or the path of a metrics.jsonl file). Writes report.png and report.md into --out (default RUN_DIR)\n" +
			"and prints the table. An incomplete last line (the aggregator stopped mid-write) is skipped with a\n" +
			"warning; any other bad line is an error naming the file and line.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := report.Write(args[0], out)
			if err != nil {
				return err
			}
			for _, w := range res.Summary.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			fmt.Fprint(cmd.OutOrStdout(), res.TableText)
			fmt.Fprintf(cmd.OutOrStdout(), "\nwrote %s and %s (from %s)\n", res.PNG, res.Table, res.Input)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "directory for report.png and report.md (default: RUN_DIR)")
	return cmd
}
