package protocol

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/teeml/teeml/fl/scheduler"
)

// TestRefusalReason checks that a refusal's class comes from the error's
// type, not its text, and that the status sent keeps code and message.
func TestRefusalReason(t *testing.T) {
	for _, c := range []struct {
		err    error
		code   codes.Code
		reason string
	}{
		{toStatus(&scheduler.Error{Kind: scheduler.Closed, Late: true, Msg: "round 1 is closed (current round 2 of 3)"}), codes.Aborted, "late"},
		{toStatus(&scheduler.Error{Kind: scheduler.Closed, Msg: "round 7 is not open (current round 1 of 3)"}), codes.Aborted, "wrong_round"},
		{toStatus(&scheduler.Error{Kind: scheduler.Duplicate, Msg: "collaborator \"c\" is already uploading an update"}), codes.AlreadyExists, "duplicate"},
		{toStatus(&scheduler.Error{Kind: scheduler.Stopped, Msg: "aggregator stopped: x"}), codes.Unavailable, "stopped"},
		{toStatus(fmt.Errorf("begin: %w", &scheduler.Error{Kind: scheduler.Invalid, Msg: "100% bad"})), codes.InvalidArgument, "decode"},
		{refused("shape", codes.InvalidArgument, "update from %q does not fit the global model: %v", "c", errors.New("x")), codes.InvalidArgument, "shape"},
		{status.Error(codes.Canceled, "context canceled"), codes.Canceled, "other"},
	} {
		if got := refusalReason(c.err); got != c.reason {
			t.Errorf("%v: reason %q, want %q", c.err, got, c.reason)
		}
		if got := status.Code(c.err); got != c.code {
			t.Errorf("%v: code %v, want %v", c.err, got, c.code)
		}
	}
	if got := status.Convert(toStatus(&scheduler.Error{Kind: scheduler.Invalid, Msg: "100% bad"})).Message(); got != "100% bad" {
		t.Errorf("message %q, want the scheduler's", got)
	}
}
