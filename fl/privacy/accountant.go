package privacy

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// Accountant composes applications of the sampled Gaussian mechanism by
// adding their RDP at fixed orders. Its State is a plain value meant for a
// checkpoint: restoring it resumes the same ε. Not safe for concurrent use.
type Accountant struct {
	orders []float64
	rdp    []float64
	steps  int
}

// NewAccountant tracks the given orders (DefaultOrders when none).
func NewAccountant(orders ...float64) (*Accountant, error) {
	if len(orders) == 0 {
		orders = DefaultOrders()
	}
	for _, a := range orders {
		if !(a >= 1) {
			return nil, fmt.Errorf("RDP order %v: must be ≥ 1: %w", a, ErrParameter)
		}
	}
	return &Accountant{orders: slices.Clone(orders), rdp: make([]float64, len(orders))}, nil
}

// RDPOf returns what Compose(q, sigma, steps) would add, without adding it.
func (a *Accountant) RDPOf(q, sigma float64, steps int) ([]float64, error) {
	if steps < 0 {
		return nil, fmt.Errorf("steps %d: must be ≥ 0: %w", steps, ErrParameter)
	}
	r, err := SampledGaussianRDP(q, sigma, a.orders)
	if err != nil {
		return nil, err
	}
	for i := range r {
		if r[i] != 0 {
			r[i] *= float64(steps)
		}
	}
	return r, nil
}

// Compose adds steps applications of the Poisson-subsampled Gaussian
// mechanism (rate q, noise multiplier sigma).
func (a *Accountant) Compose(q, sigma float64, steps int) error {
	r, err := a.RDPOf(q, sigma, steps)
	if err != nil {
		return err
	}
	for i := range r {
		a.rdp[i] += r[i]
	}
	a.steps += steps
	return nil
}

// Steps is the number of mechanism applications composed so far.
func (a *Accountant) Steps() int { return a.steps }

// Epsilon is the ε spent so far at delta.
func (a *Accountant) Epsilon(delta float64) (float64, error) {
	e, _, err := Epsilon(a.orders, a.rdp, delta)
	return e, err
}

// EpsilonAfter is the ε that would be spent at delta after composing
// steps more applications of (q, sigma): the budget check before a round.
func (a *Accountant) EpsilonAfter(q, sigma float64, steps int, delta float64) (float64, error) {
	r, err := a.RDPOf(q, sigma, steps)
	if err != nil {
		return 0, err
	}
	for i := range r {
		r[i] += a.rdp[i]
	}
	e, _, err := Epsilon(a.orders, r, delta)
	return e, err
}

// State is an accountant's checkpointable state. encoding/json cannot
// write +Inf, which a zero noise multiplier yields, so such RDP values are
// carried as the string "inf" (see MarshalJSON).
type State struct {
	Orders []float64 `json:"orders"`
	RDP    []float64 `json:"rdp"`
	Steps  int       `json:"steps"`
}

// State returns a copy of the accountant's state.
func (a *Accountant) State() State {
	return State{Orders: slices.Clone(a.orders), RDP: slices.Clone(a.rdp), Steps: a.steps}
}

// Restore replaces the accountant's state with s, which must track the same
// orders (a plan cannot change its orders across a resume).
func (a *Accountant) Restore(s State) error {
	if len(s.RDP) != len(s.Orders) {
		return fmt.Errorf("accountant state: %d orders but %d RDP values: %w", len(s.Orders), len(s.RDP), ErrParameter)
	}
	if !slices.Equal(s.Orders, a.orders) {
		return fmt.Errorf("accountant state: orders differ from this accountant's: %w", ErrParameter)
	}
	if s.Steps < 0 {
		return fmt.Errorf("accountant state: steps %d: must be ≥ 0: %w", s.Steps, ErrParameter)
	}
	for i, r := range s.RDP {
		if !(r >= 0) {
			return fmt.Errorf("accountant state: RDP %v at order %v: must be ≥ 0: %w", r, s.Orders[i], ErrParameter)
		}
	}
	a.rdp = slices.Clone(s.RDP)
	a.steps = s.Steps
	return nil
}

type stateJSON struct {
	Orders []float64 `json:"orders"`
	RDP    []any     `json:"rdp"`
	Steps  int       `json:"steps"`
}

// MarshalJSON writes +Inf RDP values as the string "inf".
func (s State) MarshalJSON() ([]byte, error) {
	j := stateJSON{Orders: s.Orders, RDP: make([]any, len(s.RDP)), Steps: s.Steps}
	for i, r := range s.RDP {
		if math.IsInf(r, 1) {
			j.RDP[i] = "inf"
		} else {
			j.RDP[i] = r
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *State) UnmarshalJSON(b []byte) error {
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("accountant state: %w", err)
	}
	out := State{Orders: j.Orders, RDP: make([]float64, len(j.RDP)), Steps: j.Steps}
	for i, v := range j.RDP {
		switch v := v.(type) {
		case float64:
			out.RDP[i] = v
		case string:
			if v != "inf" {
				return fmt.Errorf("accountant state: rdp[%d] %q: want a number or \"inf\": %w", i, v, ErrParameter)
			}
			out.RDP[i] = math.Inf(1)
		default:
			return fmt.Errorf("accountant state: rdp[%d]: want a number or \"inf\": %w", i, ErrParameter)
		}
	}
	*s = out
	return nil
}
