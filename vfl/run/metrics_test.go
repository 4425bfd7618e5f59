package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/vfl/bridge"
)

func TestMetricsEndpoint(t *testing.T) {
	m := newPartyMetrics(RoleLeader)
	addr, stop, err := m.serve(context.Background(), "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	m.observe(3*time.Millisecond, bridge.Stats{BytesSent: 100, BytesRecv: 40, Duplicates: 2}, bridge.Stats{})
	m.observe(3*time.Millisecond, bridge.Stats{BytesSent: 150, BytesRecv: 90, Duplicates: 2}, bridge.Stats{BytesSent: 100, BytesRecv: 40, Duplicates: 2})
	m.sessions.WithLabelValues(outcome(bridge.ErrPeerLost)).Inc()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`teeml_vfl_iterations_committed_total{role="leader"} 2`,
		`teeml_vfl_bridge_bytes_total{direction="sent",role="leader"} 150`,
		`teeml_vfl_bridge_bytes_total{direction="received",role="leader"} 90`,
		`teeml_vfl_bridge_duplicates_total{role="leader"} 2`,
		`teeml_vfl_sessions_total{outcome="lost",role="leader"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s:\n%s", want, b)
		}
	}
}

// Giving up on reconnecting is a failed session even when the last dial
// error it wraps is a lost peer.
func TestOutcomeOfGivingUp(t *testing.T) {
	lost := fmt.Errorf("stream: %w", bridge.ErrPeerLost)
	if got := outcome(lost); got != "lost" {
		t.Fatalf("lost peer: %s", got)
	}
	gaveUp := fmt.Errorf("vfl leader: %w for 1m0s: %w", errNoChannel, lost)
	if got := outcome(gaveUp); got != "failed" {
		t.Errorf("giving up: %s, want failed", got)
	}
	if !errors.Is(gaveUp, bridge.ErrPeerLost) || gaveUp.Error() != "vfl leader: no working channel to the peer for 1m0s: stream: "+bridge.ErrPeerLost.Error() {
		t.Errorf("giving up lost its cause or text: %v", gaveUp)
	}
}
