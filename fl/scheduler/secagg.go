package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/teeml/teeml/fl/secagg"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// SecAgg turns on secure aggregation (fl/secagg) for every round: the
// collaborators advertise per-round keys, exchange Shamir shares of their
// secrets (encrypted end to end: the scheduler relays opaque envelopes),
// upload masked fixed-point updates and reveal shares to unmask the sum.
// The scheduler only ever holds the masked vectors and the sum; the
// strategy gets one result: the survivors' mean update applied to the
// global model, with the survivors' total example count.
type SecAgg struct {
	// Dropout is the fraction of a round's members whose loss after the
	// shares are exchanged the round survives (threshold
	// secagg.Threshold(n, Dropout)).
	Dropout float64
	// FracBits is the fixed-point precision; Clip bounds every coordinate
	// of an update (Δ = local − global) before quantisation.
	FracBits int
	Clip     float64
	// PhaseTimeout bounds the advertise, share and reveal phases (default
	// 1 minute).
	PhaseTimeout time.Duration
	// OnSum, if set, receives every round's unmasked fixed-point sum (the
	// only aggregate the aggregator learns), for tests and audits.
	OnSum func(round int, sum []uint32)
}

// Round config keys a SecAgg round hands collaborators.
const (
	KeySecAgg         = "secagg"           // 1: this round uses secure aggregation
	KeySecAggFracBits = "secagg_frac_bits" // fixed-point fraction bits
	KeySecAggClip     = "secagg_clip"      // per-coordinate clip of Δ
)

// MaskedTensor is the name of the one tensor of a masked upload: the
// masked fixed-point vector (the model's parameters in order, then the
// example count), each uint32 carried as the bits of a float32.
const MaskedTensor = "secagg/masked"

// SecAggAdvert is a member's advertisement, opaque to the scheduler (the
// transport's signed key certificate and identity certificate); MaskKey
// is the X25519 mask public key the transport read from it.
type SecAggAdvert struct {
	Name                  string
	KeyCert, IdentityCert []byte
	MaskKey               []byte
}

// Envelope is one encrypted share pair relayed between members.
type Envelope struct {
	From, To   string
	Ciphertext []byte
}

// saRound is one round's secure aggregation; guarded by Scheduler.mu.
type saRound struct {
	round     int
	adverts   map[string]SecAggAdvert
	members   []string // fixed when the advertise phase closes
	threshold int
	advDone   chan struct{}
	shares    map[string][]Envelope // by sender
	shareDone chan struct{}
	survivors []string // fixed when the round closes
	dropped   []string
	closed    chan struct{}
	reveals   map[string]secagg.Reveal
	failed    error // the round's SecAgg failed; every waiter gets it
}

func newSARound(r int) *saRound {
	return &saRound{round: r, adverts: map[string]SecAggAdvert{}, advDone: make(chan struct{}),
		shares: map[string][]Envelope{}, shareDone: make(chan struct{}), closed: make(chan struct{}),
		reveals: map[string]secagg.Reveal{}}
}

func (a *saRound) id(name string) int { return slices.Index(a.members, name) }

// params are the round's secagg parameters for a model of n parameters.
func (s *Scheduler) saParams(n int) secagg.Params {
	a := s.sa
	return secagg.Params{N: len(a.members), Threshold: a.threshold, Len: n + 1, FracBits: s.cfg.SecAgg.FracBits}
}

// saCheck refuses a SecAgg request for another round or from a
// non-member; s.mu held.
func (s *Scheduler) saCheck(name string, round int64, member bool) error {
	if s.cfg.SecAgg == nil {
		return refuse(Invalid, "secure aggregation is off in this federation")
	}
	if err := s.roundCheck(round); err != nil {
		if s.sa == nil || int64(s.sa.round) != round || s.round != -s.sa.round {
			return err
		}
		// round r is closed and being unmasked: SecAgg calls for it go on.
	}
	if s.sa.failed != nil {
		return refuse(Closed, "secure aggregation of round %d failed: %v", round, s.sa.failed)
	}
	if member && s.sa.id(name) < 0 {
		return refuse(Closed, "collaborator %q is not a secure-aggregation member of round %d (members: %s)", name, round, strings.Join(s.sa.members, ", "))
	}
	return nil
}

// saLateComer reports whether name missed the current round's advertise
// phase (it waits for the next round); s.mu held.
func (s *Scheduler) saLateComer(name string) bool {
	if s.sa == nil {
		return false
	}
	select {
	case <-s.sa.advDone:
		return s.sa.id(name) < 0
	default:
		return false
	}
}

// waitCh waits for ch, ctx or the round's failure.
func (s *Scheduler) waitCh(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SecAggAdvertise is name advertising its keys for round: it waits until
// the round's members are fixed and returns them in id order with the
// threshold.
func (s *Scheduler) SecAggAdvertise(ctx context.Context, name string, round int64, adv SecAggAdvert) ([]SecAggAdvert, int, error) {
	s.mu.Lock()
	if err := s.saCheck(name, round, false); err != nil {
		s.mu.Unlock()
		return nil, 0, err
	}
	a := s.sa
	select {
	case <-a.advDone:
		s.mu.Unlock()
		return nil, 0, refuse(Closed, "round %d: the secure-aggregation members are fixed already; collaborator %q advertised too late", round, name)
	default:
	}
	if _, dup := a.adverts[name]; dup {
		s.mu.Unlock()
		return nil, 0, refuse(Duplicate, "collaborator %q already advertised its keys for round %d", name, round)
	}
	adv.Name = name
	a.adverts[name] = adv
	s.touch(name, "advertised secure-aggregation keys")
	s.signal()
	s.mu.Unlock()
	if err := s.waitCh(ctx, a.advDone); err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.failed != nil {
		return nil, 0, refuse(Closed, "secure aggregation of round %d failed: %v", round, a.failed)
	}
	out := make([]SecAggAdvert, len(a.members))
	for i, m := range a.members {
		out[i] = a.adverts[m]
	}
	return out, a.threshold, nil
}

// SecAggShare is name's encrypted shares, one envelope to every other
// member; it waits until every member's are in and returns those
// addressed to name.
func (s *Scheduler) SecAggShare(ctx context.Context, name string, round int64, env []Envelope) ([]Envelope, error) {
	s.mu.Lock()
	if err := s.saCheck(name, round, true); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	a := s.sa
	if _, dup := a.shares[name]; dup {
		s.mu.Unlock()
		return nil, refuse(Duplicate, "collaborator %q already sent its shares for round %d", name, round)
	}
	to := map[string]bool{}
	for _, e := range env {
		if e.From != name || a.id(e.To) < 0 || e.To == name || to[e.To] {
			s.mu.Unlock()
			return nil, refuse(Invalid, "round %d: shares from %q: envelope from %q to %q is not one to another member", round, name, e.From, e.To)
		}
		to[e.To] = true
	}
	if len(to) != len(a.members)-1 {
		s.mu.Unlock()
		return nil, refuse(Invalid, "round %d: shares from %q: %d envelopes for %d other members", round, name, len(to), len(a.members)-1)
	}
	a.shares[name] = env
	s.touch(name, "sent secure-aggregation shares")
	s.signal()
	s.mu.Unlock()
	if err := s.waitCh(ctx, a.shareDone); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.failed != nil {
		return nil, refuse(Closed, "secure aggregation of round %d failed: %v", round, a.failed)
	}
	var out []Envelope
	for _, m := range a.members {
		for _, e := range a.shares[m] {
			if e.To == name {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// SecAggUnmask waits until round closes and returns its survivors (who
// uploaded a masked input) and dropped members; only survivors may ask.
func (s *Scheduler) SecAggUnmask(ctx context.Context, name string, round int64) (survivors, dropped []string, err error) {
	s.mu.Lock()
	if err := s.saCheck(name, round, true); err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	a := s.sa
	s.mu.Unlock()
	if err := s.waitCh(ctx, a.closed); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.failed != nil {
		return nil, nil, refuse(Closed, "secure aggregation of round %d failed: %v", round, a.failed)
	}
	if !slices.Contains(a.survivors, name) {
		return nil, nil, &Error{Kind: Closed, Late: true, Msg: fmt.Sprintf("round %d closed without %q's masked input", round, name)}
	}
	return a.survivors, a.dropped, nil
}

// SecAggReveal is a survivor's reveal (secagg.Reveal wire form). A reveal
// that does not decode or names the wrong clients is refused, naming its
// sender, and left out: the round unmasks with the others if at least the
// threshold remain.
func (s *Scheduler) SecAggReveal(name string, round int64, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.saCheck(name, round, true); err != nil {
		return err
	}
	a := s.sa
	select {
	case <-a.closed:
	default:
		return refuse(Closed, "round %d: reveal from %q before the round closed", round, name)
	}
	if !slices.Contains(a.survivors, name) {
		return refuse(Closed, "round %d: reveal from %q, which is not a survivor", round, name)
	}
	if _, dup := a.reveals[name]; dup {
		return refuse(Duplicate, "collaborator %q already revealed its shares for round %d", name, round)
	}
	ids := func(names []string) []int {
		out := make([]int, len(names))
		for i, n := range names {
			out[i] = a.id(n)
		}
		return out
	}
	r, err := secagg.DecodeReveal(b)
	if err == nil {
		err = secagg.CheckReveal(r, a.id(name), ids(a.survivors), ids(a.dropped))
	}
	if err != nil {
		msg := fmt.Sprintf("round %d: reveal from %q refused: %v", round, name, err)
		s.log.Warn(msg, "collaborator", name, "round", round)
		if st := s.collabs[name]; st != nil {
			st.lastErr = msg
		}
		return refuse(Invalid, "%s", msg)
	}
	a.reveals[name] = r
	s.touch(name, "revealed secure-aggregation shares")
	s.log.Info("secure-aggregation reveal received", "collaborator", name, "round", round, "reveals", len(a.reveals), "survivors", len(a.survivors))
	s.signal()
	return nil
}

// saFail ends round r's SecAgg with err; s.mu held.
func (s *Scheduler) saFail(err error) {
	a := s.sa
	a.failed = err
	for _, ch := range []chan struct{}{a.advDone, a.shareDone, a.closed} {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

// saSetupOnce runs round r's advertise and share phases once: members are
// those who advertised when every expected collaborator has or
// PhaseTimeout passed; then every member must send its shares within
// PhaseTimeout (else a *setupRetry).
func (s *Scheduler) saSetupOnce(ctx context.Context, r int) error {
	timeout := s.cfg.SecAgg.PhaseTimeout
	need := max(2, s.cfg.MinCollaborators)
	fail := func(err error) error {
		s.mu.Lock()
		s.saFail(err)
		s.mu.Unlock()
		return err
	}
	count := func(f func() int) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return f()
	}
	if err := s.waitUntil(ctx, timeout, func() bool { return count(func() int { return len(s.sa.adverts) }) == len(s.expected) }); err != nil {
		return fail(fmt.Errorf("round %d: secure aggregation: %w", r, err))
	}
	s.mu.Lock()
	a := s.sa
	for _, n := range s.cfg.Collaborators {
		if _, ok := a.adverts[n]; ok {
			a.members = append(a.members, n)
		}
	}
	if len(a.members) < need {
		s.mu.Unlock()
		return fail(fmt.Errorf("round %d: secure aggregation: %d of %d collaborators advertised keys within %s, need %d", r, len(a.members), len(s.expected), timeout, need))
	}
	// The Shamir threshold is the plan's dropout tolerance alone; how many
	// masked inputs a round needs is MinCollaborators on top (waitClose).
	a.threshold = secagg.Threshold(len(a.members), s.cfg.SecAgg.Dropout)
	close(a.advDone)
	s.mu.Unlock()
	s.log.Info("secure aggregation: members fixed", "round", r, "members", a.members, "threshold", a.threshold)
	if err := s.waitUntil(ctx, timeout, func() bool { return count(func() int { return len(a.shares) }) == len(a.members) }); err != nil {
		return fail(fmt.Errorf("round %d: secure aggregation: %w", r, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(a.shares) < len(a.members) {
		var missing []string
		for _, m := range a.members {
			if _, ok := a.shares[m]; !ok {
				missing = append(missing, m)
			}
		}
		err := fmt.Errorf("round %d: secure aggregation: no shares from %s within %s (every member's shares are needed before masking)", r, strings.Join(missing, ", "), timeout)
		s.saFail(err)
		// A fresh start in the same critical section: whoever the failure
		// wakes finds the new one when it advertises again.
		s.sa = newSARound(r)
		return &setupRetry{err}
	}
	close(a.shareDone)
	return nil
}

// setupRetry is a share phase that lost members: the round's secure
// aggregation starts over without them.
type setupRetry struct{ err error }

func (e *setupRetry) Error() string { return e.err.Error() }

// saSetupRetries is how many times a round's secure aggregation starts
// over after members were lost between advertising and sharing.
const saSetupRetries = 3

// saSetup runs round r's advertise and share phases (saSetupOnce). When
// members are lost between the two, the members that did share are told
// (their share call fails: they ask for tasks again) and the round's
// secure aggregation starts over with fresh keys among those who
// advertise again, at most saSetupRetries times.
func (s *Scheduler) saSetup(ctx context.Context, r int) error {
	for attempt := 0; ; attempt++ {
		err := s.saSetupOnce(ctx, r)
		var retry *setupRetry
		if !errors.As(err, &retry) {
			return err
		}
		if attempt == saSetupRetries {
			s.mu.Lock()
			s.saFail(retry.err)
			s.mu.Unlock()
			return retry.err
		}
		s.log.Warn(retry.err.Error()+"; secure aggregation of the round starts over", "round", r, "attempt", attempt+2)
	}
}

// waitUntil polls done on every progress signal until it holds or
// timeout passes (which is not an error: the caller looks at what it has).
func (s *Scheduler) waitUntil(ctx context.Context, timeout time.Duration, done func() bool) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.progress:
		case <-t.C:
			return nil
		}
	}
	return nil
}

// saClose fixes round r's survivors when it closes; s.mu held.
func (s *Scheduler) saClose() {
	a := s.sa
	for _, m := range a.members {
		if _, ok := s.updates[m]; ok {
			a.survivors = append(a.survivors, m)
		} else {
			a.dropped = append(a.dropped, m)
		}
	}
	close(a.closed)
}

// saUnmask waits for the survivors' reveals (all, or at least the
// threshold when PhaseTimeout passes), unmasks the sum and returns the
// one result the strategy aggregates: the global model plus the
// survivors' mean update, with their total example count.
func (s *Scheduler) saUnmask(ctx context.Context, r int, global tensor.Weights) (strategy.FitResult, error) {
	a := s.sa
	timeout := s.cfg.SecAgg.PhaseTimeout
	fail := func(err error) (strategy.FitResult, error) {
		s.mu.Lock()
		s.saFail(err)
		s.mu.Unlock()
		return strategy.FitResult{}, err
	}
	if len(a.survivors) < a.threshold {
		return fail(fmt.Errorf("round %d: secure aggregation: %d masked inputs, threshold %d", r, len(a.survivors), a.threshold))
	}
	if err := s.waitUntil(ctx, timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(a.reveals) == len(a.survivors)
	}); err != nil {
		return fail(fmt.Errorf("round %d: secure aggregation: %w", r, err))
	}
	s.mu.Lock()
	n := global.NumParams()
	p := s.saParams(n)
	keys := make([]secagg.PublicKey, len(a.members))
	for i, m := range a.members {
		keys[i] = secagg.PublicKey{ID: i, Key: a.adverts[m].MaskKey}
	}
	masked := map[int][]uint32{}
	for _, m := range a.survivors {
		v, err := maskedVector(s.updates[m].Weights, p.Len)
		if err != nil {
			s.mu.Unlock()
			return fail(fmt.Errorf("round %d: secure aggregation: masked input of %q: %w", r, m, err))
		}
		masked[a.id(m)] = v
	}
	var reveals []secagg.Reveal
	var from []string
	for _, m := range a.members {
		if rv, ok := a.reveals[m]; ok {
			reveals = append(reveals, rv)
			from = append(from, m)
		}
	}
	s.mu.Unlock()
	if len(reveals) < a.threshold {
		return fail(fmt.Errorf("round %d: secure aggregation: %d reveals (from %s) within %s, threshold %d: the sum cannot be unmasked",
			r, len(reveals), strings.Join(from, ", "), timeout, a.threshold))
	}
	start := time.Now()
	sum, err := secagg.Aggregate(p, keys, masked, reveals)
	if err != nil {
		// A corrupt share (well formed, wrong value): find whose reveal
		// it is by leaving out one at a time. Only sets of more than t
		// reveals are checked (with exactly t a corrupt seed share cannot
		// be told apart from a good one), so at least t+2 must have
		// arrived.
		for i := 0; i < len(reveals) && len(reveals)-1 > a.threshold; i++ {
			rest := slices.Delete(slices.Clone(reveals), i, i+1)
			if s2, err2 := secagg.Aggregate(p, keys, masked, rest); err2 == nil {
				msg := fmt.Sprintf("round %d: reveal from %q refused: its shares are inconsistent with the other %d reveals (%v)", r, from[i], len(rest), err)
				s.log.Warn(msg, "collaborator", from[i], "round", r)
				s.mu.Lock()
				if st := s.collabs[from[i]]; st != nil {
					st.lastErr = msg
				}
				s.mu.Unlock()
				sum, err = s2, nil
				from = slices.Delete(from, i, i+1)
				break
			}
		}
	}
	if err != nil {
		return fail(fmt.Errorf("round %d: %w", r, err))
	}
	s.log.Info("secure aggregation: sum unmasked", "round", r, "survivors", a.survivors, "dropped", a.dropped,
		"reveals", from, "seconds", time.Since(start).Seconds())
	if f := s.cfg.SecAgg.OnSum; f != nil {
		f(r, slices.Clone(sum))
	}
	return MeanFromSum(p, global, sum, len(a.survivors))
}

// MeanFromSum turns an unmasked fixed-point sum of k inputs (the model's
// parameters in order, then the example count) into the result the
// strategy aggregates: global plus the mean update, and the total count.
func MeanFromSum(p secagg.Params, global tensor.Weights, sum []uint32, k int) (strategy.FitResult, error) {
	if len(sum) != global.NumParams()+1 {
		return strategy.FitResult{}, fmt.Errorf("secure aggregation: sum of %d values for a model of %d parameters", len(sum), global.NumParams())
	}
	next := global.Clone()
	i := 0
	for ti := range next {
		d := next[ti].Data
		for j := range d {
			d[j] = float32(float64(d[j]) + math.Ldexp(float64(int32(sum[i])), -p.FracBits)/float64(k))
			i++
		}
	}
	examples := int(int32(sum[i]))
	if examples <= 0 {
		return strategy.FitResult{}, fmt.Errorf("secure aggregation: unmasked example count %d", examples)
	}
	return strategy.FitResult{Client: "secagg", Weights: next, NumExamples: examples, Metrics: map[string]float64{strategy.MetricSurvivors: float64(k)}}, nil
}

// maskedVector reads a masked upload's one tensor back as uint32s.
func maskedVector(w tensor.Weights, n int) ([]uint32, error) {
	if len(w) != 1 || w[0].Name != MaskedTensor || len(w[0].Data) != n {
		return nil, fmt.Errorf("not one tensor %q of %d values", MaskedTensor, n)
	}
	out := make([]uint32, n)
	for i, v := range w[0].Data {
		out[i] = math.Float32bits(v)
	}
	return out, nil
}

// ClientInput is a collaborator's secagg input: each coordinate of
// Δ = local − global clipped to ±clip, then the example count, quantised
// (the count as an integer: n·2^−f quantises to n).
func ClientInput(p secagg.Params, global, local tensor.Weights, examples int, clip float64) ([]uint32, error) {
	if err := global.Compatible(local); err != nil {
		return nil, err
	}
	x := make([]float64, 0, global.NumParams()+1)
	for ti := range global {
		for j, g := range global[ti].Data {
			d := float64(local[ti].Data[j]) - float64(g)
			x = append(x, max(-clip, min(clip, d)))
		}
	}
	x = append(x, math.Ldexp(float64(examples), -p.FracBits))
	return p.Quantize(x)
}

// MaskedWeights wraps a masked vector as the one-tensor upload.
func MaskedWeights(y []uint32) tensor.Weights {
	d := make([]float32, len(y))
	for i, v := range y {
		d[i] = math.Float32frombits(v)
	}
	return tensor.Weights{{Name: MaskedTensor, Shape: []int{len(y)}, Data: d}}
}
