package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// ErrorKind classifies a refusal of the scheduler (the transport maps it to
// its own codes: fl/protocol to gRPC status codes).
type ErrorKind int

const (
	// Closed: the request is for a round that is closed or not open yet
	// (the collaborator should ask for the current round's tasks).
	Closed ErrorKind = iota + 1
	// Duplicate: the collaborator already uploaded (or is uploading) its
	// update for the round.
	Duplicate
	// Stopped: the federation failed; it resumes from its last completed
	// round when restarted.
	Stopped
	// Invalid: a malformed request.
	Invalid
)

// Error is a refusal of a collaborator's request; Msg is the one-line
// message to send back.
type Error struct {
	Kind ErrorKind
	Msg  string
	// Late (Closed only): the round was open and has closed, so the
	// request came too late; otherwise the round is not open yet.
	Late bool
}

func (e *Error) Error() string { return e.Msg }

func refuse(k ErrorKind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// IsKind reports whether err is (or wraps) an *Error of kind k.
func IsKind(err error, k ErrorKind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// Action is what Tasks tells a collaborator to do.
type Action int

const (
	// Run the round's tasks.
	Run Action = iota + 1
	// Wait: the collaborator finished the current round, or it is closed
	// and the next one not open yet.
	Wait
	// Done: the federation is over.
	Done
)

// Assignment is the answer to Tasks.
type Assignment struct {
	Action Action
	// Round is the current round (Rounds when Done).
	Round int
	// Tasks and Config are set for Run.
	Tasks  []string
	Config strategy.Config
}

// Expected reports whether name is one of the expected collaborators.
func (s *Scheduler) Expected(name string) bool { return s.expected[name] }

// Refused records the one-line refusal of a request from name (shown in
// the "round waits for" line); unknown names are ignored.
func (s *Scheduler) Refused(name, msg string) {
	if st := s.collabs[name]; st != nil {
		s.mu.Lock()
		st.lastErr = msg
		s.mu.Unlock()
	}
}

// touch records activity of name; s.mu held.
func (s *Scheduler) touch(name, activity string) {
	st := s.collabs[name]
	if !st.connected {
		st.connected = true
		s.log.Info("collaborator connected", "collaborator", name, "round", s.round)
	}
	st.seen = time.Now()
	st.round = s.round
	st.activity = activity
}

// Tasks is a collaborator asking what to do.
func (s *Scheduler) Tasks(name string) (Assignment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return Assignment{}, s.stopped()
	}
	if s.done {
		st := s.collabs[name]
		if !st.toldDone {
			st.toldDone = true
			s.log.Info("collaborator finished", "collaborator", name)
			s.signal()
		}
		return Assignment{Action: Done, Round: s.cfg.Rounds}, nil
	}
	if _, ok := s.updates[name]; ok || s.round <= 0 || s.saLateComer(name) {
		return Assignment{Action: Wait, Round: max(s.round, -s.round)}, nil
	}
	s.touch(name, "asked for tasks")
	s.log.Info("collaborator starts round", "collaborator", name, "round", s.round)
	return Assignment{Action: Run, Round: s.round,
		Tasks:  []string{TaskAggregatedModelValidation, TaskTrain, TaskLocallyTunedModelValidation},
		Config: s.config}, nil
}

// stopped is the answer once Run failed: Stopped, so that collaborators
// keep retrying and continue once the aggregator is restarted; s.mu held.
// TasksWait is Tasks as a long poll: while the answer is Wait it holds
// the caller, at most wait, until the answer may have changed (a round
// opened, the federation finished or failed), and asks again. It returns
// the first answer that is not Wait, or Wait once wait has passed; held
// says whether it waited at all. A ctx that ends (the caller went away)
// ends the wait with ctx's error.
func (s *Scheduler) TasksWait(ctx context.Context, name string, wait time.Duration) (a Assignment, held bool, err error) {
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		changed := s.changed // before Tasks: a change after it closes this one
		s.mu.Unlock()
		a, err = s.Tasks(name)
		if err != nil || a.Action != Wait || wait <= 0 {
			return a, held, err
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		held = true
		s.polls.Add(1)
		select {
		case <-changed:
			s.polls.Add(-1)
		case <-timeout:
			s.polls.Add(-1)
			return a, held, nil
		case <-ctx.Done():
			s.polls.Add(-1)
			return Assignment{}, held, ctx.Err()
		}
	}
}

func (s *Scheduler) stopped() error {
	return refuse(Stopped, "aggregator stopped: %v; it resumes from its last completed round when restarted", s.failed)
}

// roundCheck refuses a request for another round than the current one; s.mu held.
func (s *Scheduler) roundCheck(round int64) error {
	if s.failed != nil {
		return s.stopped()
	}
	if s.done || round != int64(s.round) {
		cur := max(s.round, -s.round)
		if round < int64(cur) || (round == int64(cur) && s.round < 0) || s.done {
			return &Error{Kind: Closed, Late: true, Msg: fmt.Sprintf("round %d is closed (current round %d of %d)", round, cur, s.cfg.Rounds)}
		}
		return refuse(Closed, "round %d is not open (current round %d of %d)", round, cur, s.cfg.Rounds)
	}
	return nil
}

// discardLate logs an update for a round that is no longer open; err is
// roundCheck's answer, sent back to the collaborator (Closed: it asks for
// the current round's tasks).
func (s *Scheduler) discardLate(name string, round int64, err error) {
	if !IsKind(err, Closed) {
		return
	}
	s.log.Warn(fmt.Sprintf("late update from %s discarded: %s", name, err), "collaborator", name, "round", round)
}

// Model is name starting to download the global model of round: it
// returns the model and the round number.
func (s *Scheduler) Model(name string, round int64) (tensor.Weights, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.roundCheck(round); err != nil {
		return nil, 0, err
	}
	s.touch(name, "downloading the model")
	return s.global, s.round, nil
}

// ModelSent is name's download of round's model finished: bytes encoded
// in seconds.
func (s *Scheduler) ModelSent(name string, round int, bytes int64, seconds float64) {
	s.mu.Lock()
	if s.round == round {
		s.touch(name, "training")
	}
	s.mu.Unlock()
	s.log.Info("model sent", "collaborator", name, "round", round, "bytes", bytes, "seconds", seconds)
	s.cfg.Observer.ModelSent(round, name, bytes, seconds)
}

// AddBytesIn and AddBytesOut count the encoded bytes received (updates)
// and sent (models), for RoundSummary.BytesIn/BytesOut.
func (s *Scheduler) AddBytesIn(n int64)  { s.bytesIn.Add(n) }
func (s *Scheduler) AddBytesOut(n int64) { s.bytesOut.Add(n) }

// BeginUpload is name starting to upload its update for round. validate,
// if set, checks the upload's own content; it is called, with the
// scheduler's lock held, after the round and duplicate checks. On success
// the upload is registered until release is called.
func (s *Scheduler) BeginUpload(name string, round int64, validate func() error) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.roundCheck(round); err != nil {
		s.discardLate(name, round, err)
		return nil, err
	}
	if _, dup := s.updates[name]; dup {
		return nil, refuse(Duplicate, "collaborator %q already uploaded its update for round %d", name, round)
	}
	if s.inflight[name] {
		return nil, refuse(Duplicate, "collaborator %q is already uploading an update", name)
	}
	if s.sa != nil {
		select {
		case <-s.sa.shareDone:
		default:
			return nil, refuse(Closed, "round %d: masked update from %q before the secure-aggregation shares were exchanged", round, name)
		}
		if err := s.saCheck(name, round, true); err != nil {
			return nil, err
		}
	}
	if validate != nil {
		if err := validate(); err != nil {
			return nil, err
		}
	}
	s.touch(name, "uploading its update")
	s.inflight[name] = true
	return func() {
		s.mu.Lock()
		delete(s.inflight, name)
		s.mu.Unlock()
	}, nil
}

// UploadFailed records an upload from name that was refused (reason is a
// short class, msg the one-line message sent back; see
// Observer.UpdateRefused).
func (s *Scheduler) UploadFailed(name, reason, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.collabs[name]; st != nil {
		st.lastErr = msg
	}
	s.cfg.Observer.UpdateRefused(max(s.round, -s.round), name, reason, msg)
}

// Accept is the end of an upload: e describes it and w is the update. It
// is refused if the round closed while the update was uploading, or if the
// collaborator's update for the round was already received.
func (s *Scheduler) Accept(e UpdateEvent, w tensor.Weights) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, round := e.Collaborator, int64(e.Round)
	if err := s.roundCheck(round); err != nil { // the round closed while the update was uploading
		s.discardLate(name, round, err)
		s.cfg.Observer.UpdateRefused(e.Round, name, "late", err.Error())
		return err
	}
	if _, dup := s.updates[name]; dup {
		s.cfg.Observer.UpdateRefused(e.Round, name, "duplicate", "update already received")
		return refuse(Duplicate, "collaborator %q already uploaded its update for round %d", name, round)
	}
	s.updates[name] = strategy.FitResult{Client: name, Weights: w, NumExamples: e.NumExamples, Metrics: e.Metrics}
	s.touch(name, "done")
	s.collabs[name].lastErr = ""
	s.log.Info("update received", "collaborator", name, "round", round, "examples", int64(e.NumExamples),
		"bytes", e.Bytes, "seconds", e.Seconds, "received", len(s.updates), "expected", len(s.expected))
	s.cfg.Observer.UpdateReceived(e)
	s.signal()
	return nil
}

// Report is a validation task's result from a collaborator.
func (s *Scheduler) Report(e MetricsEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, round := e.Collaborator, int64(e.Round)
	if err := s.roundCheck(round); err != nil {
		if IsKind(err, Closed) {
			s.log.Info("late metrics from "+name+" discarded: "+err.Error(), "collaborator", name, "round", round, "task", e.Task)
		}
		return err
	}
	r := strategy.EvalResult{Client: name, NumExamples: e.NumExamples, Loss: e.Loss, Metrics: e.Metrics}
	switch e.Task {
	case TaskAggregatedModelValidation:
		s.evals[name] = r
	case TaskLocallyTunedModelValidation:
		s.local[name] = r
	default:
		return refuse(Invalid, "metrics from %q for unknown task %q", name, e.Task)
	}
	s.log.Info("metrics received", "collaborator", name, "round", round, "task", e.Task, "examples", int64(e.NumExamples),
		"loss", e.Loss, "metrics", e.Metrics)
	s.cfg.Observer.MetricsReported(e)
	return nil
}

// lateReport describes, one per late collaborator, why round r waits; s.mu
// held. r is passed in, not read from s.round: closeRound negates s.round
// before it builds the stragglers' report, and a collaborator seen in round
// r is then still "seen this round".
func (s *Scheduler) lateReport(r int) (late []string, why string) {
	var parts []string
	for _, n := range s.cfg.Collaborators {
		if _, ok := s.updates[n]; ok {
			continue
		}
		late = append(late, n)
		st := s.collabs[n]
		var d string
		switch {
		case !st.connected:
			d = "never connected"
		case st.round != r:
			d = fmt.Sprintf("not seen this round (last seen %s ago)", time.Since(st.seen).Round(time.Second))
		default:
			d = fmt.Sprintf("%s (%s ago)", st.activity, time.Since(st.seen).Round(time.Second))
		}
		if st.lastErr != "" {
			d += "; last refusal: " + st.lastErr
		}
		parts = append(parts, n+": "+d)
	}
	return late, strings.Join(parts, "; ")
}
