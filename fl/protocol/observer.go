package protocol

import (
	"errors"

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

// refusedError is a refusal the aggregator sends back: its gRPC status
// (what the collaborator receives) and, for a refused upload, its class
// for UpdateRefused.
type refusedError struct {
	st     *status.Status
	reason string
}

// refused is a refusal of class reason (see refusalReason) with the gRPC
// status code and the one-line message format.
func refused(reason string, code codes.Code, format string, args ...any) error {
	return &refusedError{st: status.Newf(code, format, args...), reason: reason}
}

func (e *refusedError) Error() string { return e.st.Err().Error() }

// GRPCStatus makes the refusal the status gRPC sends (and status.FromError
// sees).
func (e *refusedError) GRPCStatus() *status.Status { return e.st }

// refusalReason classifies a refused upload for UpdateRefused: a short,
// bounded set of classes (they become Prometheus label values): shape,
// checksum, wrong_round, late, duplicate, kind, examples, decode, stopped,
// or other for a status error that is not one of the aggregator's
// refusals.
func refusalReason(err error) string {
	if e, ok := errors.AsType[*refusedError](err); ok && e.reason != "" {
		return e.reason
	}
	return "other"
}
