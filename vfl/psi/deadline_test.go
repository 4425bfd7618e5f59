package psi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	psiv1 "github.com/teeml/teeml/api/proto/teeml/psi/v1"
)

// stalledStream never delivers a message; sends block too when blockSend.
// Both return once ctx ends, as a gRPC stream does when its context is
// cancelled.
type stalledStream struct {
	ctx       context.Context
	blockSend bool
}

func (s *stalledStream) Send(*psiv1.PSIMessage) error {
	if s.blockSend {
		<-s.ctx.Done()
		return errors.New("stream cancelled")
	}
	return nil
}

func (s *stalledStream) Recv() (*psiv1.PSIMessage, error) {
	<-s.ctx.Done()
	return nil, errors.New("stream cancelled")
}

func TestMessageDeadlines(t *testing.T) {
	set, err := Prepare(strings.NewReader("a\n"), "ids", PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for _, c := range []struct {
		blockSend bool
		want      string
	}{
		{false, `no Hello from "stuck" within 200ms`},
		{true, `peer "stuck" took no message for 200ms`},
	} {
		ctx, cancel := context.WithCancelCause(context.Background())
		st := &stalledStream{ctx: ctx, blockSend: c.blockSend}
		cfg := Config{Role: Leader, Mode: Both, ConfigHash: "h", Self: "me", MessageTimeout: 200 * time.Millisecond, Logger: quietLogger()}
		start := time.Now()
		_, err := run(ctx, cancel, st, true, "stuck", cfg, set, t.TempDir()+"/out")
		cancel(nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("blockSend=%v: want one line with %q, got %v", c.blockSend, c.want, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("deadline took %v", d)
		}
	}
}
