package metrics

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/teeml/teeml/internal/promserve"
)

// Prom holds the aggregator's Prometheus collectors, registered on a
// private registry (never the global default one, so tests and several
// aggregators in one process do not collide).
type Prom struct {
	reg *prometheus.Registry

	roundsCompleted prometheus.Counter
	roundSeconds    prometheus.Histogram
	currentRound    prometheus.Gauge
	participants    prometheus.Gauge
	privacySpent    *prometheus.GaugeVec
	bytesReceived   prometheus.Counter
	bytesSent       prometheus.Counter
	updatesReceived prometheus.Counter
	updatesRejected *prometheus.CounterVec
	attestation     *prometheus.CounterVec
	phaseSeconds    *prometheus.HistogramVec
	globalMetric    *prometheus.GaugeVec
}

// NewProm creates the collectors (and the Go runtime and process
// collectors) on a new registry.
func NewProm() *Prom {
	p := &Prom{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { p.reg.MustRegister(c) }
	p.roundsCompleted = prometheus.NewCounter(prometheus.CounterOpts{Name: "teeml_fl_rounds_completed_total",
		Help: "Federated rounds aggregated."})
	p.roundSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "teeml_fl_round_seconds",
		Help:    "Wall-clock seconds from a round's opening to its aggregate.",
		Buckets: prometheus.ExponentialBuckets(0.1, 2, 16)})
	p.currentRound = prometheus.NewGauge(prometheus.GaugeOpts{Name: "teeml_fl_current_round",
		Help: "The round currently open (1-based)."})
	p.participants = prometheus.NewGauge(prometheus.GaugeOpts{Name: "teeml_fl_participants",
		Help: "Collaborators whose update arrived in time in the last closed round."})
	p.privacySpent = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "teeml_fl_privacy_spent",
		Help: "Differential privacy spent after the last closed round (fl/privacy): epsilon at the plan's delta, and that delta."},
		[]string{"param"})
	p.bytesReceived = prometheus.NewCounter(prometheus.CounterOpts{Name: "teeml_fl_bytes_received_total",
		Help: "Encoded bytes of the updates that passed the protocol checks (refused uploads are not counted)."})
	p.bytesSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "teeml_fl_bytes_sent_total",
		Help: "Encoded global-model bytes of completed downloads (a retried download counts again)."})
	p.updatesReceived = prometheus.NewCounter(prometheus.CounterOpts{Name: "teeml_fl_updates_received_total",
		Help: "Updates that passed the protocol checks."})
	p.updatesRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_fl_updates_rejected_total",
		Help: "Updates refused by the protocol (reason shape, checksum, wrong_round, late, duplicate, kind, examples, decode, stopped, other) or rejected by the strategy (reason strategy_<check>)."},
		[]string{"reason"})
	p.attestation = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_fl_attestation_results_total",
		Help: "RA-TLS handshakes by verdict (accepted, refused) and the role peers were verified for."},
		[]string{"result", "role"})
	p.phaseSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "teeml_fl_phase_seconds",
		Help:    "Seconds per phase: download, train, upload, validate (per collaborator), aggregate, evaluate (aggregator).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 18)}, []string{"phase"})
	p.globalMetric = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "teeml_fl_global_model_metric",
		Help: "Latest metrics of the global model: source validation (collaborators' aggregated_model_validation) or test (aggregator's held-out split)."},
		[]string{"source", "metric"})
	for _, c := range []prometheus.Collector{p.roundsCompleted, p.roundSeconds, p.currentRound, p.participants, p.privacySpent,
		p.bytesReceived, p.bytesSent, p.updatesReceived, p.updatesRejected, p.attestation, p.phaseSeconds, p.globalMetric,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return p
}

// Registry is the private registry.
func (p *Prom) Registry() *prometheus.Registry { return p.reg }

// Server is a running /metrics and health endpoint (internal/promserve).
type Server = promserve.Server

// Serve listens on addr and serves p at /metrics (and /healthz, /readyz)
// until Close or ctx ends.
func Serve(ctx context.Context, addr string, p *Prom, log *slog.Logger) (*Server, error) {
	return promserve.Serve(ctx, addr, promserve.Options{Gatherer: p.reg, Logger: log, Service: "fl aggregator"})
}
