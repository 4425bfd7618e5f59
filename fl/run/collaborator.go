package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/workspace"
)

// CollaboratorOptions configures RunCollaborator. Nothing here decides trust.
type CollaboratorOptions struct {
	Workspace string
	Name      string
	// ConnectTimeout bounds how long the aggregator may stay unreachable
	// (default 2 minutes).
	ConnectTimeout time.Duration
	Out            io.Writer
	Logger         *slog.Logger
}

// RunCollaborator is `teeml fl collaborator start`: it loads the frozen
// secAggWait bounds how long the aggregator may hold a secure-aggregation
// call: the unmask call waits for the round to close.
func secAggWait(p *plan.Plan) time.Duration {
	if s := p.SecAgg(); s != nil {
		return max(2*time.Minute, 2*s.PhaseTimeout, p.Network.RoundTimeout)
	}
	return 0
}

// plan, the aggregator's policy, the federation bundle and pinned root, its
// identity and party configuration and its data shard, connects to the
// aggregator over RA-TLS and trains until the aggregator says DONE.
func RunCollaborator(ctx context.Context, o CollaboratorOptions) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 2 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	ws := o.Workspace
	p, hash, pols, err := loadFrozenPlan(ws)
	if err != nil {
		return err
	}
	id, err := loadParty(ws, o.Name, protocol.CollaboratorRole, log)
	if err != nil {
		return err
	}
	id.Announce(o.Out, log)
	defer id.WatchFederation(ctx, log)() // reconnects verify the aggregator against the bundle in force
	ks, closeKS, err := partyKeys(ctx, id, p, log)
	if err != nil {
		return err
	}
	defer closeKS()
	shard, err := workspace.LoadShardWith(ws, o.Name, workspace.ShardOptions{Context: ctx, Keys: ks})
	if err != nil {
		return err
	}
	trainer, closeTrainer, err := collaboratorTrainer(ws, p, o.Name, shard, log)
	if err != nil {
		return err
	}
	defer closeTrainer()
	creds, closeCreds, err := partyCredentials(ctx, id, pols, "aggregator", false, log)
	if err != nil {
		return err
	}
	defer closeCreds()
	addr := net.JoinHostPort(p.Network.AggAddr, strconv.Itoa(p.Network.AggPort))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("aggregator %s: %w", addr, err)
	}
	defer conn.Close()
	var sa *protocol.SecAggIdentity
	if s := p.SecAgg(); s != nil {
		// Round keys are signed by the identity key; the other members'
		// are checked against the federation bundle in force.
		sa = &protocol.SecAggIdentity{Key: id.Key, Cert: id.Cert, Verifier: id.Federation}
	}
	c, err := protocol.NewCollaborator(protocol.CollaboratorConfig{
		Name: o.Name, PlanHash: hash, Conn: conn,
		Trainer:    trainer,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, GiveUpAfter: o.ConnectTimeout,
		Logger: log, SecAgg: sa, SecAggPhaseWait: secAggWait(p),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "collaborator %s: plan %s, %d training examples, aggregator %s (RA-TLS)\n",
		o.Name, protocol.ShortHash(hash), shard.Train.N, addr)
	start := time.Now()
	if err := c.Run(ctx); err != nil {
		return fmt.Errorf("collaborator %s: %w", o.Name, err)
	}
	fmt.Fprintf(o.Out, "collaborator %s: done after %.1f s\n", o.Name, time.Since(start).Seconds())
	return nil
}
