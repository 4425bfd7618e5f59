package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
)

func newFLCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fl", Short: "Horizontal federated learning: workspaces, plans, collaborators"}
	ws := &cobra.Command{Use: "workspace", Short: "Create, export and import federation workspaces"}
	var prefix, template string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a workspace from a template (" + strings.Join(workspace.Templates(), ", ") + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := workspace.Create(prefix, template); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created workspace %s from template %s\nnext: edit %s/plan/plan.yaml and the policies, then teeml fl plan init -w %s -a HOST[:PORT]\n",
				prefix, template, prefix, prefix)
			return nil
		},
	}
	create.Flags().StringVar(&prefix, "prefix", "", "workspace directory to create")
	create.Flags().StringVar(&template, "template", "digits_cnn", "template")
	_ = create.MarkFlagRequired("prefix")

	var exportWS, exportOut string
	export := &cobra.Command{
		Use:   "export",
		Short: "Pack a workspace (plan, policies, collaborator list; no private keys, no outputs) into a .tar.gz",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := workspace.Export(exportWS, exportOut); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", exportOut)
			return nil
		},
	}
	export.Flags().StringVarP(&exportWS, "workspace", "w", ".", "workspace directory")
	export.Flags().StringVarP(&exportOut, "out", "o", "workspace.tar.gz", "archive to write")

	var archive, importDir string
	imp := &cobra.Command{
		Use:   "import",
		Short: "Unpack an exported workspace safely (no absolute paths, '..', links; size limits; plan hash checked)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := workspace.Import(archive, importDir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s into %s\n", archive, importDir)
			return nil
		},
	}
	imp.Flags().StringVar(&archive, "archive", "", "archive written by teeml fl workspace export")
	imp.Flags().StringVar(&importDir, "dir", "", "directory to create")
	_ = imp.MarkFlagRequired("archive")
	_ = imp.MarkFlagRequired("dir")
	ws.AddCommand(create, export, imp)

	pl := &cobra.Command{Use: "plan", Short: "Initialise, freeze and lint the federation plan"}
	var planWS, agg string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Set the aggregator address, write the initial model weights and freeze the plan with its hash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			hash, err := workspace.InitPlan(planWS, agg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "plan frozen: sha256 %s\nevery party must run this exact plan; a different hash is refused at connection time\n", hash)
			return nil
		},
	}
	initCmd.Flags().StringVarP(&planWS, "workspace", "w", ".", "workspace directory")
	initCmd.Flags().StringVarP(&agg, "aggregator", "a", "", "aggregator address HOST[:PORT]")
	var lintWS, lintPlan string
	var lintStrict bool
	lintCmd := &cobra.Command{
		Use:   "lint",
		Short: "Warn about every unbounded or weak Byzantine and liveness knob of the plan (norm bound, example cap, min_accepted, strategy, round timeout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := lintPlan
			if path == "" {
				path = filepath.Join(lintWS, "plan", "plan.yaml")
			}
			warnings, err := plan.LintFile(path)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, w := range warnings {
				fmt.Fprintln(out, "warning: "+w)
			}
			if len(warnings) == 0 {
				fmt.Fprintf(out, "%s: every knob is bounded\n", path)
				return nil
			}
			fmt.Fprintf(out, "%s: %d warnings\n", path, len(warnings))
			if lintStrict {
				return fmt.Errorf("plan lint: %s: %d warnings (--strict)", path, len(warnings))
			}
			return nil
		},
	}
	lintCmd.Flags().StringVarP(&lintWS, "workspace", "w", ".", "workspace directory (its plan/plan.yaml)")
	lintCmd.Flags().StringVar(&lintPlan, "plan", "", "plan file (instead of the workspace's)")
	lintCmd.Flags().BoolVar(&lintStrict, "strict", false, "exit non-zero when there is any warning")
	pl.AddCommand(initCmd, lintCmd)

	col := &cobra.Command{Use: "collaborator", Short: "Manage the plan's collaborators"}
	var colWS, name, data string
	colCreate := &cobra.Command{
		Use:   "create",
		Short: "Add a collaborator to plan/cols.yaml with its data (shard:N of the plan's partition, or a CSV path)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := workspace.AddCollaborator(colWS, name, data); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added collaborator %q with data %s to plan/cols.yaml\n", name, data)
			return nil
		},
	}
	colCreate.Flags().StringVarP(&colWS, "workspace", "w", ".", "workspace directory")
	colCreate.Flags().StringVarP(&name, "name", "n", "", "collaborator name")
	colCreate.Flags().StringVarP(&data, "data", "d", "", "data: shard:N or a CSV file")
	_ = colCreate.MarkFlagRequired("name")
	_ = colCreate.MarkFlagRequired("data")
	col.AddCommand(colCreate)

	cmd.AddCommand(ws, pl, withCollaboratorStart(col), newFLAggregatorCmd(), newFLReportCmd())
	return cmd
}
