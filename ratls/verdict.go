package ratls

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
	"unicode/utf8"
)

// In TLS 1.3 a refusal inside the handshake reaches the refused side only
// as an alert ("bad certificate") with no reason, so an operator on that
// side cannot tell a wrong measurement from a revoked identity. When both
// ends are teeml, they negotiate ALPN protocol alpnVerdict instead of plain
// "h2": each side then completes the TLS handshake even if it refuses the
// other (crypto/tls has still checked the peer's proof of possession), and
// both exchange one verdict frame before any gRPC byte:
//
//	status (1 byte: 0 accept, 1 refuse) ‖ length (2 bytes, big endian) ‖ reason (UTF-8, ≤ maxVerdictReason)
//
// A refusing side sends its one-line reason and closes; the refused side
// returns that reason as its own error (check "refused-by-peer"). Nothing
// of the refused connection ever reaches gRPC. Peers that only offer "h2"
// (other RA-TLS implementations) get the plain behaviour: an alert.
const (
	alpnVerdict      = "teeml-ratls-verdict/1"
	alpnH2           = "h2"
	maxVerdictReason = 1024
	verdictAccept    = 0
	verdictRefuse    = 1
)

// CheckRefusedByPeer names a connection the other side refused; the
// message carries the other side's reason.
const CheckRefusedByPeer Check = "refused-by-peer"

// exchangeVerdicts sends this side's verdict (refusal = ours, nil to
// accept) and, when accepting, reads the peer's. It returns ours when we
// refuse, an *Error with CheckRefusedByPeer when the peer refuses, nil when
// both accept.
func exchangeVerdicts(ctx context.Context, conn net.Conn, ours error, peerSide string) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultHandshakeTimeout)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	defer conn.SetDeadline(time.Time{})

	frame := []byte{verdictAccept, 0, 0}
	if ours != nil {
		reason := oneLine(ours.Error())
		if len(reason) > maxVerdictReason {
			reason = truncateUTF8(reason, maxVerdictReason)
		}
		frame = append([]byte{verdictRefuse, 0, 0}, reason...)
		binary.BigEndian.PutUint16(frame[1:3], uint16(len(reason)))
	}
	if _, err := conn.Write(frame); err != nil && ours == nil {
		return &Error{Check: CheckHandshake, Msg: fmt.Sprintf("sending verdict: %v", err), Err: err}
	}
	if ours != nil {
		return ours
	}

	var hdr [3]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return &Error{Check: CheckHandshake, Msg: fmt.Sprintf("reading the %s's verdict: %v", peerSide, err), Err: err}
	}
	n := int(binary.BigEndian.Uint16(hdr[1:3]))
	switch {
	case hdr[0] == verdictAccept && n == 0:
		return nil
	case hdr[0] != verdictRefuse || n > maxVerdictReason:
		return &Error{Check: CheckHandshake, Msg: fmt.Sprintf("malformed verdict from the %s (status %d, %d bytes)", peerSide, hdr[0], n)}
	}
	reason := make([]byte, n)
	if _, err := io.ReadFull(conn, reason); err != nil {
		return &Error{Check: CheckHandshake, Msg: fmt.Sprintf("reading the %s's refusal: %v", peerSide, err), Err: err}
	}
	if !utf8.Valid(reason) {
		return &Error{Check: CheckRefusedByPeer, Msg: fmt.Sprintf("the %s refused this connection (reason not UTF-8)", peerSide)}
	}
	return &Error{Check: CheckRefusedByPeer, Msg: fmt.Sprintf("the %s refused this connection: %s", peerSide, oneLine(string(reason)))}
}

func truncateUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.TrimSpace(s[:n])
}
