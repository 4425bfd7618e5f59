package run

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/teeml/teeml/internal/promserve"
	"github.com/teeml/teeml/vfl/bridge"
)

// partyMetrics are a party's Prometheus metrics, in a registry of its own
// (no global state), served on Options.MetricsAddr.
type partyMetrics struct {
	reg        *prometheus.Registry
	iterations prometheus.Counter
	iterSecs   prometheus.Histogram
	bytes      *prometheus.CounterVec
	dups       prometheus.Counter
	sessions   *prometheus.CounterVec
	resumedAt  prometheus.Gauge
}

func newPartyMetrics(role string) *partyMetrics {
	c := prometheus.Labels{"role": role}
	m := &partyMetrics{
		reg: prometheus.NewRegistry(),
		iterations: prometheus.NewCounter(prometheus.CounterOpts{Name: "teeml_vfl_iterations_committed_total",
			Help: "Iterations this party committed (including iterations redone after a resume).", ConstLabels: c}),
		iterSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "teeml_vfl_iteration_seconds",
			Help: "Wall time of one iteration, start to commit.", ConstLabels: c,
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_vfl_bridge_bytes_total",
			Help: "Serialized bridge frame bytes, by direction.", ConstLabels: c}, []string{"direction"}),
		dups: prometheus.NewCounter(prometheus.CounterOpts{Name: "teeml_vfl_bridge_duplicates_total",
			Help: "Duplicate Start/Data/Commit frames ignored.", ConstLabels: c}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_vfl_sessions_total",
			Help: "Bridge sessions by outcome (done, lost, refused, failed).", ConstLabels: c}, []string{"outcome"}),
		resumedAt: prometheus.NewGauge(prometheus.GaugeOpts{Name: "teeml_vfl_resume_iteration",
			Help: "Iteration the current session resumed from (0: fresh start).", ConstLabels: c}),
	}
	m.reg.MustRegister(m.iterations, m.iterSecs, m.bytes, m.dups, m.sessions, m.resumedAt)
	return m
}

// observe records one committed iteration and the traffic since prev.
func (m *partyMetrics) observe(took time.Duration, st, prev bridge.Stats) {
	m.iterations.Inc()
	m.iterSecs.Observe(took.Seconds())
	m.bytes.WithLabelValues("sent").Add(float64(st.BytesSent - prev.BytesSent))
	m.bytes.WithLabelValues("received").Add(float64(st.BytesRecv - prev.BytesRecv))
	m.dups.Add(float64(st.Duplicates - prev.Duplicates))
}

// serve exposes /metrics on addr until ctx ends; it returns the bound
// address.
func (m *partyMetrics) serve(ctx context.Context, addr string, log *slog.Logger) (string, func(), error) {
	s, err := promserve.Serve(ctx, addr, promserve.Options{Gatherer: m.reg, Logger: log, Service: "vfl"})
	if err != nil {
		return "", nil, err
	}
	return s.Addr(), func() {
		if err := s.Close(); err != nil {
			log.Warn("metrics server", "err", err)
		}
	}, nil
}
