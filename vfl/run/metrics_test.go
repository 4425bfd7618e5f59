package run

import (
	"context"
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
