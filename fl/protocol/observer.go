package protocol

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/teeml/teeml/fl/scheduler"
)

// Observer receives the aggregator's events, for metrics files and
// Prometheus (package fl/metrics); see scheduler.Observer. An Observer
// that also implements scheduler.EvaluationObserver gets the server-side
// evaluation of every round.
type Observer = scheduler.Observer

// MetricsEvent is one ReportMetrics call that was accepted.
type MetricsEvent = scheduler.MetricsEvent

// UpdateEvent is one accepted upload.
type UpdateEvent = scheduler.UpdateEvent

// NopObserver ignores every event.
type NopObserver = scheduler.NopObserver

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
