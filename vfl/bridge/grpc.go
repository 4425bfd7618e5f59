package bridge

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"github.com/teeml/teeml/ratls"
)

// Conn is an accepted or dialled bridge stream.
type Conn struct {
	Stream
	// Peer is the RA-TLS-verified peer (nil on an in-process pipe).
	Peer *ratls.Peer
	// close ends the stream (returns the server handler / cancels the
	// client stream's context).
	close func()
}

// Close ends the stream.
func (c *Conn) Close() { c.close() }

// Server is the follower's side of the Bridge service: it hands each
// incoming stream to Accept.
type Server struct {
	vflv1.UnimplementedBridgeServer
	incoming chan *Conn
}

// NewServer returns a Server; register it on a grpc.Server with Register.
func NewServer() *Server { return &Server{incoming: make(chan *Conn)} }

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) { vflv1.RegisterBridgeServer(g, s) }

// Stream implements vflv1.BridgeServer: it waits until Accept takes the
// stream and then until the accepted Conn is closed or the client leaves.
func (s *Server) Stream(st vflv1.Bridge_StreamServer) error {
	ctx := st.Context()
	done := make(chan struct{})
	var once sync.Once
	peer, _ := ratls.PeerFromContext(ctx)
	c := &Conn{Stream: st, Peer: peer, close: func() { once.Do(func() { close(done) }) }}
	select {
	case s.incoming <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Accept returns the next incoming stream.
func (s *Server) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-s.incoming:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Dial opens a bridge stream on cc (the leader's side). The stream lives
// until the returned Conn is closed or ctx ends.
func Dial(ctx context.Context, cc grpc.ClientConnInterface) (*Conn, error) {
	sctx, cancel := context.WithCancel(ctx)
	st, err := vflv1.NewBridgeClient(cc).Stream(sctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: open stream: %w", ErrPeerLost, err)
	}
	c := &Conn{Stream: st, close: cancel}
	// The stream's context carries the transport's peer, whose AuthInfo is
	// the RA-TLS verification of the server.
	if p, ok := peer.FromContext(st.Context()); ok && p != nil {
		if ai, ok := p.AuthInfo.(*ratls.AuthInfo); ok {
			c.Peer = ai.Peer
		}
	}
	return c, nil
}

// Pipe returns two connected in-process streams (the centralised baseline
// and tests): frames sent on one are received on the other, in order.
func Pipe() (*Conn, *Conn) {
	ab := make(chan *vflv1.Frame, 64)
	ba := make(chan *vflv1.Frame, 64)
	done := make(chan struct{})
	var once sync.Once
	closeFn := func() { once.Do(func() { close(done) }) }
	a := &Conn{Stream: &pipeEnd{out: ab, in: ba, done: done}, close: closeFn}
	b := &Conn{Stream: &pipeEnd{out: ba, in: ab, done: done}, close: closeFn}
	return a, b
}

type pipeEnd struct {
	out  chan<- *vflv1.Frame
	in   <-chan *vflv1.Frame
	done chan struct{}
}

var errPipeClosed = fmt.Errorf("pipe closed")

func (p *pipeEnd) Send(f *vflv1.Frame) error {
	select {
	case p.out <- f:
		return nil
	case <-p.done:
		return errPipeClosed
	}
}

func (p *pipeEnd) Recv() (*vflv1.Frame, error) {
	// Frames sent before the pipe was closed are delivered first, as a
	// real transport delivers data before the end of the stream (a select
	// over both would drop them at random: a peer's last Abort with them).
	select {
	case f := <-p.in:
		return f, nil
	default:
	}
	select {
	case f := <-p.in:
		return f, nil
	case <-p.done:
		return nil, errPipeClosed
	}
}

// WrapConn returns c with its stream replaced by s (test proxies that
// duplicate, delay or break frames).
func WrapConn(c *Conn, s Stream) *Conn { return &Conn{Stream: s, Peer: c.Peer, close: c.close} }
