package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/vfl/psi"
	vflrun "github.com/teeml/teeml/vfl/run"
)

// DefaultVFLPolicy is the attestation policy of a vertical-FL workspace,
// with roles leader and follower.
const DefaultVFLPolicy = "policies/vfl.yaml"

// newVFLPSICmd is `teeml vfl psi`.
func newVFLPSICmd() *cobra.Command {
	var ws, name, roleS, modeS, idsPath, out, sessionOut, peer, listen, polPath, configHash, tmp string
	var batch, memMiB int
	var timeout, connect time.Duration
	cmd := &cobra.Command{
		Use:   "psi",
		Short: "Align users with the other vertical-FL party by ECDH private set intersection over RA-TLS",
		Long: "Two-party ECDH-PSI over ristretto255 (see docs/vfl-psi.md). One party listens (--listen), the other\n" +
			"dials (--peer); either may be the leader. Trust comes from the workspace as for FL parties:\n" +
			"pki/root.pem, pki/federation.bundle, pki/NAME.crt and pki/NAME-key.pem (certified for the role),\n" +
			"party/NAME.yaml (evidence platform) and the policy (default " + DefaultVFLPolicy + ", roles leader and\n" +
			"follower). Writes the common IDs, one per line, in an order both parties share (--out; not written\n" +
			"by the follower in mode leader-learns) and a session record with the shuffle seed for the data\n" +
			"join (--session, default OUT.session.json).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := psi.ParseRole(roleS)
			if err != nil {
				return err
			}
			mode, err := psi.ParseMode(modeS)
			if err != nil {
				return err
			}
			if (peer == "") == (listen == "") {
				return errors.New("vfl psi: give exactly one of --peer HOST:PORT (dial) and --listen ADDR")
			}
			w := cmd.OutOrStdout()
			res, err := vflrun.RunPSI(cmd.Context(), vflrun.PSIOptions{Workspace: ws, Name: name, Role: role, Mode: mode,
				IDs: idsPath, Out: out, Session: sessionOut, Peer: peer, Listen: listen, Policy: polPath, ConfigHash: configHash,
				TempDir: tmp, BatchSize: batch, MemoryBudget: memMiB << 20, MessageTimeout: timeout, ConnectTimeout: connect,
				Stdout: w, Logger: slog.Default()})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "vfl psi: session %x with %s %q (attested): %d distinct IDs here, %d at the peer\n",
				res.SessionID[:8], res.PeerRole, res.Peer, res.Distinct, res.PeerDistinct)
			if res.Learned {
				fmt.Fprintf(w, "vfl psi: intersection %d IDs written to %s\n", res.Intersection, out)
			} else {
				fmt.Fprintf(w, "vfl psi: mode leader-learns: this follower learns no intersection (nothing written to %s)\n", out)
			}
			fmt.Fprintf(w, "vfl psi: shuffle seed %x; session record %s; %.1f s, %d bytes sent, %d received\n",
				res.ShuffleSeed, res.Session, res.Seconds, res.BytesSent, res.BytesReceived)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ws, "workspace", "w", ".", "workspace directory")
	f.StringVarP(&name, "name", "n", "", "this party's member name (its identity certificate's CN)")
	f.StringVar(&roleS, "role", "", "leader or follower")
	f.StringVar(&modeS, "mode", "both", "both (both learn the intersection) or leader-learns")
	f.StringVar(&idsPath, "ids", "", "ID file: UTF-8, one ID per line")
	f.StringVarP(&out, "out", "o", "", "aligned ID file to write")
	f.StringVar(&sessionOut, "session", "", "session record to write (default OUT.session.json)")
	f.StringVar(&peer, "peer", "", "dial the listening party at HOST:PORT")
	f.StringVar(&listen, "listen", "", "listen on ADDR (e.g. :50061) for the dialing party")
	f.StringVar(&polPath, "policy", DefaultVFLPolicy, "attestation policy (relative to the workspace)")
	f.StringVar(&configHash, "config-hash", "", "hex hash both parties bind into the session (default: SHA-256 of the policy file)")
	f.StringVar(&tmp, "tmp", "", "directory for spill files (default $TMPDIR)")
	f.IntVar(&batch, "batch", psi.DefaultBatchSize, "IDs per message")
	f.IntVar(&memMiB, "memory-mib", 64, "MiB of IDs sorted in memory before spilling to --tmp")
	f.DurationVar(&timeout, "timeout", psi.DefaultMessageTimeout, "longest wait for any one message from the peer")
	f.DurationVar(&connect, "connect-timeout", psi.DefaultConnectTimeout, "how long to wait for the peer to connect (dial retries, or a listener's wait)")
	for _, r := range []string{"name", "role", "ids", "out"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}
