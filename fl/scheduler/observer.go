package scheduler

// Observer receives the scheduler's events, for metrics files and
// Prometheus (package fl/metrics). Calls are synchronous and some are made
// with the Scheduler's lock held, so implementations must be quick and
// must not call back into the Scheduler (or the Aggregator serving it).
// Events are informational: nothing an Observer does affects the protocol,
// except that a FailingObserver's Err fails the run.
type Observer interface {
	// RoundOpened: round r starts accepting work.
	RoundOpened(r int)
	// ModelSent: the global model of round r was streamed to collaborator
	// (bytes encoded, seconds the server-side send took).
	ModelSent(r int, collaborator string, bytes int64, seconds float64)
	// MetricsReported: a validation task's result arrived.
	MetricsReported(e MetricsEvent)
	// UpdateReceived: an update passed the protocol checks and counts for
	// round e.Round (the strategy may still reject it).
	UpdateReceived(e UpdateEvent)
	// UpdateRefused: an upload that named collaborator was refused by the
	// protocol (not the strategy): reason is a short class ("shape",
	// "checksum", "wrong_round", "late" (the round closed while it
	// uploaded), "duplicate", "kind", "examples", "decode", "stopped",
	// "other") and msg the one-line message sent back.
	UpdateRefused(r int, collaborator, reason, msg string)
	// RoundClosed: round s.Round was aggregated, evaluated and committed
	// (s.Rejected names the updates the strategy refused).
	RoundClosed(s RoundSummary)
}

// EvaluationObserver is an Observer that also wants the server-side
// evaluation of every new global model (Config.Evaluator): round r's
// model, evaluated in seconds, with the evaluator's metrics. It is called
// after AggregateFit and before RoundClosed, only when the evaluation
// succeeded.
type EvaluationObserver interface {
	Evaluated(r int, seconds float64, m map[string]float64)
}

// StopObserver is an Observer that also wants to know when a RoundGate
// stopped the federation before round r (reason: the gate's one line).
type StopObserver interface {
	FederationStopped(r int, reason string)
}

// FailingObserver is an Observer that records events durably (the
// metrics file) and can fail to: Err returns the first record that could
// not be written. The scheduler checks it before committing a round (the
// round is then not checkpointed and runs again after a restart) and
// after RoundClosed (the round's own records), and fails the run with
// "round N: " and Err's text, which names the store (fl/metrics: "metrics:
// PATH: …"): records silently lost are a failed run, not a warning.
type FailingObserver interface {
	Err() error
}

// MetricsEvent is one ReportMetrics call that was accepted.
type MetricsEvent struct {
	Round        int
	Collaborator string
	Task         string
	NumExamples  int
	Loss         float64
	Metrics      map[string]float64
	// Seconds is the collaborator's evaluation time (0 if not reported).
	Seconds float64
}

// UpdateEvent is one accepted upload.
type UpdateEvent struct {
	Round        int
	Collaborator string
	NumExamples  int
	// Metrics are the collaborator's training metrics.
	Metrics map[string]float64
	// Bytes and Seconds are the encoded bytes received and the time from
	// the header's arrival to the last chunk, measured by the aggregator.
	Bytes   int64
	Seconds float64
	// DownloadSeconds and TrainSeconds are the collaborator's own
	// measurements (0 when it did not report them).
	DownloadSeconds, TrainSeconds float64
}

// NopObserver ignores every event.
type NopObserver struct{}

func (NopObserver) RoundOpened(int)                           {}
func (NopObserver) ModelSent(int, string, int64, float64)     {}
func (NopObserver) MetricsReported(MetricsEvent)              {}
func (NopObserver) UpdateReceived(UpdateEvent)                {}
func (NopObserver) UpdateRefused(int, string, string, string) {}
func (NopObserver) RoundClosed(RoundSummary)                  {}
