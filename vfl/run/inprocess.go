package run

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"

	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/psi"
)

// PipeConnectors returns connectors for a leader and a follower in one
// process: every leader Connect creates a fresh bridge.Pipe and hands the
// other end to the follower's next Connect, and every leader PSI session a
// psi.Pipe likewise. The same party code, PSI included, runs over it as
// over RA-TLS; only the transport differs (no attestation: the peers are
// named by role).
func PipeConnectors() (leader, follower Connector) {
	ch := make(chan *bridge.Conn)
	psiCh := make(chan psi.Stream)
	return pipeLeader{ch, psiCh}, pipeFollower{ch, psiCh}
}

type pipeLeader struct {
	ch    chan *bridge.Conn
	psiCh chan psi.Stream
}

func (p pipeLeader) runPSI(ctx context.Context, cfg psi.Config, set *psi.Set, out string) (*psi.Result, error) {
	a, b := psi.Pipe()
	select {
	case p.psiCh <- b:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return psi.RunStream(ctx, a, true, RoleFollower, cfg, set, out)
}

func (p pipeFollower) runPSI(ctx context.Context, cfg psi.Config, set *psi.Set, out string) (*psi.Result, error) {
	select {
	case b := <-p.psiCh:
		return psi.RunStream(ctx, b, false, RoleLeader, cfg, set, out)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p pipeLeader) Connect(ctx context.Context) (*bridge.Conn, error) {
	a, b := bridge.Pipe()
	select {
	case p.ch <- b:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeFollower struct {
	ch    chan *bridge.Conn
	psiCh chan psi.Stream
}

func (p pipeFollower) Connect(ctx context.Context) (*bridge.Conn, error) {
	select {
	case c := <-p.ch:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// RunInProcess trains the plan with both parties in this process over an
// in-process pipe: the centralised baseline (the same model, code and data
// as the federated run, without the network) and a test fixture. stateDir
// holds both sides' state (<stateDir>/leader, <stateDir>/follower).
func RunInProcess(ctx context.Context, plan, stateDir string, log *slog.Logger) (leader, follower *Result, err error) {
	return runInProcess(ctx, plan, stateDir, log, nil)
}

func runInProcess(ctx context.Context, plan, stateDir string, log *slog.Logger, psiRand func(string) io.Reader) (leader, follower *Result, err error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lc, fc := PipeConnectors()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var ferr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		follower, ferr = Run(ctx, Options{Plan: plan, Role: RoleFollower, StateDir: stateDir + "/follower", Connector: fc, Logger: log, psiRand: psiRand})
		if ferr != nil {
			cancel()
		}
	}()
	leader, err = Run(ctx, Options{Plan: plan, Role: RoleLeader, StateDir: stateDir + "/leader", Connector: lc, Logger: log, psiRand: psiRand})
	if err != nil {
		cancel()
	}
	wg.Wait()
	if err == nil && ferr != nil {
		err = ferr
	}
	if err != nil && ferr != nil && !errors.Is(ferr, context.Canceled) {
		err = errors.Join(err, ferr)
	}
	if err != nil {
		return nil, nil, err
	}
	return leader, follower, nil
}
