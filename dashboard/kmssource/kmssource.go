// Package kmssource feeds the dashboard's key-broker page from a broker's
// configuration, read-only: its store opened read-only (keys, release
// policies, the audit log) and the audit chain verified by the broker's
// own check (kms.VerifyStoreAnchored: the chain from the first entry, the
// head's MAC under the root key, the audit anchor) — the same code as
// `teeml kms audit verify --local`, not a second implementation. It is a
// composition package: it imports kms, and no other service.
package kmssource

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
)

// Source reads the broker configured by Config.
type Source struct {
	// Config is the broker's configuration file (kms.LoadConfig).
	Config string
}

// New returns a Source over the broker configuration file path.
func New(path string) *Source { return &Source{Config: path} }

var _ dashboard.BrokerSource = (*Source)(nil)

// FederationFiles are the pinned root and federation bundle the broker's
// configuration names (relative paths resolved against its directory).
func (s *Source) FederationFiles() (root, bundle string, err error) {
	c, err := kms.LoadConfig(s.Config)
	if err != nil {
		return "", "", err
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(s.Config), p)
	}
	return abs(c.Federation.Root), abs(c.Federation.Bundle), nil
}

// WatchedFiles are the broker's SQLite store and its write-ahead log (none
// for PostgreSQL: the page then updates on reload only).
func (s *Source) WatchedFiles() []string {
	c, err := kms.LoadConfig(s.Config)
	if err != nil || c.Store.Driver != "sqlite" {
		return nil
	}
	return []string{c.Store.Path, c.Store.Path + "-wal"}
}

// Broker implements dashboard.BrokerSource. A chain that does not verify
// is not an error of the page: it is shown, red, with the reason.
func (s *Source) Broker(ctx context.Context) (*dashboard.Broker, error) {
	c, err := kms.LoadConfig(s.Config)
	if err != nil {
		return nil, err
	}
	st, err := store.OpenReadOnly(ctx, c.Store)
	if err != nil {
		return nil, fmt.Errorf("key broker %s: %w", c.Name, err)
	}
	defer st.Close()
	b := &dashboard.Broker{Name: c.Name}
	keys, err := st.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("key broker %s: keys: %w", c.Name, err)
	}
	for _, k := range keys {
		b.Keys = append(b.Keys, dashboard.Key{ID: k.ID, State: k.State, Description: k.Description, Version: k.Current,
			Policy: k.Policy, Created: k.Created, Updated: k.Updated})
	}
	err = st.Entries(ctx, 1, 0, func(e audit.Entry) error {
		de := dashboard.AuditEntry{Seq: e.Seq}
		r, err := audit.Decode(e.Body)
		if err != nil {
			de.Reason = "undecodable entry: " + err.Error()
		} else {
			de.Time, _ = time.Parse(time.RFC3339Nano, r.Time)
			de.Op, de.Decision, de.KeyID, de.KeyVersion = r.Op, r.Decision, r.KeyID, r.KeyVersion
			de.Caller, de.Role, de.Reason = r.Caller.Name, r.Caller.Role, r.Reason
			if r.Evidence != nil {
				de.Platform, de.Simulated = r.Evidence.TEE, r.Evidence.Simulated
			}
		}
		b.Entries = append(b.Entries, de)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("key broker %s: audit log: %w", c.Name, err)
	}
	b.Chain = verify(ctx, c, st)
	return b, nil
}

func verify(ctx context.Context, c *kms.Config, st *store.Store) dashboard.ChainStatus {
	var root rootkey.Wrapper
	anchor := ""
	if c.RootKey != "" {
		r, err := kms.OpenRootKey(c.RootKey)
		if err != nil {
			return dashboard.ChainStatus{Detail: "root key: " + err.Error()}
		}
		defer r.Close()
		root, anchor = r, c.AnchorPath()
	}
	rep, err := kms.VerifyStoreAnchored(ctx, st, root, anchor)
	if err != nil {
		return dashboard.ChainStatus{Detail: err.Error()}
	}
	cs := dashboard.ChainStatus{Verified: true, Head: rep.Head.String(), Granted: rep.Granted, Refused: rep.Refused, MACChecked: rep.MACChecked}
	switch {
	case rep.MACChecked && rep.Anchored != nil:
		cs.Detail = fmt.Sprintf("chain of %d entries, head MAC under %s, audit anchor at entry %d reached", rep.Head.Seq, root.Describe(), rep.Anchored.Seq)
	case rep.MACChecked:
		cs.Detail = fmt.Sprintf("chain of %d entries, head MAC under %s", rep.Head.Seq, root.Describe())
	default:
		cs.Detail = fmt.Sprintf("chain of %d entries (no root key configured: the head MAC and a truncated tail are not checked)", rep.Head.Seq)
	}
	return cs
}
