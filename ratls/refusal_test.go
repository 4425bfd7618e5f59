package ratls

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// flatten is what gRPC makes of a failed client handshake: a status whose
// message quotes the handshake error's text.
func flatten(err error) error {
	return status.Error(codes.Unavailable, "connection error: desc = "+strconv.Quote("transport: authentication handshake failed: "+err.Error()))
}

func TestRefusalOf(t *testing.T) {
	policy := fmt.Errorf("ratls: client handshake with 127.0.0.1:7443: %w", &Error{Peer: "agg", Check: CheckPolicy, Msg: `mr_enclave 3fa2… not allowed for role "aggregator"`})
	alert := fmt.Errorf("ratls: client handshake with 127.0.0.1:7443: %w", &Error{Check: CheckHandshake, Msg: "remote error: tls: bad certificate (the peer refused our certificate)"})
	verdict := fmt.Errorf("ratls: client handshake with 127.0.0.1:7443: %w", &Error{Peer: "aggregator", Check: CheckRefusedByPeer, Msg: `the server refused this connection: peer "col-4" (unverified): not a member (identity)`})
	eof := fmt.Errorf("ratls: server handshake with 127.0.0.1:5555: %w", &Error{Check: CheckHandshake, Msg: "EOF", Err: io.EOF})
	for _, tc := range []struct {
		name  string
		err   error
		ok    bool
		check Check
		want  string
	}{
		{"policy", policy, true, CheckPolicy, `ratls: client handshake with 127.0.0.1:7443: peer "agg": mr_enclave 3fa2… not allowed for role "aggregator" (policy)`},
		{"policy through gRPC", flatten(policy), true, CheckPolicy, `ratls: client handshake with 127.0.0.1:7443: peer "agg": mr_enclave 3fa2… not allowed for role "aggregator" (policy)`},
		{"peer refused our certificate", alert, true, CheckHandshake, "ratls: client handshake with 127.0.0.1:7443: peer: remote error: tls: bad certificate (the peer refused our certificate) (handshake)"},
		{"peer refused, through gRPC", flatten(alert), true, CheckHandshake, "ratls: client handshake with 127.0.0.1:7443: peer: remote error: tls: bad certificate (the peer refused our certificate) (handshake)"},
		{"server's verdict through gRPC", flatten(verdict), true, CheckRefusedByPeer, `ratls: client handshake with 127.0.0.1:7443: peer "aggregator": the server refused this connection: peer "col-4" (unverified): not a member (identity) (refused-by-peer)`},
		{"EOF is no refusal", eof, false, "", ""},
		{"EOF through gRPC", flatten(eof), false, "", ""},
		{"connection refused", status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\""), false, "", ""},
		{"plain error", errors.New("boom"), false, "", ""},
		{"nil", nil, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := RefusalOf(tc.err)
			if ok != tc.ok {
				t.Fatalf("RefusalOf(%v) ok = %v, want %v", tc.err, ok, tc.ok)
			}
			if !ok {
				return
			}
			if r.Check != tc.check || r.Reason != tc.want || r.Error() != tc.want {
				t.Errorf("RefusalOf(%v) = %q (%s), want %q (%s)", tc.err, r.Reason, r.Check, tc.want, tc.check)
			}
		})
	}
}
