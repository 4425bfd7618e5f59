package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	vflrun "github.com/teeml/teeml/vfl/run"
	"github.com/teeml/teeml/vfl/split"
)

// newVFLCmd is `teeml vfl`: vertical federated learning between a leader
// (labels and some features) and a follower (other features of the same
// users).
func newVFLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vfl",
		Short: "Vertical federated learning: split models trained by a leader and a follower over RA-TLS",
	}
	cmd.AddCommand(newVFLPSICmd(), newVFLPartyCmd(vflrun.RoleFollower), newVFLPartyCmd(vflrun.RoleLeader), newVFLPredictCmd(), newVFLQuickstartCmd())
	return cmd
}

const vflTrustHelp = "Everything that decides trust comes from files, never from flags: the plan (its hash covers\n" +
	"the contents of both policy files and is compared with the peer's in the handshake), the\n" +
	"policy the peer must satisfy (the plan's <peer role>.policy: its measurement list), and\n" +
	"party/<role>.yaml next to the plan (this side's evidence platform: auto, gramine, tsm or sim)."

func newVFLPartyCmd(role string) *cobra.Command {
	var o vflrun.Options
	o.Role = role
	short := "Serve the follower's half: wait for the leader, then train until it is done"
	long := "Listens on --listen (RA-TLS), logs \"waiting for leader\", and trains the follower's bottom model:\n" +
		"per iteration it sends act1_f and applies the leader's act1_f_grad. Checkpoints every\n" +
		"training.checkpoint_every iterations; after a broken stream or a restart both sides resume from\n" +
		"their last common checkpoint. Exports the follower's half and its model card.\n\n" + vflTrustHelp
	if role == vflrun.RoleLeader {
		short = "Run the leader's half: connect to the follower, train, evaluate and export"
		long = "Connects to the follower at --peer over RA-TLS (channel states connecting → connected → ready),\n" +
			"trains the leader's tower and head on its labels, returns act1_f_grad per iteration, evaluates\n" +
			"AUC, accuracy and log-loss on the test rows, and exports the leader's half and its model card.\n\n" + vflTrustHelp
	}
	cmd := &cobra.Command{
		Use:   role,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			o.Progress = os.Stderr
			o.Logger = slog.Default()
			_, err := vflrun.Run(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Plan, "plan", "", "plan file (plan.yaml)")
	f.StringVar(&o.PartyDir, "party-dir", "", "directory holding party/"+role+".yaml (default: the plan's directory)")
	f.StringVar(&o.StateDir, "state", "", "checkpoints and exported model (default <plan dir>/runs/<plan hash>/"+role+")")
	if role == vflrun.RoleLeader {
		f.StringVar(&o.Peer, "peer", "", "the follower's address, HOST:PORT")
		_ = cmd.MarkFlagRequired("peer")
	} else {
		f.StringVar(&o.Listen, "listen", "127.0.0.1:50061", "listen address")
	}
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics on http://ADDR/metrics (default: off)")
	_ = cmd.MarkFlagRequired("plan")
	return cmd
}

func newVFLQuickstartCmd() *cobra.Command {
	var o vflrun.QuickstartOptions
	var datasets, kind string
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run a SIMULATED two-party VFL locally on breast_cancer and credit, and compare with centralised training",
		Long: "For each dataset: writes a plan splitting the columns between leader (with the label) and\n" +
			"follower, with about 10% of the IDs held by one side only; runs the follower and the leader as\n" +
			"separate teeml processes over loopback RA-TLS on SIMULATED attestation evidence; aligns the rows;\n" +
			"trains a split model; and trains the same model on the same rows in one process (centralised\n" +
			"baseline). Prints test AUC of both. Never use simulated evidence for real data.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			o.Kind = split.Kind(kind)
			if kind != string(split.KindLR) && kind != string(split.KindWideDeep) {
				return fmt.Errorf("--model %q: want lr or widedeep", kind)
			}
			for _, d := range strings.Split(datasets, ",") {
				if d = strings.TrimSpace(d); d != "" {
					o.Datasets = append(o.Datasets, d)
				}
			}
			o.LogLevel = cmd.Flag("log-level").Value.String()
			_, err := vflrun.Quickstart(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "directory to create and keep (default: a new temporary directory)")
	f.StringVar(&datasets, "dataset", "breast_cancer,credit", "comma-separated datasets: breast_cancer, credit")
	f.StringVar(&kind, "model", string(split.KindWideDeep), "split model: lr or widedeep")
	f.IntVar(&o.Epochs, "epochs", 0, "training epochs (default 10 for breast_cancer, 5 for credit)")
	f.DurationVar(&o.Timeout, "timeout", 0, "stop both parties after this long per dataset (default 5m)")
	return cmd
}

func newVFLPredictCmd() *cobra.Command {
	var o vflrun.PredictOptions
	cmd := &cobra.Command{
		Use:   "predict",
		Short: "Joint inference: the leader gets the follower's act1_f for the common IDs and writes probabilities",
		Long: "Run with --role follower on the follower's machine and --role leader --peer HOST:PORT on the\n" +
			"leader's. Each side loads its exported half (default <state>/model/<role>.safetensors), the rows\n" +
			"of the plan's dataset it holds (the leader may restrict them with --ids FILE, one ID per line),\n" +
			"aligns them with the peer over the bridge, and the leader writes id,probability[,label] to --out.\n\n" +
			vflTrustHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			o.Logger = slog.Default()
			if o.Role == vflrun.RoleLeader && o.Peer == "" {
				return fmt.Errorf("vfl predict: --role leader needs --peer HOST:PORT")
			}
			if o.Role != vflrun.RoleLeader && o.IDs != "" {
				return fmt.Errorf("vfl predict: --ids is for the leader (the alignment restricts the follower)")
			}
			_, err := vflrun.Predict(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Plan, "plan", "", "plan file (plan.yaml)")
	f.StringVar(&o.Role, "role", "", "leader or follower")
	f.StringVar(&o.PartyDir, "party-dir", "", "directory holding party/<role>.yaml (default: the plan's directory)")
	f.StringVar(&o.StateDir, "state", "", "state directory of the training run (default <plan dir>/runs/<plan hash>/<role>)")
	f.StringVar(&o.Model, "model", "", "this side's exported half (default <state>/model/<role>.safetensors)")
	f.StringVar(&o.Peer, "peer", "", "leader: the follower's address, HOST:PORT")
	f.StringVar(&o.Listen, "listen", "127.0.0.1:50061", "follower: listen address")
	f.StringVar(&o.IDs, "ids", "", "leader: file of IDs to predict, one per line (default: every common ID)")
	f.StringVar(&o.Output, "out", "", "leader: predictions CSV (default <state>/predictions.csv)")
	_ = cmd.MarkFlagRequired("plan")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}
