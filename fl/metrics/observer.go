package metrics

import (
	"errors"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/ratls"
)

// Observer turns the aggregator's events into Records (Recorder) and
// Prometheus metrics (Prom, optional). It implements protocol.Observer.
// A Recorder failure (e.g. a full disk) is logged once and kept: Err
// returns the first one, and the scheduler, which checks it before it
// commits a round and after the round's last record (see
// scheduler.FailingObserver), fails the run with it. A run whose metrics
// file lost records is not a completed run: its report would silently miss
// what happened.
type Observer struct {
	rec  Recorder
	prom *Prom
	log  *slog.Logger

	mu    sync.Mutex
	round int
	sent  map[sentKey]sentModel
	err   error // the first failed write or sync
}

type sentKey struct {
	round int
	name  string
}

type sentModel struct {
	bytes   int64
	seconds float64
}

var (
	_ protocol.Observer            = (*Observer)(nil)
	_ scheduler.EvaluationObserver = (*Observer)(nil)
	_ scheduler.FailingObserver    = (*Observer)(nil)
)

// NewObserver returns an Observer writing to rec (Nop if nil) and updating
// prom (if not nil).
func NewObserver(rec Recorder, prom *Prom, log *slog.Logger) *Observer {
	if rec == nil {
		rec = Nop{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Observer{rec: rec, prom: prom, log: log, sent: map[sentKey]sentModel{}}
}

func (o *Observer) write(r Record) { o.failed(o.rec.Record(r)) }

// failed keeps err, the first failure of the Recorder, and logs it once.
func (o *Observer) failed(err error) {
	if err == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
		o.log.Error("metrics file: record not written; the run fails: "+err.Error(), "err", err)
	}
}

// Err returns the first record that could not be written (or synced), nil
// while every record was. It implements scheduler.FailingObserver.
func (o *Observer) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func (o *Observer) phase(name string, seconds float64) {
	if o.prom != nil && seconds > 0 {
		o.prom.phaseSeconds.WithLabelValues(name).Observe(seconds)
	}
}

// RoundOpened implements protocol.Observer.
func (o *Observer) RoundOpened(r int) {
	o.mu.Lock()
	o.round = r
	o.mu.Unlock()
	if o.prom != nil {
		o.prom.currentRound.Set(float64(r))
	}
}

// ModelSent implements protocol.Observer. The download record is written
// when the collaborator's update (with its own download time) arrives, or
// at the round's end for collaborators that never uploaded.
func (o *Observer) ModelSent(r int, name string, bytes int64, seconds float64) {
	o.mu.Lock()
	k := sentKey{r, name}
	s := o.sent[k]
	s.bytes += bytes // a retried download counts twice: it was sent twice
	s.seconds = seconds
	o.sent[k] = s
	o.mu.Unlock()
	if o.prom != nil {
		o.prom.bytesSent.Add(float64(bytes))
	}
}

func (o *Observer) takeSent(r int, name string) (sentModel, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := sentKey{r, name}
	s, ok := o.sent[k]
	delete(o.sent, k)
	return s, ok
}

// UpdateReceived implements protocol.Observer.
func (o *Observer) UpdateReceived(e protocol.UpdateEvent) {
	s, _ := o.takeSent(e.Round, e.Collaborator)
	dl := Record{Round: e.Round, Participant: e.Collaborator, Phase: PhaseDownload, Bytes: s.bytes,
		Seconds: e.DownloadSeconds, Source: "collaborator"}
	if e.DownloadSeconds <= 0 {
		dl.Seconds, dl.Source = s.seconds, "aggregator"
	}
	o.write(dl)
	tr := Record{Round: e.Round, Participant: e.Collaborator, Phase: PhaseTrain, Seconds: e.TrainSeconds,
		Examples: e.NumExamples, Metrics: e.Metrics}
	if e.TrainSeconds > 0 {
		tr.Source = "collaborator"
	}
	o.write(tr)
	o.write(Record{Round: e.Round, Participant: e.Collaborator, Phase: PhaseUpload, Seconds: e.Seconds,
		Bytes: e.Bytes, Source: "aggregator"})
	if o.prom != nil {
		o.prom.updatesReceived.Inc()
		o.prom.bytesReceived.Add(float64(e.Bytes))
	}
	o.phase(PhaseDownload, dl.Seconds)
	o.phase(PhaseTrain, e.TrainSeconds)
	o.phase(PhaseUpload, e.Seconds)
}

// MetricsReported implements protocol.Observer.
func (o *Observer) MetricsReported(e protocol.MetricsEvent) {
	m := make(map[string]float64, len(e.Metrics)+1)
	for k, v := range e.Metrics {
		m[k] = v
	}
	m["loss"] = e.Loss
	r := Record{Round: e.Round, Participant: e.Collaborator, Phase: PhaseValidate, Task: e.Task,
		Examples: e.NumExamples, Seconds: e.Seconds, Metrics: m}
	if e.Seconds > 0 {
		r.Source = "collaborator"
	}
	o.write(r)
	o.phase(PhaseValidate, e.Seconds)
}

// UpdateRefused implements protocol.Observer.
func (o *Observer) UpdateRefused(r int, name, reason, msg string) {
	o.write(Record{Round: r, Participant: name, Phase: PhaseRefused, Reason: reason, Message: msg})
	if o.prom != nil {
		o.prom.updatesRejected.WithLabelValues(reason).Inc()
	}
}

// strategyCheck extracts the check of a strategy rejection ("client "x":
// norm check: …"); only known checks become label values.
var strategyCheck = regexp.MustCompile(`: (id|examples|shape|finite|norm) check: `)

// StrategyReason is the Prometheus reason label of a strategy rejection.
func StrategyReason(msg string) string {
	if m := strategyCheck.FindStringSubmatch(msg); m != nil {
		return "strategy_" + m[1]
	}
	return "strategy_other"
}

// RoundClosed implements protocol.Observer: it writes the round's
// remaining download records, its rejections, the aggregate and round
// records, and syncs the Recorder (the round boundary).
func (o *Observer) RoundClosed(s protocol.RoundSummary) {
	o.mu.Lock()
	var stale []sentKey
	for k := range o.sent {
		if k.round <= s.Round {
			stale = append(stale, k)
		}
	}
	sort.Slice(stale, func(i, j int) bool {
		if stale[i].round != stale[j].round {
			return stale[i].round < stale[j].round
		}
		return stale[i].name < stale[j].name
	})
	o.mu.Unlock()
	for _, k := range stale {
		if sm, ok := o.takeSent(k.round, k.name); ok {
			o.write(Record{Round: k.round, Participant: k.name, Phase: PhaseDownload, Bytes: sm.bytes,
				Seconds: sm.seconds, Source: "aggregator"})
			o.phase(PhaseDownload, sm.seconds)
		}
	}
	rejected := make([]string, 0, len(s.Rejected))
	for c := range s.Rejected {
		rejected = append(rejected, c)
	}
	sort.Strings(rejected)
	for _, c := range rejected {
		reason := StrategyReason(s.Rejected[c])
		o.write(Record{Round: s.Round, Participant: c, Phase: PhaseRejected, Reason: reason, Message: s.Rejected[c]})
		if o.prom != nil {
			o.prom.updatesRejected.WithLabelValues(reason).Inc()
		}
	}
	o.write(Record{Round: s.Round, Participant: Aggregator, Phase: PhaseAggregate, Seconds: s.AggregateSeconds,
		Source: "aggregator"})
	o.phase(PhaseAggregate, s.AggregateSeconds)
	m := map[string]float64{"val_loss": s.EvalLoss}
	for k, v := range s.EvalMetrics {
		m["val_"+k] = v
	}
	for k, v := range s.LocalEvalMetrics {
		m["local_val_"+k] = v
	}
	for k, v := range s.Privacy { // dp_epsilon, dp_delta, … (fl/privacy)
		m[k] = v
	}
	o.write(Record{Round: s.Round, Participant: Aggregator, Phase: PhaseRound, Seconds: s.Seconds,
		Bytes: s.BytesIn + s.BytesOut, BytesIn: s.BytesIn, BytesOut: s.BytesOut,
		Participants: s.Participants, Accepted: s.Accepted, Rejected: rejected, Metrics: m, Source: "aggregator"})
	o.failed(o.rec.Sync())
	if o.prom != nil {
		o.prom.roundsCompleted.Inc()
		o.prom.roundSeconds.Observe(s.Seconds)
		o.prom.participants.Set(float64(len(s.Participants)))
		if e, ok := s.Privacy["dp_epsilon"]; ok {
			o.prom.privacySpent.WithLabelValues("epsilon").Set(e)
			o.prom.privacySpent.WithLabelValues("delta").Set(s.Privacy["dp_delta"])
		}
		for k, v := range finite(m) {
			if name, ok := strings.CutPrefix(k, "val_"); ok {
				o.prom.globalMetric.WithLabelValues("validation", name).Set(v)
			}
		}
	}
}

// FederationStopped implements scheduler.StopObserver: the stopped record.
func (o *Observer) FederationStopped(r int, reason string) {
	class := "gate"
	if strings.HasPrefix(reason, "privacy budget:") {
		class = "privacy_budget"
	}
	o.write(Record{Round: r, Participant: Aggregator, Phase: PhaseStopped, Reason: class, Message: reason, Source: "aggregator"})
	if err := o.rec.Sync(); err != nil {
		o.log.Warn("metrics file: sync failed", "err", err)
	}
}

// Evaluated implements scheduler.EvaluationObserver: it records the
// aggregator's evaluation of round r's new global model on its held-out
// test split (metrics such as test_loss, test_accuracy), the evaluate
// phase.
func (o *Observer) Evaluated(r int, seconds float64, m map[string]float64) {
	o.write(Record{Round: r, Participant: Aggregator, Phase: PhaseEvaluate, Seconds: seconds, Metrics: m,
		Source: "aggregator"})
	o.phase(PhaseEvaluate, seconds)
	if o.prom != nil {
		for k, v := range finite(m) {
			o.prom.globalMetric.WithLabelValues("test", k).Set(v)
		}
	}
}

// Attestation results of RA-TLS handshakes (Record.Result and the result
// label).
const (
	AttestAccepted = "accepted"
	// AttestRefused: this side refused the peer (evidence, policy,
	// identity, key binding, …).
	AttestRefused = "refused"
	// AttestRefusedByPeer: the peer refused this side.
	AttestRefusedByPeer = "refused_by_peer"
	// AttestError: the handshake failed before a verdict (network, TLS).
	AttestError = "error"
)

// Attestation records one RA-TLS handshake verdict on a peer verified for
// role (the label is the configured role, which keeps it bounded).
func (o *Observer) Attestation(peer, remote, role, result, reason string) {
	o.mu.Lock()
	r := o.round
	o.mu.Unlock()
	if peer == "" {
		peer = "unknown@" + remote
	}
	o.write(Record{Round: r, Participant: peer, Phase: PhaseAttestation, Result: result, Role: role, Reason: reason})
	if o.prom != nil {
		o.prom.attestation.WithLabelValues(result, role).Inc()
	}
}

// ObserveHandshakes wraps server credentials so that every handshake's
// verdict is reported to o.Attestation, with role the role peers are
// verified for. Client handshakes pass through unobserved.
func ObserveHandshakes(c credentials.TransportCredentials, role string, o *Observer) credentials.TransportCredentials {
	return &observedCreds{TransportCredentials: c, role: role, o: o}
}

type observedCreds struct {
	credentials.TransportCredentials
	role string
	o    *Observer
}

func (t *observedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := t.TransportCredentials.ServerHandshake(conn)
	remote := conn.RemoteAddr().String()
	if err != nil {
		var e *ratls.Error
		peer, result := "", AttestError
		if errors.As(err, &e) {
			peer = e.Peer
			if peer == "" && e.Claimed != "" {
				peer = e.Claimed + " (unverified)"
			}
			switch e.Check {
			case ratls.CheckHandshake:
			case ratls.CheckRefusedByPeer:
				result = AttestRefusedByPeer
			default:
				result = AttestRefused
			}
		}
		t.o.Attestation(peer, remote, t.role, result, err.Error())
		return c, ai, err
	}
	name := ""
	if a, ok := ai.(*ratls.AuthInfo); ok && a.Peer != nil {
		name = a.Peer.Name()
	}
	t.o.Attestation(name, remote, t.role, AttestAccepted, "")
	return c, ai, nil
}

func (t *observedCreds) Clone() credentials.TransportCredentials {
	return &observedCreds{TransportCredentials: t.TransportCredentials.Clone(), role: t.role, o: t.o}
}
