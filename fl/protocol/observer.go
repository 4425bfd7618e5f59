package protocol

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Observer receives the Aggregator's events, for metrics files and
// Prometheus (package fl/metrics). Calls are synchronous and some are made
// with the Aggregator's lock held, so implementations must be quick and
// must not call back into the Aggregator. Every event is informational:
// nothing an Observer returns or does affects the protocol.
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
	// RoundClosed: round s.Round was aggregated (s.Rejected names the
	// updates the strategy refused).
	RoundClosed(s RoundSummary)
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

// refusalReason classifies a refused upload for UpdateRefused: a short,
// bounded set of classes (they become Prometheus label values).
func refusalReason(err error) string {
	st := status.Convert(err)
	switch st.Code() {
	case codes.DataLoss:
		return "checksum"
	case codes.AlreadyExists:
		return "duplicate"
	case codes.Aborted:
		if strings.Contains(st.Message(), "is closed") {
			return "late" // the round closed before or while it was uploaded
		}
		return "wrong_round"
	case codes.FailedPrecondition:
		return "stopped"
	case codes.InvalidArgument:
		msg := st.Message()
		switch {
		case strings.Contains(msg, "does not fit the global model"):
			return "shape"
		case strings.Contains(msg, "num_examples"):
			return "examples"
		case strings.Contains(msg, "is of kind"):
			return "kind"
		}
		return "decode"
	}
	return "other"
}
