package psi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/teeml/teeml/internal/atomicfile"
)

// SessionFile is the JSON record of a finished session that a party keeps
// next to its aligned IDs: the data join needs ShuffleSeed, and the
// session id ties the aligned file to the attested peer it was computed
// with.
type SessionFile struct {
	Version      string `json:"version"`
	SessionID    string `json:"session_id"`
	ShuffleSeed  string `json:"shuffle_seed"`
	Role         string `json:"role"`
	Mode         string `json:"mode"`
	Self         string `json:"self"`
	Peer         string `json:"peer"`
	ConfigHash   string `json:"config_hash"`
	Distinct     int    `json:"distinct_ids"`
	Duplicates   int    `json:"duplicates_dropped"`
	PeerDistinct int    `json:"peer_distinct_ids"`
	Learned      bool   `json:"learned_intersection"`
	Intersection int    `json:"intersection"`
	Aligned      string `json:"aligned_ids,omitempty"`
	Simulated    bool   `json:"simulated"`
}

// NewSessionFile describes res of a session run with cfg on set.
func NewSessionFile(res *Result, cfg Config, set *Set, simulated bool) *SessionFile {
	f := &SessionFile{Version: Version, SessionID: hex.EncodeToString(res.SessionID[:]),
		ShuffleSeed: hex.EncodeToString(res.ShuffleSeed[:]), Role: res.Role.String(), Mode: res.Mode.String(),
		Self: cfg.Self, Peer: res.Peer, ConfigHash: cfg.ConfigHash, Distinct: res.Distinct,
		Duplicates: set.Duplicates, PeerDistinct: res.PeerDistinct, Learned: res.Learned,
		Intersection: res.Intersection, Simulated: simulated}
	if res.Learned {
		f.Aligned = res.Out
	}
	return f
}

// Write writes the record atomically.
func (f *SessionFile) Write(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(b, '\n'), 0o600)
}

// ReadSessionFile reads a session record strictly.
func ReadSessionFile(path string) (*SessionFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("psi session: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f SessionFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("psi session %s: %w", path, err)
	}
	if f.Version != Version {
		return nil, fmt.Errorf("psi session %s: version %q, want %q", path, f.Version, Version)
	}
	if _, err := f.Seed(); err != nil {
		return nil, fmt.Errorf("psi session %s: %w", path, err)
	}
	return &f, nil
}

// Seed decodes ShuffleSeed.
func (f *SessionFile) Seed() ([32]byte, error) {
	var s [32]byte
	b, err := hex.DecodeString(f.ShuffleSeed)
	if err != nil || len(b) != 32 {
		return s, fmt.Errorf("shuffle_seed: want 64 hex digits")
	}
	copy(s[:], b)
	return s, nil
}
