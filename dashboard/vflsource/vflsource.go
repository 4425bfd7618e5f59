// Package vflsource feeds the dashboard's VFL page from vertical-FL state
// directories, read-only: each side's PSI session record (vfl/psi's
// session file: set sizes, intersection), its checkpoints
// (checkpoints/ckpt-<iteration>.safetensors) and its exported model card.
// It imports the PSI record format, never the VFL runtime.
package vflsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/vfl/psi"
)

// StateGlob finds the state directories of a VFL plan directory
// (runs/<plan hash>/<role>, vfl/run's default StateDir).
const StateGlob = "runs/*/*"

// MaxCardBytes bounds a model card.
const MaxCardBytes = 1 << 20

// Source reads the state directories under Dir (StateGlob), or States.
type Source struct {
	Dir    string
	States []string
}

// New returns a Source over a VFL plan directory.
func New(dir string) *Source { return &Source{Dir: dir} }

var _ dashboard.VFLSource = (*Source)(nil)

func (s *Source) states() ([]string, error) {
	if len(s.States) > 0 || s.Dir == "" {
		return s.States, nil
	}
	m, err := filepath.Glob(filepath.Join(s.Dir, filepath.FromSlash(StateGlob)))
	if err != nil {
		return nil, fmt.Errorf("vflsource: %w", err)
	}
	var out []string
	for _, d := range m {
		role := filepath.Base(d)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && (role == "leader" || role == "follower") {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, nil
}

// WatchedFiles are each side's PSI record, checkpoint directory and model
// directory.
func (s *Source) WatchedFiles() []string {
	dirs, _ := s.states()
	var f []string
	for _, d := range dirs {
		f = append(f, filepath.Join(d, "psi", "session.json"), filepath.Join(d, "checkpoints"), filepath.Join(d, "model"))
	}
	return f
}

// VFLSessions implements dashboard.VFLSource.
func (s *Source) VFLSessions(ctx context.Context) ([]dashboard.VFLSession, error) {
	dirs, err := s.states()
	if err != nil {
		return nil, err
	}
	var out []dashboard.VFLSession
	var errs []error
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		v, err := Session(d)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, v)
	}
	return out, errors.Join(errs...)
}

// Session reads one state directory.
func Session(dir string) (dashboard.VFLSession, error) {
	v := dashboard.VFLSession{Name: filepath.Base(filepath.Dir(dir)), Role: filepath.Base(dir)}
	var errs []error
	sp := filepath.Join(dir, "psi", "session.json")
	if rec, err := psi.ReadSessionFile(sp); err == nil {
		v.PSI = &dashboard.PSISession{SessionID: rec.SessionID, Mode: rec.Mode, Self: rec.Self, Peer: rec.Peer,
			Distinct: rec.Distinct, Duplicates: rec.Duplicates, PeerDistinct: rec.PeerDistinct, Intersection: rec.Intersection,
			Learned: rec.Learned, Simulated: rec.Simulated}
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "checkpoints"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("vflsource: %w", err))
	}
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "ckpt-")
		if !ok {
			continue
		}
		if n, ok = strings.CutSuffix(n, ".safetensors"); !ok {
			continue
		}
		it, err := strconv.ParseInt(n, 10, 64)
		if err != nil || it < 0 {
			continue
		}
		c := dashboard.Checkpoint{Iteration: it}
		if fi, err := e.Info(); err == nil {
			c.Time, c.Bytes = fi.ModTime().UTC(), fi.Size()
		}
		v.Checkpoints = append(v.Checkpoints, c)
	}
	sort.Slice(v.Checkpoints, func(i, j int) bool { return v.Checkpoints[i].Iteration < v.Checkpoints[j].Iteration })
	cp := filepath.Join(dir, "model", v.Role+".model-card.json")
	if b, err := os.ReadFile(cp); err == nil {
		m, err := ParseCard(b, cp)
		if err != nil {
			errs = append(errs, err)
		}
		v.Model = m
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("vflsource: %w", err))
	}
	return v, errors.Join(errs...)
}

// card is the part of vfl/run's model card (vfl/run.Card) the page shows.
type card struct {
	Plan           string `json:"plan"`
	Iterations     int64  `json:"iterations"`
	AppliedUpdates int64  `json:"applied_updates"`
	Resumes        int    `json:"resumes"`
	TrainRows      int    `json:"train_rows"`
	TestRows       int    `json:"test_rows"`
	// Metrics are decoded by name: every number of test_metrics.
	Metrics   map[string]json.RawMessage `json:"test_metrics"`
	Simulated bool                       `json:"simulated"`
	Created   string                     `json:"created"`
}

// ParseCard reads the fields of a model card the page shows (unknown
// fields are the card's business); name prefixes errors.
func ParseCard(b []byte, name string) (*dashboard.VFLModel, error) {
	if len(b) > MaxCardBytes {
		return nil, fmt.Errorf("vflsource: model card %s: %d bytes, more than %d", name, len(b), MaxCardBytes)
	}
	var c card
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("vflsource: model card %s: %w", name, err)
	}
	if c.Iterations < 0 || c.AppliedUpdates < 0 || c.Resumes < 0 || c.TrainRows < 0 || c.TestRows < 0 {
		return nil, fmt.Errorf("vflsource: model card %s: negative counts", name)
	}
	m := &dashboard.VFLModel{Plan: c.Plan, Iterations: c.Iterations, AppliedUpdates: c.AppliedUpdates, Resumes: c.Resumes,
		TrainRows: c.TrainRows, TestRows: c.TestRows, Simulated: c.Simulated}
	if c.Created != "" {
		t, err := time.Parse(time.RFC3339Nano, c.Created)
		if err != nil {
			return nil, fmt.Errorf("vflsource: model card %s: created: %w", name, err)
		}
		m.Created = t
	}
	for k, raw := range c.Metrics {
		if k == "n" { // the test rows again
			continue
		}
		var f float64
		if json.Unmarshal(raw, &f) == nil {
			if m.Metrics == nil {
				m.Metrics = map[string]float64{}
			}
			m.Metrics[k] = f
		}
	}
	return m, nil
}
