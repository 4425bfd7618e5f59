package dashboard_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/teeml/teeml/dashboard"
)

func TestPromSource(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_requests_total"}, []string{"model", "protocol", "outcome"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x_request_seconds"}, []string{"model"})
	ref := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_refusals_total"}, []string{"reason"})
	reg.MustRegister(req, lat, ref)
	req.WithLabelValues("a", "rest", "ok").Add(3)
	req.WithLabelValues("a", "grpc", "ok").Add(1)
	req.WithLabelValues("a", "rest", "busy").Add(2)
	req.WithLabelValues("b", "rest", "internal").Add(1)
	lat.WithLabelValues("a").Observe(0.5)
	lat.WithLabelValues("a").Observe(1.5)
	ref.WithLabelValues("busy").Add(2)
	ref.WithLabelValues("internal").Add(1)
	ref.WithLabelValues("unauthenticated").Add(4)
	since := time.Now()
	p := &dashboard.PromSource{Service: "inference", Gatherer: reg, Since: since, Requests: "x_requests_total", Latency: "x_request_seconds",
		Refusals: "x_refusals_total", OKOutcome: "ok", ErrorOutcome: "internal"}
	rows, err := p.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []dashboard.ServiceStats{
		{Service: "inference", Endpoint: "a", Since: since, Requests: 6, Refused: 2, LatencySeconds: 1},
		{Service: "inference", Endpoint: "b", Since: since, Requests: 1, Errors: 1},
		{Service: "inference", Endpoint: "all", Since: since, Requests: 7, Refused: 7, Errors: 1, LatencySeconds: 1},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, rows[i], want[i])
		}
	}
	if tot, err := p.Total(); err != nil || tot != 7 {
		t.Errorf("total %v %v", tot, err)
	}
}
