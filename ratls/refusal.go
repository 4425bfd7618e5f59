package ratls

import (
	"errors"
	"strconv"
	"strings"

	"google.golang.org/grpc/status"
)

// Refusal is an RA-TLS refusal recognised in an error: one side's
// verification check failed, or the peer refused our certificate.
// Retrying cannot fix it, unlike an unreachable peer.
type Refusal struct {
	// Check is the failed check (CheckHandshake when the peer refused
	// our certificate with a TLS alert).
	Check Check
	// Reason is the one line that names the side, the peer and the check,
	// e.g. `ratls: client handshake with 127.0.0.1:7443: peer "agg": … (policy)`.
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// refusalChecks are the checks whose failure is a decision, not a broken
// connection.
var refusalChecks = map[Check]bool{
	CheckChain: true, CheckParse: true, CheckBinding: true, CheckSignature: true, CheckValidity: true,
	CheckIdentity: true, CheckEvidence: true, CheckPolicy: true, CheckProofOfPossession: true, CheckRefusedByPeer: true,
}

// remoteAlert is crypto/tls's text for a TLS alert the peer sent: it
// refused the handshake (our certificate, or its own verdict).
const remoteAlert = "remote error: tls:"

// RefusalOf returns the RA-TLS refusal in err, if there is one. err may
// carry the handshake's *Error in its chain, or be a gRPC status into which
// gRPC flattened the handshake error when a connection failed (the status
// then holds only the text this package wrote; RefusalOf reads back what
// *Error.Error and the handshake wrapping put there, so callers need not).
// A plain connection failure (refused, reset, timed out) is not a refusal.
func RefusalOf(err error) (*Refusal, bool) {
	if err == nil {
		return nil, false
	}
	var e *Error
	if errors.As(err, &e) {
		if refusalChecks[e.Check] || strings.Contains(e.Msg, remoteAlert) {
			return &Refusal{Check: e.Check, Reason: reasonLine(err.Error())}, true
		}
		return nil, false
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	i := strings.Index(msg, "ratls: ")
	if i < 0 {
		return nil, false
	}
	// gRPC quotes the transport's error with %q ("connection error: desc =
	// \"transport: …\""): unquote it when it is quoted.
	if q := strings.LastIndex(msg[:i], `"`); q >= 0 {
		if u, err := strconv.Unquote(msg[q:]); err == nil {
			msg = u
		}
	}
	line := reasonLine(msg)
	check := CheckHandshake
	if open := strings.LastIndex(line, " ("); open >= 0 && strings.HasSuffix(line, ")") {
		check = Check(line[open+2 : len(line)-1])
	}
	if refusalChecks[check] || (check == CheckHandshake && strings.Contains(line, remoteAlert)) {
		return &Refusal{Check: check, Reason: line}, true
	}
	return nil, false
}

// reasonLine cuts s to the ratls line.
func reasonLine(s string) string {
	if i := strings.Index(s, "ratls: "); i >= 0 {
		s = s[i:]
	}
	return oneLine(s)
}
