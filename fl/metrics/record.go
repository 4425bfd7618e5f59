// Package metrics makes a horizontal-FL run observable: a versioned
// metrics file (JSONL, one Record per line, in the run directory) that
// `teeml fl report` turns into a plot and a table, and Prometheus
// collectors on a private registry served at /metrics by the aggregator.
//
// The aggregator feeds both through an Observer (a protocol.Observer that
// is also a scheduler.EvaluationObserver: Evaluated gets the server-side
// evaluation of every round, timed apart from the aggregation), and
// ObserveHandshakes for RA-TLS attestation results.
package metrics

import (
	"math"
	"time"
)

// Version is the Record schema version written in every line ("v").
// Readers refuse lines with a higher version.
const Version = 1

// Phases of a Record.
const (
	// PhaseDownload: a collaborator fetched the round's global model.
	// Seconds are the collaborator's measurement when it reported one
	// (Source "collaborator"), else the aggregator's send time; Bytes are
	// the bytes the aggregator sent.
	PhaseDownload = "download"
	// PhaseTrain: a collaborator's local training (its own measurement);
	// Examples and the training Metrics.
	PhaseTrain = "train"
	// PhaseUpload: an update received; Seconds from its header's arrival
	// to its last chunk (aggregator side), Bytes received.
	PhaseUpload = "upload"
	// PhaseValidate: a collaborator's validation task (Task is
	// aggregated_model_validation or locally_tuned_model_validation);
	// Metrics include "loss".
	PhaseValidate = "validate"
	// PhaseRefused: the protocol refused an upload (Reason is a short
	// class, Message the refusal).
	PhaseRefused = "refused"
	// PhaseRejected: the strategy rejected an update (Reason is its
	// one-line reason).
	PhaseRejected = "rejected"
	// PhaseAggregate: the strategy's aggregation of a round (participant
	// "aggregator"): AggregateFit alone, without the evaluation.
	PhaseAggregate = "aggregate"
	// PhaseEvaluate: the aggregator's evaluation of the round's new global
	// model on its held-out test split (Metrics test_loss, test_accuracy…).
	PhaseEvaluate = "evaluate"
	// PhaseRound: a closed round (participant "aggregator"): Seconds,
	// Bytes = BytesIn + BytesOut, Participants, Accepted, Rejected and
	// Metrics "val_<m>" (sample-weighted aggregated_model_validation: the
	// round's input model on the collaborators' data) and "local_val_<m>"
	// (locally_tuned_model_validation), and with differential privacy the
	// round's accounting "dp_epsilon", "dp_delta", "dp_clip_norm",
	// "dp_sampled", … (fl/privacy).
	PhaseRound = "round"
	// PhaseAttestation: an RA-TLS handshake verdict on a peer (Result
	// accepted or refused, Role the role it was verified for, Reason).
	PhaseAttestation = "attestation"
	// PhaseResume: the aggregator resumed after the last completed round
	// Round; records of later rounds written before were dropped.
	PhaseResume = "resume"
	// PhaseStopped: the federation stopped before round Round, which the
	// strategy refused to open (Reason "privacy_budget" or "gate",
	// Message its one line).
	PhaseStopped = "stopped"
)

// Aggregator is the Participant of aggregator-side records.
const Aggregator = "aggregator"

// Record is one line of the metrics file.
type Record struct {
	V           int                `json:"v"`
	Time        time.Time          `json:"time"`
	Round       int                `json:"round"`
	Participant string             `json:"participant"`
	Phase       string             `json:"phase"`
	Seconds     float64            `json:"seconds"`
	Bytes       int64              `json:"bytes"`
	Metrics     map[string]float64 `json:"metrics,omitempty"`

	// Source says who measured Seconds: "collaborator" or "aggregator".
	Source   string `json:"source,omitempty"`
	Task     string `json:"task,omitempty"`
	Examples int    `json:"examples,omitempty"`
	// Round records.
	BytesIn      int64    `json:"bytes_in,omitempty"`
	BytesOut     int64    `json:"bytes_out,omitempty"`
	Participants []string `json:"participants,omitempty"`
	Accepted     []string `json:"accepted,omitempty"`
	Rejected     []string `json:"rejected,omitempty"`
	// Attestation, refused and rejected records.
	Result  string `json:"result,omitempty"`
	Role    string `json:"role,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// finite returns m without NaN and ±Inf values (JSON cannot carry them;
// a missing metric is shown as missing rather than as a fake number), nil
// if nothing is left.
func finite(m map[string]float64) map[string]float64 {
	var out map[string]float64
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		if out == nil {
			out = make(map[string]float64, len(m))
		}
		out[k] = v
	}
	return out
}

func finiteOr0(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}
