package psi

import (
	"context"
	"errors"
	"io"
	"sync"

	psiv1 "github.com/teeml/teeml/api/proto/teeml/psi/v1"
)

// Pipe returns the two ends of an in-memory session stream, for two
// parties in one process (vfl/run's in-process baseline and tests). The
// protocol, and so everything each side learns, is the same as over
// RA-TLS; there is no attestation, so the caller names the peers.
func Pipe() (a, b Stream) {
	ab, ba := make(chan *psiv1.PSIMessage, 4), make(chan *psiv1.PSIMessage, 4)
	broken := make(chan struct{})
	once := &sync.Once{}
	return &pipeEnd{in: ba, out: ab, broken: broken, breakOnce: once},
		&pipeEnd{in: ab, out: ba, broken: broken, breakOnce: once}
}

type pipeEnd struct {
	in        <-chan *psiv1.PSIMessage
	out       chan *psiv1.PSIMessage
	closeOnce sync.Once
	mu        sync.Mutex // guards closed against Send racing CloseSend
	closed    bool
	broken    chan struct{}
	breakOnce *sync.Once
}

var errPipeBroken = errors.New("psi: in-memory stream broken")

func (p *pipeEnd) Send(m *psiv1.PSIMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("psi: send after CloseSend")
	}
	select {
	case p.out <- m:
		return nil
	case <-p.broken:
		return errPipeBroken
	}
}

func (p *pipeEnd) Recv() (*psiv1.PSIMessage, error) {
	select {
	case m, ok := <-p.in:
		if !ok {
			return nil, io.EOF
		}
		return m, nil
	case <-p.broken:
		return nil, errPipeBroken
	}
}

// CloseSend ends this side's messages: the peer's Recv returns io.EOF
// after the ones already sent.
func (p *pipeEnd) CloseSend() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		close(p.out)
		p.mu.Unlock()
	})
	return nil
}

// breakPipe fails every pending and later Send and Recv on both ends.
func (p *pipeEnd) breakPipe() { p.breakOnce.Do(func() { close(p.broken) }) }

// RunStream runs one side of a session over st, an end of Pipe. The dialer
// (by convention the leader) commits to its nonce first; peer is the other
// side's name. Cancelling ctx, or an error on either side, breaks the pipe
// so that the other side fails at once instead of waiting for a timeout.
func RunStream(ctx context.Context, st Stream, dialer bool, peer string, cfg Config, set *Set, out string) (*Result, error) {
	pe, ok := st.(*pipeEnd)
	if !ok {
		return nil, errors.New("psi: RunStream needs an end of Pipe")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(ctx, pe.breakPipe)
	res, err := run(ctx, cancel, st, dialer, peer, cfg, set, out)
	stop()
	if err != nil {
		pe.breakPipe()
		return nil, err
	}
	// The listener ends the stream, as a gRPC handler does by returning.
	if !dialer {
		_ = pe.CloseSend()
	}
	return res, nil
}
