package kms

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
)

// AuditReport is the outcome of a successful audit verification.
type AuditReport struct {
	Head             audit.Head
	Granted, Refused int
	// MACChecked is true when the stored head's MAC was verified under the
	// root key (false: chain only, truncation of the tail undetectable).
	MACChecked bool
	// Anchored is the audit anchor's position when one was checked (nil:
	// none given, or none written yet on an empty store).
	Anchored *audit.Head
}

// checkComplete refuses a store that holds keys but no audit entries:
// every key was created by an audited transaction, so its log was wiped.
func checkComplete(ctx context.Context, st *store.Store) error {
	head, _, err := st.Head(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: the store has no audit head row: the audit log was wiped", ErrAnchor)
	}
	if err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	if head.Seq > 0 {
		return nil
	}
	keys, err := st.Keys(ctx)
	if err != nil {
		return err
	}
	if len(keys) > 0 {
		return fmt.Errorf("%w: the store holds %d keys but its audit log is empty: the audit log was wiped", ErrAnchor, len(keys))
	}
	return nil
}

// VerifyStore verifies st's audit chain from the first entry to the stored
// head, the head's MAC when root is non-nil, and every witness.
func VerifyStore(ctx context.Context, st *store.Store, root rootkey.Wrapper, witnesses ...audit.Head) (*AuditReport, error) {
	return VerifyStoreAnchored(ctx, st, root, "", witnesses...)
}

// VerifyStoreAnchored is VerifyStore that also checks the store against the
// broker's audit anchor file (see BrokerConfig.AnchorPath; needs root): a
// store behind its anchor, or not a continuation of it, is refused.
func VerifyStoreAnchored(ctx context.Context, st *store.Store, root rootkey.Wrapper, anchorPath string, witnesses ...audit.Head) (*AuditReport, error) {
	if anchorPath != "" && root == nil {
		return nil, errors.New("audit anchor: checking it needs the root key")
	}
	if err := checkComplete(ctx, st); err != nil {
		return nil, err
	}
	head, mac, err := st.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit head: %w", err)
	}
	rep := &AuditReport{}
	if root != nil {
		wrapped, err := st.Meta(ctx, macKeyMeta)
		if errors.Is(err, store.ErrNotFound) {
			if head.Seq != 0 {
				return nil, errors.New("audit chain: head records entries but the audit MAC key is missing")
			}
			if anchorPath != "" {
				if _, serr := os.Stat(anchorPath); serr == nil {
					return nil, fmt.Errorf("%w: the store has no audit MAC key but the audit anchor %s exists: the store was wiped or replaced", ErrAnchor, anchorPath)
				}
			}
		} else if err != nil {
			return nil, err
		} else {
			key, err := root.Unwrap(wrapped, macKeyAAD)
			if err != nil {
				return nil, fmt.Errorf("audit MAC key does not unwrap under the root key (%s): %w", root.Describe(), err)
			}
			if head.Seq > 0 && !audit.CheckHeadMAC(key, head, mac) {
				return nil, fmt.Errorf("audit chain: the stored head %s is not authenticated by the broker's MAC: the head row was edited", head)
			}
			rep.MACChecked = true
			if anchorPath != "" {
				a, ok, err := checkAnchor(ctx, st, key, anchorPath, false)
				if err != nil {
					return nil, err
				}
				if ok {
					rep.Anchored = &a
				}
			}
		}
	}
	v := audit.NewVerifier(witnesses...)
	if err := st.Entries(ctx, 1, 0, v.Add); err != nil {
		return nil, err
	}
	if err := v.Finish(&head); err != nil {
		return nil, err
	}
	rep.Head, rep.Granted, rep.Refused = v.Head(), v.Granted, v.Refused
	return rep, nil
}
