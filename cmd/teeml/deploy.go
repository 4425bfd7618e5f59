package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/deploy"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
)

func newDeployCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "deploy", Short: "Deploy a federation: Kubernetes values and Secrets from a workspace (chart in deploy/helm/teeml)"}
	cmd.AddCommand(newDeployK8sCmd())
	return cmd
}

func newDeployK8sCmd() *cobra.Command {
	var ws, out, img, platform, runtimeClass, namespace, aggregator string
	cmd := &cobra.Command{
		Use:   "k8s -w WS -o DIR --image REF",
		Short: "Write the chart's values.yaml and the parties' identity Secrets (secrets.yaml, mode 0600) from a workspace",
		Long: "Reads the frozen plan (aggregator port) and plan/cols.yaml (collaborators), and each party's\n" +
			"identity certificate, key and party configuration. Simulated parties are refused. Then:\n" +
			"  kubectl apply -n NS -f DIR/secrets.yaml && helm install fed deploy/helm/teeml -n NS -f DIR/values.yaml",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := plan.Load(filepath.Join(ws, filepath.FromSlash(workspace.PlanFile)))
			if err != nil {
				return err
			}
			cols, err := workspace.LoadCollaborators(ws)
			if err != nil {
				return err
			}
			f := deploy.Federation{Workspace: ws, Aggregator: aggregator, AggregatorPort: p.Network.AggPort,
				Image: img, Platform: platform, RuntimeClass: runtimeClass}
			for _, c := range cols {
				f.Collaborators = append(f.Collaborators, c.Name)
			}
			if err := deploy.WriteK8s(out, f, namespace); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (chart values) and %s (%d identity Secrets, mode 0600)\nnext: kubectl apply -n %s -f %s && helm install teeml deploy/helm/teeml -n %s -f %s\n",
				filepath.Join(out, "values.yaml"), filepath.Join(out, "secrets.yaml"), 1+len(f.Collaborators),
				namespace, filepath.Join(out, "secrets.yaml"), namespace, filepath.Join(out, "values.yaml"))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ws, "workspace", "w", ".", "workspace directory")
	f.StringVarP(&out, "out", "o", "", "directory for values.yaml and secrets.yaml")
	f.StringVar(&img, "image", "", "image from teeml image build: REPOSITORY@sha256:DIGEST (preferred) or REPOSITORY:TAG")
	f.StringVar(&platform, "platform", "sgx", "sgx (Gramine on SGX nodes), tdx or snp (confidential VMs)")
	f.StringVar(&runtimeClass, "runtime-class", "", "runtimeClassName for confidential-VM pods (e.g. kata-qemu-tdx); required for tdx and snp")
	f.StringVar(&namespace, "namespace", "default", "namespace of the Secrets")
	f.StringVar(&aggregator, "aggregator", "aggregator", "the aggregator's member name")
	_ = cmd.MarkFlagRequired("out")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}
