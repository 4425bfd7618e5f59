package kms

import (
	"context"
	"errors"
	"fmt"

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
}

// VerifyStore verifies st's audit chain from the first entry to the stored
// head, the head's MAC when root is non-nil, and every witness.
func VerifyStore(ctx context.Context, st *store.Store, root rootkey.Wrapper, witnesses ...audit.Head) (*AuditReport, error) {
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
