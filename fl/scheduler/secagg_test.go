package scheduler

import (
	"context"
	"crypto/rand"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/secagg"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// TestSecAggPhases drives one secure-aggregation round through the
// scheduler without a transport (the envelopes carry the shares in the
// clear: the scheduler relays them as opaque bytes). d misses the
// advertise phase: the phase timeout fixes a, b and c as the members, d
// is told to wait and refused if it advertises late. Uploads before the
// share exchange, envelopes to non-members and repeated reveals are
// refused; the unmasked sum is the plain fixed-point sum, and the new
// model is global + the mean update.
func TestSecAggPhases(t *testing.T) {
	var got []uint32
	sa := &SecAgg{Dropout: 0, FracBits: 12, Clip: 2, PhaseTimeout: 300 * time.Millisecond,
		OnSum: func(_ int, s []uint32) { got = s }}
	names := []string{"a", "b", "c", "d"}
	s, err := New(Config{PlanHash: "h", Strategy: &strategy.FedAvg{}, Initial: weights(), Collaborators: names,
		Rounds: 1, Logger: quietLogger(), SecAgg: sa, DoneGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.config; cfg[KeySecAgg] != 1 || cfg[KeySecAggFracBits] != 12 || cfg[KeySecAggClip] != 2 {
		t.Fatalf("round config %v lacks the SecAgg keys", cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var final tensor.Weights
	runErr := make(chan error, 1)
	go func() {
		var err error
		final, _, err = s.Run(ctx)
		runErr <- err
	}()

	members := names[:3]
	p := secagg.Params{N: 3, Threshold: 3, Len: weights().NumParams() + 1, FracBits: 12}
	clients := make([]*secagg.Client, 3)
	var wg sync.WaitGroup
	advErr := make([]error, 3)
	for i, n := range members {
		c, err := secagg.NewClient(p, i, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			adv, th, err := s.SecAggAdvertise(ctx, n, 1, SecAggAdvert{MaskKey: c.Advertise().Key})
			if err == nil && (len(adv) != 3 || th != 3 || adv[i].Name != n) {
				t.Errorf("%s: members %v threshold %d", n, adv, th)
			}
			if err == nil {
				keys := make([]secagg.PublicKey, len(adv))
				for j, a := range adv {
					keys[j] = secagg.PublicKey{ID: j, Key: a.MaskKey}
				}
				err = c.SetKeys(keys)
			}
			advErr[i] = err
		}()
	}
	wg.Wait()
	for i, err := range advErr {
		if err != nil {
			t.Fatalf("%s: advertise: %v", members[i], err)
		}
	}
	if _, _, err := s.SecAggAdvertise(ctx, "d", 1, SecAggAdvert{MaskKey: clients[0].Advertise().Key}); !IsKind(err, Closed) || !strings.Contains(err.Error(), `"d" advertised too late`) {
		t.Errorf("late advertisement: %v", err)
	}
	if a, err := s.Tasks("d"); err != nil || a.Action != Wait {
		t.Errorf("Tasks(d) after the members were fixed: %+v, %v, want Wait", a, err)
	}
	if _, err := s.BeginUpload("a", 1, nil); !IsKind(err, Closed) || !strings.Contains(err.Error(), "before the secure-aggregation shares were exchanged") {
		t.Errorf("upload before the shares: %v", err)
	}
	if _, err := s.SecAggShare(ctx, "a", 1, []Envelope{{From: "a", To: "b"}, {From: "a", To: "d"}}); !IsKind(err, Invalid) || !strings.Contains(err.Error(), `envelope from "a" to "d" is not one to another member`) {
		t.Errorf("envelope to a non-member: %v", err)
	}
	shareErr := make([]error, 3)
	for i, n := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh, err := clients[i].Shares(rand.Reader)
			if err != nil {
				shareErr[i] = err
				return
			}
			var env []Envelope
			for j, m := range members {
				if j != i {
					env = append(env, Envelope{From: n, To: m, Ciphertext: sh[j]})
				}
			}
			in, err := s.SecAggShare(ctx, n, 1, env)
			for _, e := range in {
				if err == nil {
					err = clients[i].Receive(slices.Index(members, e.From), e.Ciphertext)
				}
			}
			shareErr[i] = err
		}()
	}
	wg.Wait()
	for i, err := range shareErr {
		if err != nil {
			t.Fatalf("%s: shares: %v", members[i], err)
		}
	}
	global := weights()
	plain := make([]uint32, p.Len)
	for i, n := range members {
		local := global.Clone()
		local[0].Data[0] += float32(i+1) * 0.25
		local[0].Data[1] -= float32(i) * 3 // beyond the clip: −2 at most
		x, err := ClientInput(p, global, local, 10*(i+1), sa.Clip)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range x {
			plain[k] += v
		}
		y, err := clients[i].Mask(x)
		if err != nil {
			t.Fatal(err)
		}
		upload(t, s, n, 1, MaskedWeights(y))
	}
	for i, n := range members {
		surv, dropped, err := s.SecAggUnmask(ctx, n, 1)
		if err != nil || !slices.Equal(surv, members) || len(dropped) != 0 {
			t.Fatalf("%s: unmask: %v %v %v", n, surv, dropped, err)
		}
		rv, err := clients[i].Unmask([]int{0, 1, 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SecAggReveal(n, 1, rv.Encode()); err != nil {
			t.Fatalf("%s: reveal: %v", n, err)
		}
		if i == 0 {
			if err := s.SecAggReveal(n, 1, rv.Encode()); !IsKind(err, Duplicate) {
				t.Errorf("second reveal: %v", err)
			}
		}
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, plain) {
		t.Fatalf("unmasked sum %v, plain sum %v", got, plain)
	}
	// Δ0 = (0.25 + 0.5 + 0.75)/3, Δ1 = (0 − 2 − 2)/3 (clipped).
	want := []float32{float32(1 + 0.5), float32(2 - 4.0/3)}
	if !slices.Equal(final[0].Data, want) {
		t.Errorf("final model %v, want %v", final[0].Data, want)
	}
}

// saMember plays one collaborator of a scheduler SecAgg round.
type saMember struct {
	name string
	c    *secagg.Client
}

// saAdvertiseAll advertises every member's fresh keys concurrently (the
// calls block until the members are fixed) and returns the errors.
func saAdvertiseAll(ctx context.Context, t *testing.T, s *Scheduler, r int, ms []*saMember, p secagg.Params) []error {
	t.Helper()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		c, err := secagg.NewClient(p, i, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		m.c = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			adv, _, err := s.SecAggAdvertise(ctx, m.name, int64(r), SecAggAdvert{MaskKey: c.Advertise().Key})
			if err == nil {
				keys := make([]secagg.PublicKey, len(adv))
				for j, a := range adv {
					keys[j] = secagg.PublicKey{ID: j, Key: a.MaskKey}
				}
				err = c.SetKeys(keys)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	return errs
}

// saShareAll sends the first senders members' shares to every member
// concurrently and feeds each the shares it gets back.
func saShareAll(ctx context.Context, s *Scheduler, r int, ms []*saMember, senders int) []error {
	errs := make([]error, senders)
	var wg sync.WaitGroup
	for i, m := range ms[:senders] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh, err := m.c.Shares(rand.Reader)
			if err != nil {
				errs[i] = err
				return
			}
			var env []Envelope
			for j, o := range ms {
				if j != i {
					env = append(env, Envelope{From: m.name, To: o.name, Ciphertext: sh[j]})
				}
			}
			in, err := s.SecAggShare(ctx, m.name, int64(r), env)
			for _, e := range in {
				if err == nil {
					err = m.c.Receive(slices.IndexFunc(ms, func(o *saMember) bool { return o.name == e.From }), e.Ciphertext)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	return errs
}

// TestSecAggStartsOverWithoutMemberLostBeforeSharing: c advertises and
// then never sends its shares. a's and b's share calls are told the
// round's secure aggregation failed; it starts over, a and b advertise
// fresh keys, the phase timeout fixes them as the members and the round
// completes with their exact sum.
func TestSecAggStartsOverWithoutMemberLostBeforeSharing(t *testing.T) {
	var got []uint32
	var logs strings.Builder
	var logMu sync.Mutex
	sa := &SecAgg{Dropout: 0, FracBits: 10, Clip: 1, PhaseTimeout: 300 * time.Millisecond, OnSum: func(_ int, s []uint32) { got = s }}
	s, err := New(Config{PlanHash: "h", Strategy: &strategy.FedAvg{}, Initial: weights(), Collaborators: []string{"a", "b", "c"},
		Rounds: 1, Logger: slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil)), SecAgg: sa, DoneGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { _, _, err := s.Run(ctx); runErr <- err }()

	all := []*saMember{{name: "a"}, {name: "b"}, {name: "c"}}
	p3 := secagg.Params{N: 3, Threshold: 3, Len: 3, FracBits: 10}
	for _, err := range saAdvertiseAll(ctx, t, s, 1, all, p3) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, err := range saShareAll(ctx, s, 1, all, 2) { // c is lost
		if !IsKind(err, Closed) || !strings.Contains(err.Error(), "no shares from c within 300ms") {
			t.Fatalf("%s: share call after c was lost: %v", all[i].name, err)
		}
	}
	two := all[:2]
	p2 := secagg.Params{N: 2, Threshold: 2, Len: 3, FracBits: 10}
	for _, err := range saAdvertiseAll(ctx, t, s, 1, two, p2) {
		if err != nil {
			t.Fatalf("second attempt: %v", err)
		}
	}
	for _, err := range saShareAll(ctx, s, 1, two, 2) {
		if err != nil {
			t.Fatalf("second attempt: %v", err)
		}
	}
	plain := make([]uint32, 3)
	for i, m := range two {
		local := weights()
		local[0].Data[i] += 0.5
		x, err := ClientInput(p2, weights(), local, 4, 1)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range x {
			plain[k] += v
		}
		y, err := m.c.Mask(x)
		if err != nil {
			t.Fatal(err)
		}
		upload(t, s, m.name, 1, MaskedWeights(y))
	}
	for _, m := range two {
		if _, _, err := s.SecAggUnmask(ctx, m.name, 1); err != nil {
			t.Fatal(err)
		}
		rv, err := m.c.Unmask([]int{0, 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SecAggReveal(m.name, 1, rv.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, plain) {
		t.Fatalf("unmasked sum %v, plain %v", got, plain)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "secure aggregation of the round starts over") {
		t.Errorf("no start-over line in the log:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
